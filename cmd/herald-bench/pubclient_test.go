package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"testing"
)

// TestPublishRequestsParse builds a request of each publish API, with and without padding, and
// reads it back as net/http would: the path, the credential, the length and the body must be
// what the API expects.
func TestPublishRequestsParse(t *testing.T) {
	for _, c := range []struct {
		api, path, header, value string
		pad                      int
	}{
		{apiHerald, "/v1/channels/bench:x%2Fy/messages", "Authorization", "Bearer tok", 0},
		{apiHerald, "/v1/channels/bench:x%2Fy/messages", "Authorization", "Bearer tok", 50},
		{apiCentrifugo, "/api/publish", "X-API-Key", "tok", 0},
		{apiCentrifugo, "/api/publish", "X-API-Key", "tok", 50},
	} {
		target, err := newPubTarget("http://127.0.0.1:9", "tok", "bench:x/y", c.pad, c.api)
		if err != nil {
			t.Fatal(err)
		}
		raw := target.build(nil, 42, 1732700000000000000)
		req, err := http.ReadRequest(bufio.NewReader(bytes.NewReader(raw)))
		if err != nil {
			t.Fatalf("%s: %v\n%s", c.api, err, raw)
		}
		if req.Method != "POST" || req.URL.EscapedPath() != c.path {
			t.Fatalf("%s: %s %s, want POST %s", c.api, req.Method, req.URL.EscapedPath(), c.path)
		}
		if got := req.Header.Get(c.header); got != c.value {
			t.Fatalf("%s: %s %q, want %q", c.api, c.header, got, c.value)
		}
		body, err := io.ReadAll(req.Body)
		if err != nil || int64(len(body)) != req.ContentLength {
			t.Fatalf("%s: body %q (%v), Content-Length %d", c.api, body, err, req.ContentLength)
		}
		var msg struct {
			Channel *string `json:"channel"`
			Data    struct {
				T, N int64
				P    string
			} `json:"data"`
		}
		if err := json.Unmarshal(body, &msg); err != nil {
			t.Fatalf("%s: %v in %s", c.api, err, body)
		}
		if msg.Data.T != 1732700000000000000 || msg.Data.N != 42 || len(msg.Data.P) != c.pad {
			t.Fatalf("%s: data %+v", c.api, msg.Data)
		}
		if wantChannel := c.api == apiCentrifugo; (msg.Channel != nil) != wantChannel || (wantChannel && *msg.Channel != "bench:x/y") {
			t.Fatalf("%s: channel field %v", c.api, msg.Channel)
		}
	}
	if _, err := newPubTarget("http://127.0.0.1:9", "tok", "c", 0, "nchan"); err == nil {
		t.Fatal("an unknown API was accepted")
	}
}
