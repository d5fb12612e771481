package main

// The hostile suite: attacker moves against the real `herald serve` binary over real sockets.
// Every test named TestHostile* is one move (or a family of moves) that an adversarial review
// made with clients written outside this project: raw TCP, hand-built WebSocket frames, curl-like
// requests. Each asserts what a user of the gateway would check afterwards: other clients keep
// working, nothing stays behind (subscriptions, goroutines, descriptors), nothing stored is lost
// or corrupted, and the attacker got a clear refusal (problem+json, an error frame, a close code).
//
// Run them alone with
//
//	go test -race -count=1 -run Hostile ./cmd/herald/
//
// The same moves made with the `ws` npm package and Node's http client are in
// sdk/js/test/hostile.test.mjs.
//
// Where the moves are, by what they attack:
//
//	hostile_ws_test.go        the WebSocket session: resets while subscribes are in flight (memory
//	                          and Valkey), frame floods of every kind (4029), a narrower token on
//	                          re-auth, invalid close frames (1002)
//	hostile_input_test.go     what a client sends as data, ids and keys: invalid UTF-8 on every
//	                          publish path, the largest id on every transport, an idempotency key
//	                          claimed by another credential
//	hostile_gaps_test.go      delivery across a cut Valkey link (link_lost on every transport), one
//	                          position for an empty channel, the reason a CLI subscriber is told
//	hostile_adopt_test.go     the descriptor limit while SSE streams are adopted, pipelined
//	                          publishes handed back to net/http
//	hostile_auth_test.go      tokens with key-carrying JOSE headers, error texts that must not leak
//	                          configuration or store errors, cross-origin reads with the cookie
//	hostile_replay_test.go    resumes of a large channel that read nothing, stall under live
//	                          traffic (memory and Valkey), or hang up mid-replay
//	hostile_httpbound_test.go long-polls and history reads that are never read, slow bodies,
//	                          responses past the write timeout
//	hostile_admission_test.go, hostile_publishrate_test.go  connection and publish limits
//
// To add a move: put it in the file of what it attacks (or a new hostile_<topic>_test.go), name
// it TestHostile<What>, start a node with startServer/startNode (startServerUnder runs it under
// prlimit or another prefix), attack, then assert on what other clients and /metrics see. The
// tools are in hostile_kit_test.go, so a move needs no helper of its own: a raw WebSocket client
// (dialWS/openWS with a token in the URL, as a bearer or none, and any headers; send, write any
// clientFrame, next/nextJSON/readJSON, expect or await a type, subscribe, closed for the close
// code), metric/mustMetric for one /metrics series (rawClient.series over a given connection),
// httpDo/getJSON for a request. rawClient/rawRequest (keepalive_e2e_test.go) write HTTP/1.1 byte
// for byte, cutProxy (hostile_gaps_test.go) cuts a node's link to Valkey, and lockedBuffer
// collects a process's output. Poll with waitUntil; never sleep for a result.
