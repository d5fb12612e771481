// Package valkey is the Valkey-backed broker.Broker: a channel's log is a Valkey stream, a
// publish is one server-side script, and nodes learn of new messages through sharded pub/sub.
// It works against a standalone server, a Sentinel-managed primary and a Valkey Cluster.
//
// # Key layout
//
// With the default key prefix "herald", channel c uses (the braces are a hash tag, so all of a
// channel's keys and its pub/sub channel live on one Cluster shard):
//
//	herald:{c}:log        stream: the channel's log, entry fields p (previous id), e (event), d (data)
//	herald:{c}:idem:<key> string: the id the idempotency key got, expiring after the window
//	herald:{c}:live       shard pub/sub channel (SPUBLISH/SSUBSCRIBE): "<id>\n<prev>\n<event>\n<data>"
//	herald:control        pub/sub channel (PUBLISH/SUBSCRIBE) for cross-node control messages
//
// Each publish script ends with an exact XTRIM MAXLEN <size>, so a channel keeps exactly the
// history it is configured for, as with the memory broker. (MAXLEN ~ would trim only whole
// macro nodes, 100 entries by default: a channel configured for 10 messages would keep up to 100
// and a client 50 messages behind would never be told of the gap it should see.) One trim per
// script rather than XADD MAXLEN per message: the same log once the script ends, and an exact
// trim per XADD cost more than the XADD itself.
// The log expires after the retention TTL without a publish.
//
// # Continuity
//
// Valkey 8 does not say what trimming removed: XINFO STREAM's max-deleted-entry-id stays 0-0
// after MAXLEN trimming (checked against valkey-server 8.0.1; only XDEL moves it), and its
// recorded-first-entry-id is just the current first entry. So every entry stores the id of the
// entry before it (field p, "0-0" for the first entry of a stream). Trimming only ever removes a
// prefix of the log (herald never XDELs), so the first retained entry F tells everything:
// F.p is the newest id ever removed, or 0-0 when nothing was. A read after Since is complete
// iff the stream exists and either F.p == Since (Since is exactly where retention begins; with
// Since zero: nothing was ever trimmed) or F.id <= Since <= last id (Since is inside the
// retained log). A Since older than F.p was trimmed past; a Since between F.p and F.id, or
// after the last id, is not a position of this stream (a log lost and started again); a missing
// stream with a non-zero Since is a gap. The same link makes the live stream self-checking:
// a live message whose p is not the last id delivered reveals a gap, which is filled from the
// log.
//
// Why a read is not complete (HistoryPage.Gap): Since older than F.p, or Since zero with F.p
// not 0-0, is GapTrimmed; Since after the last id is GapBrokerReset; Since between F.p and F.id,
// or a missing stream, is a position of a log that is gone, and the epoch (below) tells which:
// below it, Valkey lost its data since (GapBrokerReset); above it, the log expired (GapExpired).
// New makes the epoch if it is missing, so that positions handed out afterwards are above it.
//
// The price is one small field per entry and, in the publish script, an XREVRANGE COUNT 1 for
// the last id before the first XADD. It needs no extra key and no XINFO.
//
// # Node interest and outages
//
// Subscribe is counted per channel. The first Subscribe starts a receive loop (one goroutine
// per channel with local interest) that sends SSUBSCRIBE on the channel's shard (valkey-go
// routes it to the slot's node and shares that node's connection), waits for the server's
// confirmation, then reads the channel's last id as the starting point. Each confirmation and
// each message go, in the order the connection saw them, into the channel's queue, which one
// goroutine at a time drains: per channel the Handler is called in id order and never
// concurrently.
//
// When the link drops (server restart, shard restart, a SIGSTOPped server detected by the
// client's ping timeout, a slot moved away), valkey-go or the receive loop subscribes again.
// The new confirmation makes the drainer read the log after the last id it delivered (History,
// page by page) before it handles any later live message; live messages at or below the last
// delivered id are dropped: no gap and no duplicate at the seam. If the log cannot prove it
// holds everything after that id (the History continuity rule: trimmed past it, expired or
// lost meanwhile), the Handler's Gap is called (broker.GapLinkLost) before the rest is delivered.
// A live message whose p is not the last delivered id triggers the same catch-up, except p
// zero: a new log after the old one expired while the link was up (nothing can have been
// missed, since every resubscription was caught up before the messages that follow it).
//
// # Invariants
//
//   - Per channel, the Handler sees strictly increasing ids; the drainer is the only caller.
//   - Nothing blocks valkey-go's connection reader: pub/sub callbacks only decode and enqueue.
//   - A channel's Subscribe/Unsubscribe transitions are serialized by its opMu, so 1->0->1 ends
//     with exactly one live receive loop.
//   - Per channel, a node has at most one publish script call in flight; the publishes that
//     arrive meanwhile go together in the next call, in arrival order (coalesce.go).
//   - Errors leave the package wrapped once, with broker.ErrUnavailable when Valkey could not
//     be reached or did not answer within Options.Timeout.
package valkey
