package main

import (
	"bytes"
	"context"
	crand "crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// clientFlags are the flags every client command shares.
type clientFlags struct {
	url   string
	token string
}

func (c *clientFlags) register(fs *flagSet) {
	fs.StringVar(&c.url, "url", "http://localhost:8080", "herald's base URL")
	fs.bindEnv("url", "HERALD_URL")
	fs.StringVar(&c.token, "token", "", "JWT or API key sent as Authorization: Bearer")
	fs.bindEnv("token", "HERALD_TOKEN")
}

func publish(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) error {
	fs := newFlagSet("herald publish", "herald publish [flags] CHANNEL [DATA]: publish one message.\n\n"+
		"DATA is any JSON value; \"-\" or no DATA reads it from standard input. A failed publish is retried\n"+
		"with the same Idempotency-Key, so it is stored at most once.", stderr)
	var cf clientFlags
	cf.register(fs)
	var event, key string
	var attempts int
	fs.StringVar(&event, "event", "", "event name (SSE event field)")
	fs.StringVar(&key, "idempotency-key", "", "Idempotency-Key; a random one when empty")
	fs.IntVar(&attempts, "attempts", 5, "tries on 429, 503 and network errors")
	if err := fs.parse(args); err != nil {
		return err
	}
	if fs.NArg() < 1 || fs.NArg() > 2 {
		fmt.Fprintln(stderr, "herald publish: want CHANNEL [DATA]")
		return errUsage
	}
	channel := fs.Arg(0)
	var data []byte
	if fs.NArg() == 2 && fs.Arg(1) != "-" {
		data = []byte(fs.Arg(1))
	} else {
		var err error
		if data, err = io.ReadAll(stdin); err != nil {
			return err
		}
	}
	data = bytes.TrimSpace(data)
	if !json.Valid(data) {
		return fmt.Errorf("DATA is not valid JSON (quote strings: '\"hello\"')")
	}
	body, _ := json.Marshal(struct {
		Data  json.RawMessage `json:"data"`
		Event string          `json:"event,omitempty"`
	}{data, event})
	if key == "" {
		key = randomKey()
	}
	target := strings.TrimRight(cf.url, "/") + "/v1/channels/" + url.PathEscape(channel) + "/messages"
	resp, err := postWithRetry(ctx, target, cf.token, key, body, attempts, stderr)
	if err != nil {
		return err
	}
	fmt.Fprintln(stdout, strings.TrimSpace(string(resp)))
	return nil
}

// postWithRetry posts body, retrying with exponential backoff and full jitter on 429, 503 and
// network errors; the same Idempotency-Key makes the retries safe.
func postWithRetry(ctx context.Context, target, token, key string, body []byte, attempts int, stderr io.Writer) ([]byte, error) {
	backoff := 200 * time.Millisecond
	for attempt := 1; ; attempt++ {
		req, err := http.NewRequestWithContext(ctx, http.MethodPost, target, bytes.NewReader(body))
		if err != nil {
			return nil, err
		}
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Idempotency-Key", key)
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		resp, err := http.DefaultClient.Do(req)
		var wait time.Duration
		if err == nil {
			out, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
			resp.Body.Close()
			if resp.StatusCode < 300 {
				return out, nil
			}
			if resp.StatusCode != http.StatusTooManyRequests && resp.StatusCode != http.StatusServiceUnavailable {
				return nil, problemError(resp.StatusCode, out)
			}
			err = problemError(resp.StatusCode, out)
			if s, perr := strconv.Atoi(resp.Header.Get("Retry-After")); perr == nil && s > 0 {
				wait = time.Duration(s) * time.Second
			}
		}
		if attempt >= attempts || ctx.Err() != nil {
			return nil, err
		}
		if wait == 0 {
			wait = time.Duration(rand.Int64N(int64(backoff)) + 1)
			backoff = min(2*backoff, 10*time.Second)
		}
		fmt.Fprintf(stderr, "herald publish: %v; retrying in %v\n", err, wait.Round(time.Millisecond))
		select {
		case <-time.After(wait):
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
}

// problemError turns a problem+json answer into an error that says what the server said.
func problemError(status int, body []byte) error {
	var p struct {
		Type   string `json:"type"`
		Detail string `json:"detail"`
	}
	if json.Unmarshal(body, &p) == nil && p.Detail != "" {
		return fmt.Errorf("%d %s: %s", status, p.Type, p.Detail)
	}
	return fmt.Errorf("%d %s", status, http.StatusText(status))
}

func randomKey() string {
	b := make([]byte, 16)
	_, _ = crand.Read(b)
	return hex.EncodeToString(b)
}
