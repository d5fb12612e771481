package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"
)

func subscribe(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("herald subscribe", "herald subscribe [flags] CHANNEL...: print the channels' messages, one JSON object per line.\n\n"+
		"It reads the SSE stream and, when the connection drops, reconnects with Last-Event-ID, so\n"+
		"nothing still retained is missed. A gap (messages that cannot be given) is reported on stderr\n"+
		"with its reason.", stderr)
	var cf clientFlags
	cf.register(fs)
	var since string
	fs.StringVar(&since, "since", "", "resume after this id (\"0\": everything retained); empty: live only")
	if err := fs.parse(args); err != nil {
		return err
	}
	if fs.NArg() == 0 {
		fmt.Fprintln(stderr, "herald subscribe: name at least one CHANNEL")
		return errUsage
	}
	q := url.Values{"channel": fs.Args()}
	if since != "" {
		q.Set("since", since)
	}
	s := &sseSubscriber{
		url:   strings.TrimRight(cf.url, "/") + "/v1/sse?" + q.Encode(),
		token: cf.token, out: stdout, log: stderr,
	}
	return s.run(ctx)
}

// sseSubscriber follows an SSE stream across reconnects.
type sseSubscriber struct {
	url, token  string
	out, log    io.Writer
	lastEventID string
	retry       time.Duration
}

// errFatal marks answers that a reconnect cannot fix (bad request, credentials).
type errFatal struct{ error }

func (s *sseSubscriber) run(ctx context.Context) error {
	backoff := 500 * time.Millisecond
	for {
		start := time.Now()
		err := s.stream(ctx)
		if ctx.Err() != nil {
			return nil
		}
		var fatal errFatal
		if errors.As(err, &fatal) {
			return fatal.error
		}
		if time.Since(start) > time.Minute {
			backoff = 500 * time.Millisecond // the connection was stable: start over
		}
		wait := time.Duration(rand.Int64N(int64(backoff)) + 1)
		if s.retry > wait {
			wait = s.retry
		}
		backoff = min(2*backoff, 30*time.Second)
		fmt.Fprintf(s.log, "herald subscribe: %v; reconnecting in %v\n", err, wait.Round(time.Millisecond))
		select {
		case <-time.After(wait):
		case <-ctx.Done():
			return nil
		}
	}
}

// stream reads one connection until it ends.
func (s *sseSubscriber) stream(ctx context.Context) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, s.url, nil)
	if err != nil {
		return errFatal{err}
	}
	req.Header.Set("Accept", "text/event-stream")
	if s.token != "" {
		req.Header.Set("Authorization", "Bearer "+s.token)
	}
	if s.lastEventID != "" {
		req.Header.Set("Last-Event-ID", s.lastEventID)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		body, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<16))
		perr := problemError(resp.StatusCode, body)
		if resp.StatusCode >= 400 && resp.StatusCode < 500 && resp.StatusCode != http.StatusTooManyRequests {
			return errFatal{perr}
		}
		return perr
	}
	return s.readEvents(resp.Body)
}

// readEvents parses the stream as EventSource does and prints each message.
func (s *sseSubscriber) readEvents(r io.Reader) error {
	br := bufio.NewReader(r)
	var event string
	var hasID bool // the event carried an id: a message, not one of herald's control events
	var data strings.Builder
	for {
		line, err := br.ReadString('\n')
		if err != nil {
			if err == io.EOF {
				return errors.New("stream ended")
			}
			return err
		}
		line = strings.TrimRight(line, "\r\n")
		if line == "" {
			s.dispatch(event, data.String(), hasID)
			event, hasID = "", false
			data.Reset()
			continue
		}
		if strings.HasPrefix(line, ":") {
			continue
		}
		field, value, _ := strings.Cut(line, ":")
		value = strings.TrimPrefix(value, " ")
		switch field {
		case "id":
			s.lastEventID, hasID = value, true
		case "event":
			event = value
		case "data":
			if data.Len() > 0 {
				data.WriteByte('\n')
			}
			data.WriteString(value)
		case "retry":
			if ms, err := strconv.Atoi(value); err == nil {
				s.retry = time.Duration(ms) * time.Millisecond
			}
		}
	}
}

// notice tells stderr about a control event.
func (s *sseSubscriber) notice(event, data string) {
	switch event {
	case "herald.gap":
		var gap struct{ Channel, Reason string }
		_ = json.Unmarshal([]byte(data), &gap)
		fmt.Fprintf(s.log, "herald subscribe: gap in %s: %s; refetch your state\n", gap.Channel, gapText(gap.Reason))
	case "herald.token-expired":
		fmt.Fprintln(s.log, "herald subscribe: the token expired")
	case "herald.shutdown":
		// The reconnect itself waits for the retry: field sent with it (see run).
		fmt.Fprintln(s.log, "herald subscribe: the server is shutting down; reconnecting")
	default:
		fmt.Fprintf(s.log, "herald subscribe: server notice %s: %s\n", event, data)
	}
}

// gapText explains a herald.gap reason (see docs/protocol.md, "Guarantees").
func gapText(reason string) string {
	switch reason {
	case "trimmed":
		return "history was trimmed while away (trimmed)"
	case "expired":
		return "the channel's history expired while away (expired)"
	case "broker_reset":
		return "the server lost its history, for example in a restart (broker_reset)"
	case "replay_cap":
		return "more was missed than one replay carries; only the newest were sent (replay_cap)"
	case "link_lost":
		return "messages were lost while the server's link to its message store was down (link_lost)"
	}
	return "messages were missed (" + reason + ")"
}

// dispatch prints a message on stdout, or a notice on stderr for one of herald's control
// events (herald.gap, herald.shutdown, herald.token-expired): these carry no id, which tells them
// from a message a backend published with an event name that starts with "herald.". Stdout then
// holds messages only, one per line, for whatever reads it.
func (s *sseSubscriber) dispatch(event, data string, hasID bool) {
	if data == "" {
		return
	}
	if !hasID && strings.HasPrefix(event, "herald.") {
		s.notice(event, data)
		return
	}
	if event == "" {
		fmt.Fprintln(s.out, data)
		return
	}
	// Put the event name into the printed object.
	var m map[string]json.RawMessage
	if json.Unmarshal([]byte(data), &m) != nil {
		fmt.Fprintln(s.out, data)
		return
	}
	m["event"], _ = json.Marshal(event)
	out, _ := json.Marshal(m)
	fmt.Fprintln(s.out, string(out))
}
