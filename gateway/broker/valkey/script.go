package valkey

import (
	"context"
	"crypto/sha1"
	_ "embed"
	"encoding/hex"
	"sync"

	"github.com/valkey-io/valkey-go"
)

var (
	//go:embed publish.lua
	publishSource string
	//go:embed history.lua
	historySource string
	//go:embed epoch.lua
	epochSource string

	publishScript = newScript(publishSource, false)
	historyScript = newScript(historySource, true)
	epochScript   = newScript(epochSource, false)
)

// script is a Lua script run by its SHA-1 (EVALSHA), falling back to sending its text (EVAL)
// when a server does not have it cached (after a restart or a failover). valkey-go's Lua type
// does the same for one call; batches need the fallback per pipelined command.
type script struct {
	source   string
	sha      string
	readOnly bool // run with EVALSHA_RO/EVAL_RO: may be retried and served by replicas
}

func newScript(source string, readOnly bool) *script {
	sum := sha1.Sum([]byte(source))
	return &script{source: source, sha: hex.EncodeToString(sum[:]), readOnly: readOnly}
}

// call is one execution of a script.
type call struct {
	keys []string
	args []string
}

func (s *script) evalsha(c valkey.Client, k call) valkey.Completed {
	if s.readOnly {
		return c.B().EvalshaRo().Sha1(s.sha).Numkeys(int64(len(k.keys))).Key(k.keys...).Arg(k.args...).Build()
	}
	return c.B().Evalsha().Sha1(s.sha).Numkeys(int64(len(k.keys))).Key(k.keys...).Arg(k.args...).Build()
}

func (s *script) eval(c valkey.Client, k call) valkey.Completed {
	if s.readOnly {
		return c.B().EvalRo().Script(s.source).Numkeys(int64(len(k.keys))).Key(k.keys...).Arg(k.args...).Build()
	}
	return c.B().Eval().Script(s.source).Numkeys(int64(len(k.keys))).Key(k.keys...).Arg(k.args...).Build()
}

// exec runs one call: one round trip while the server has the script cached.
func (s *script) exec(ctx context.Context, c valkey.Client, k call) valkey.ValkeyResult {
	res := c.Do(ctx, s.evalsha(c, k))
	if isNoScript(res.Error()) {
		res = c.Do(ctx, s.eval(c, k))
	}
	return res
}

// execMulti runs calls pipelined (one round trip per node involved). A call refused with
// NOSCRIPT did not run at all, so sending it again with its text is safe; calls of different
// channels are independent, so the retry does not reorder anything a caller can observe.
func (s *script) execMulti(ctx context.Context, c valkey.Client, calls []call) []valkey.ValkeyResult {
	cmds := make(valkey.Commands, len(calls))
	for i, k := range calls {
		cmds[i] = s.evalsha(c, k)
	}
	results := c.DoMulti(ctx, cmds...)
	var retry []int
	for i, r := range results {
		if isNoScript(r.Error()) {
			retry = append(retry, i)
		}
	}
	if len(retry) == 0 {
		return results
	}
	cmds = cmds[:0]
	for _, i := range retry {
		cmds = append(cmds, s.eval(c, calls[i]))
	}
	for j, r := range c.DoMulti(ctx, cmds...) {
		results[retry[j]] = r
	}
	return results
}

func isNoScript(err error) bool {
	verr, ok := valkey.IsValkeyErr(err)
	return ok && verr.IsNoScript()
}

// loadScripts caches the scripts on every node, so that even the first publish after start is
// one round trip. It fails only when no node could be reached: a node that is down now gets the
// scripts later through the EVAL fallback, like one that restarts or joins.
func (b *Broker) loadScripts(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, b.timeout)
	defer cancel()
	nodes := b.client.Nodes()
	errs := make(chan error, len(nodes))
	var wg sync.WaitGroup
	for addr, node := range nodes {
		wg.Go(func() {
			for _, s := range []*script{publishScript, historyScript} {
				if err := node.Do(ctx, node.B().ScriptLoad().Script(s.source).Build()).Error(); err != nil {
					b.log.Warn("valkey broker: cannot load scripts", "node", addr, "err", err)
					errs <- err
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	if len(errs) == len(nodes) && len(nodes) > 0 {
		return <-errs
	}
	return nil
}
