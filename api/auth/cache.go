package auth

import (
	"sync"
	"time"
)

// verifiedCache remembers tokens that verified, so that the many connections presenting the same
// token (one per browser tab, a public dashboard token, a reconnect storm) cost one signature
// check and share one Claims value instead of one each.
//
// Entries live at most cacheTTL and never past the token's own expiry, and every new JWKS key
// set empties the cache, so a key removed from the JWKS stops the tokens it signed at once. The cache is bounded: when full, an arbitrary
// entry makes room (a map's iteration order is enough; a miss only costs a verification).
type verifiedCache struct {
	mu      sync.Mutex
	entries map[string]cacheEntry
}

type cacheEntry struct {
	claims *Claims
	until  time.Time
}

const (
	cacheTTL     = time.Minute
	cacheEntries = 4096
)

func (c *verifiedCache) get(token string, now time.Time) *Claims {
	c.mu.Lock()
	defer c.mu.Unlock()
	e, ok := c.entries[token]
	if !ok {
		return nil
	}
	if !now.Before(e.until) {
		delete(c.entries, token)
		return nil
	}
	return e.claims
}

func (c *verifiedCache) put(token string, claims *Claims, now time.Time) {
	until := now.Add(cacheTTL)
	if !claims.Expiry.IsZero() && claims.Expiry.Before(until) {
		until = claims.Expiry
	}
	if !now.Before(until) {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.entries == nil {
		c.entries = make(map[string]cacheEntry)
	}
	if len(c.entries) >= cacheEntries {
		for k := range c.entries {
			delete(c.entries, k)
			break
		}
	}
	c.entries[token] = cacheEntry{claims: claims, until: until}
}

// clear forgets every entry.
func (c *verifiedCache) clear() {
	c.mu.Lock()
	defer c.mu.Unlock()
	clear(c.entries)
}
