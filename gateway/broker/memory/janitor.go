package memory

import "time"

// janitor drops expired logs and idempotency keys every sweepInterval until Close.
func (b *Broker) janitor() {
	defer close(b.done)
	t := time.NewTicker(sweepInterval)
	defer t.Stop()
	for {
		select {
		case <-b.stop:
			return
		case <-t.C:
			b.sweep()
		}
	}
}

// sweep expires what is due in every channel and removes the channels left with nothing.
// Expiry is also checked on every access, so sweeping only bounds memory; it is not needed for
// correct answers.
func (b *Broker) sweep() {
	now := b.now()
	var idle []*channel
	for i := range b.shards {
		s := &b.shards[i]
		idle = idle[:0]
		s.mu.RLock()
		for _, ch := range s.channels {
			ch.mu.Lock()
			ch.expire(now)
			ch.keys.expire(now)
			if ch.idle() {
				idle = append(idle, ch)
			}
			ch.mu.Unlock()
		}
		s.mu.RUnlock()
		if len(idle) > 0 {
			b.remove(s, idle)
		}
	}
}

// remove deletes the channels that are still idle from s. Someone may have published or
// subscribed since sweep looked, so it checks again under both locks.
func (b *Broker) remove(s *shard, idle []*channel) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, ch := range idle {
		ch.mu.Lock()
		if ch.idle() {
			ch.dead = true
			delete(s.channels, ch.name)
		}
		ch.mu.Unlock()
	}
}
