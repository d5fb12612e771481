package herald

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"iter"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// Publisher publishes messages and reads history over herald's HTTP API. It is safe for
// concurrent use.
type Publisher struct {
	base *url.URL
	cfg  config
	http *http.Client
	own  bool // http is ours: Close releases its idle connections
}

// NewPublisher returns a Publisher for the gateway at baseURL (for example
// "https://push.example.com"; a path prefix is kept).
func NewPublisher(baseURL string, opts ...Option) (*Publisher, error) {
	base, err := parseBase(baseURL, "http", "https")
	if err != nil {
		return nil, err
	}
	cfg := newConfig(opts)
	hc, own := httpClient(cfg)
	return &Publisher{base: base, cfg: cfg, http: hc, own: own}, nil
}

// Close releases the idle connections of the Publisher's own HTTP client.
func (p *Publisher) Close() error {
	if p.own {
		p.http.CloseIdleConnections()
	}
	return nil
}

// parseBase checks a base URL and maps ws/wss to http/https (and back, for the Client).
func parseBase(raw string, plain, secure string) (*url.URL, error) {
	u, err := url.Parse(raw)
	if err != nil {
		return nil, fmt.Errorf("herald: base URL: %w", err)
	}
	switch u.Scheme {
	case "http", "ws":
		u.Scheme = plain
	case "https", "wss":
		u.Scheme = secure
	default:
		return nil, fmt.Errorf("herald: base URL %q: want http, https, ws or wss", raw)
	}
	if u.Host == "" {
		return nil, fmt.Errorf("herald: base URL %q has no host", raw)
	}
	u.Path = strings.TrimRight(u.Path, "/")
	u.RawPath, u.RawQuery, u.Fragment = "", "", ""
	return u, nil
}

func httpClient(cfg config) (*http.Client, bool) {
	if cfg.httpClient != nil {
		return cfg.httpClient, false
	}
	t := http.DefaultTransport.(*http.Transport).Clone()
	return &http.Client{Transport: t}, true
}

// endpoint joins the base URL with path segments (escaped) and a query.
func endpoint(base *url.URL, query url.Values, segments ...string) string {
	u := *base
	var b strings.Builder
	b.WriteString(u.Path)
	for _, s := range segments {
		b.WriteByte('/')
		b.WriteString(url.PathEscape(s))
	}
	u.RawPath = b.String()
	u.Path, _ = url.PathUnescape(u.RawPath)
	u.RawQuery = query.Encode()
	return u.String()
}

// PublishOption configures one Publish or PublishBatch call.
type PublishOption func(*publishOptions)

type publishOptions struct {
	event string
	key   string
}

// WithEvent names the message's event (1-64 of A-Z a-z 0-9 _ . : -). For PublishBatch set
// Message.Event instead.
func WithEvent(name string) PublishOption { return func(o *publishOptions) { o.event = name } }

// WithIdempotencyKey sets the Idempotency-Key (1-255 printable ASCII characters) instead of a
// random one, for publishes that must stay unique across calls or processes: a repeat of the key
// on the same channel within the gateway's idempotency window stores nothing and returns the first
// id.
func WithIdempotencyKey(key string) PublishOption { return func(o *publishOptions) { o.key = key } }

func publishOpts(opts []PublishOption) publishOptions {
	var o publishOptions
	for _, f := range opts {
		f(&o)
	}
	if o.key == "" {
		o.key = newIdempotencyKey()
	}
	return o
}

// encodeData turns data into JSON: a json.RawMessage passes through unchanged (it must be valid
// JSON); anything else goes through json.Marshal.
func encodeData(data any) (json.RawMessage, error) {
	if raw, ok := data.(json.RawMessage); ok {
		if !json.Valid(raw) {
			return nil, errors.New("herald: data is not valid JSON")
		}
		return raw, nil
	}
	b, err := json.Marshal(data)
	if err != nil {
		return nil, fmt.Errorf("herald: encoding data: %w", err)
	}
	return b, nil
}

// Publish stores data on channel and returns the message's id. data is any value json.Marshal
// accepts; a json.RawMessage is sent as is. The call carries an Idempotency-Key (random, or the
// one WithIdempotencyKey gives), reused by every retry, so a retried publish is stored once.
func (p *Publisher) Publish(ctx context.Context, channel string, data any, opts ...PublishOption) (string, error) {
	if !validChannel(channel) {
		return "", fmt.Errorf("%w: %q", ErrInvalidChannel, channel)
	}
	o := publishOpts(opts)
	raw, err := encodeData(data)
	if err != nil {
		return "", err
	}
	body, err := json.Marshal(struct {
		Data  json.RawMessage `json:"data"`
		Event string          `json:"event,omitempty"`
	}{raw, o.event})
	if err != nil {
		return "", err
	}
	var out struct {
		ID string `json:"id"`
	}
	err = p.do(ctx, http.MethodPost, endpoint(p.base, nil, "v1", "channels", channel, "messages"), body, o.key,
		func(resp *http.Response) (bool, error) {
			if resp.StatusCode != http.StatusCreated && resp.StatusCode != http.StatusOK {
				return false, problemFromResponse(resp)
			}
			return false, json.NewDecoder(resp.Body).Decode(&out)
		})
	if err != nil {
		return "", err
	}
	return out.ID, nil
}

// BatchResult is the outcome of one message of PublishBatch.
type BatchResult struct {
	Channel string
	// ID is the stored message's id; empty when Err is set.
	ID string
	// Replayed is true when an earlier attempt of the same batch had stored it already.
	Replayed bool
	// Err is why the message was not stored.
	Err *ProblemError
}

// PublishBatch stores several messages in one request (at most the gateway's --max-batch, 100 by
// default) and returns one result per message, in order. Messages to the same channel are stored
// in order. The request carries one Idempotency-Key (message i is keyed "<key>#i" by the server),
// so retries, including retries of the messages that failed with a temporary error, store each
// message once. The error is non-nil when the request failed as a whole, or when a message
// was not stored: it then wraps that message's *ProblemError and the results tell which.
func (p *Publisher) PublishBatch(ctx context.Context, msgs []Message, opts ...PublishOption) ([]BatchResult, error) {
	type item struct {
		Channel string          `json:"channel"`
		Data    json.RawMessage `json:"data"`
		Event   string          `json:"event,omitempty"`
	}
	if len(msgs) == 0 {
		return nil, nil
	}
	items := make([]item, len(msgs))
	for i, m := range msgs {
		if !validChannel(m.Channel) {
			return nil, fmt.Errorf("%w: message %d: %q", ErrInvalidChannel, i, m.Channel)
		}
		if !json.Valid(m.Data) {
			return nil, fmt.Errorf("herald: message %d: data is not valid JSON", i)
		}
		items[i] = item{m.Channel, m.Data, m.Event}
	}
	o := publishOpts(opts)
	body, err := json.Marshal(struct {
		Messages []item `json:"messages"`
	}{items})
	if err != nil {
		return nil, err
	}
	var results []BatchResult
	err = p.do(ctx, http.MethodPost, endpoint(p.base, nil, "v1", "messages"), body, o.key,
		func(resp *http.Response) (bool, error) {
			if resp.StatusCode != http.StatusCreated && resp.StatusCode != http.StatusMultiStatus {
				return false, problemFromResponse(resp)
			}
			var doc struct {
				Results []struct {
					Channel  string `json:"channel"`
					ID       string `json:"id"`
					Replayed bool   `json:"replayed"`
					Error    *struct {
						Type   string `json:"type"`
						Title  string `json:"title"`
						Status int    `json:"status"`
						Detail string `json:"detail"`
					} `json:"error"`
				} `json:"results"`
			}
			if err := json.NewDecoder(resp.Body).Decode(&doc); err != nil {
				return false, fmt.Errorf("herald: batch answer: %w", err)
			}
			results = make([]BatchResult, len(doc.Results))
			retry := false
			for i, r := range doc.Results {
				results[i] = BatchResult{Channel: r.Channel, ID: r.ID, Replayed: r.Replayed}
				if r.Error != nil {
					results[i].Err = &ProblemError{Status: r.Error.Status, Type: r.Error.Type, Title: r.Error.Title, Detail: r.Error.Detail}
					retry = retry || retryableStatus(r.Error.Status)
				}
			}
			return retry, nil
		})
	if err != nil {
		return results, err
	}
	if len(results) != len(msgs) {
		return results, fmt.Errorf("herald: batch answer has %d results for %d messages", len(results), len(msgs))
	}
	failed := 0
	var first *ProblemError
	for _, r := range results {
		if r.Err != nil {
			if first == nil {
				first = r.Err
			}
			failed++
		}
	}
	if failed > 0 {
		return results, fmt.Errorf("herald: %d of %d messages not stored: %w", failed, len(msgs), first)
	}
	return results, nil
}

// Page is one page of a channel's history.
type Page struct {
	// Messages are oldest first.
	Messages []Message
	// Next is the id to pass as since to read on: the last message's id, or the since given.
	Next string
	// Complete is false when messages after since are missing from the log (trimmed by size or
	// age, or the log was lost): the history cannot be read without a gap.
	Complete bool
	// More is true when messages after Next exist already.
	More bool
}

// History reads up to limit messages (1-1000; 0 means the server's default, 100) of channel
// after the id since ("" or "0": from the oldest retained).
func (p *Publisher) History(ctx context.Context, channel, since string, limit int) (Page, error) {
	if !validChannel(channel) {
		return Page{}, fmt.Errorf("%w: %q", ErrInvalidChannel, channel)
	}
	q := url.Values{}
	if since != "" {
		q.Set("since", since)
	}
	if limit > 0 {
		q.Set("limit", strconv.Itoa(limit))
	}
	var page Page
	err := p.do(ctx, http.MethodGet, endpoint(p.base, q, "v1", "channels", channel, "messages"), nil, "",
		func(resp *http.Response) (bool, error) {
			if resp.StatusCode != http.StatusOK {
				return false, problemFromResponse(resp)
			}
			var doc struct {
				Messages []Message `json:"messages"`
				Next     string    `json:"next"`
				Complete bool      `json:"complete"`
				More     bool      `json:"more"`
			}
			if err := json.NewDecoder(resp.Body).Decode(&doc); err != nil {
				return false, fmt.Errorf("herald: history answer: %w", err)
			}
			page = Page(doc)
			return false, nil
		})
	return page, err
}

// Pager walks a channel's history page by page:
//
//	pg := pub.HistoryPager("orders:42", "0", 500)
//	for pg.Next(ctx) {
//		for _, m := range pg.Page().Messages { ... }
//	}
//	if err := pg.Err(); err != nil { ... }
type Pager struct {
	p        *Publisher
	channel  string
	since    string
	limit    int
	page     Page
	err      error
	done     bool
	complete bool
}

// HistoryPager returns a Pager over channel's messages after since, limit per page.
func (p *Publisher) HistoryPager(channel, since string, limit int) *Pager {
	return &Pager{p: p, channel: channel, since: since, limit: limit, complete: true}
}

// Next fetches the next page and reports whether it holds messages. It returns false at the
// end of the log or on an error (see Err).
func (pg *Pager) Next(ctx context.Context) bool {
	if pg.done {
		return false
	}
	page, err := pg.p.History(ctx, pg.channel, pg.since, pg.limit)
	if err != nil {
		pg.err, pg.done = err, true
		return false
	}
	pg.page = page
	pg.complete = pg.complete && page.Complete
	if page.Next != "" {
		pg.since = page.Next
	}
	if !page.More || len(page.Messages) == 0 {
		pg.done = true
	}
	return len(page.Messages) > 0
}

// Page is the page the last Next fetched.
func (pg *Pager) Page() Page { return pg.page }

// Err is the error that ended the walk, if any.
func (pg *Pager) Err() error { return pg.err }

// Complete reports whether every page read so far was complete (see Page.Complete).
func (pg *Pager) Complete() bool { return pg.complete }

// Messages returns an iterator over channel's messages after since, fetched a page at a time.
// It yields a non-nil error once, as its last element, when a page cannot be read.
func (p *Publisher) Messages(ctx context.Context, channel, since string) iter.Seq2[Message, error] {
	return func(yield func(Message, error) bool) {
		pg := p.HistoryPager(channel, since, 1000)
		for pg.Next(ctx) {
			for _, m := range pg.Page().Messages {
				if !yield(m, nil) {
					return
				}
			}
		}
		if err := pg.Err(); err != nil {
			yield(Message{}, err)
		}
	}
}

// ChannelInfo describes a channel.
type ChannelInfo struct {
	Channel string `json:"channel"`
	// Subscribers counts the subscribers on the node that answered.
	Subscribers int `json:"subscribers"`
	// LastID is the newest retained message's id; empty when there is none.
	LastID string `json:"last_id"`
}

// Channel returns channel's info.
func (p *Publisher) Channel(ctx context.Context, channel string) (ChannelInfo, error) {
	return channelInfo(ctx, p, channel)
}

func channelInfo(ctx context.Context, p *Publisher, channel string) (ChannelInfo, error) {
	if !validChannel(channel) {
		return ChannelInfo{}, fmt.Errorf("%w: %q", ErrInvalidChannel, channel)
	}
	var info ChannelInfo
	err := p.do(ctx, http.MethodGet, endpoint(p.base, nil, "v1", "channels", channel), nil, "",
		func(resp *http.Response) (bool, error) {
			if resp.StatusCode != http.StatusOK {
				return false, problemFromResponse(resp)
			}
			return false, json.NewDecoder(resp.Body).Decode(&info)
		})
	return info, err
}

// do sends a request, retrying on network errors and temporary answers. handle reads a
// response: it returns an error for a failed answer (a temporary *ProblemError is retried) or
// retry=true for an answer to send again (a batch with temporary failures).
func (p *Publisher) do(ctx context.Context, method, target string, body []byte, key string,
	handle func(*http.Response) (retry bool, err error)) error {
	pol := p.cfg.retry
	b := backoff{initial: pol.Initial, max: pol.Max}
	start := time.Now()
	for attempt := 1; ; attempt++ {
		retry, wait, err := p.attempt(ctx, method, target, body, key, handle)
		if !retry {
			return err
		}
		if ctx.Err() != nil {
			return errors.Join(ctx.Err(), err)
		}
		if wait <= 0 {
			wait = b.next()
		}
		if attempt >= pol.MaxAttempts || time.Since(start)+wait > pol.MaxElapsed {
			return retriesExhausted(attempt, err)
		}
		if dl, ok := ctx.Deadline(); ok && time.Until(dl) < wait {
			return retriesExhausted(attempt, err)
		}
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return errors.Join(ctx.Err(), err)
		case <-t.C:
		}
	}
}

func retriesExhausted(attempts int, err error) error {
	if err == nil {
		return nil // a batch whose temporary failures remain: the caller reports them
	}
	if attempts == 1 {
		return err
	}
	return fmt.Errorf("%w (after %d attempts)", err, attempts)
}

// attempt makes one try. It reports whether to retry and how long the server asked to wait.
func (p *Publisher) attempt(ctx context.Context, method, target string, body []byte, key string,
	handle func(*http.Response) (bool, error)) (retry bool, wait time.Duration, err error) {
	actx, cancel := context.WithTimeout(ctx, p.cfg.retry.AttemptTimeout)
	defer cancel()
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(actx, method, target, rd)
	if err != nil {
		return false, 0, err
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if key != "" {
		req.Header.Set("Idempotency-Key", key)
	}
	req.Header.Set("Accept", "application/json")
	req.Header.Set("User-Agent", p.cfg.userAgent)
	if p.cfg.token != nil {
		tok, err := p.cfg.token(ctx)
		if err != nil {
			return false, 0, fmt.Errorf("herald: token: %w", err)
		}
		if tok != "" {
			req.Header.Set("Authorization", "Bearer "+tok)
		}
	}
	resp, err := p.http.Do(req)
	if err != nil {
		// The request may or may not have reached the server: the idempotency key makes a
		// retry safe either way.
		return ctx.Err() == nil, 0, err
	}
	defer func() {
		_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
		resp.Body.Close()
	}()
	retry, err = handle(resp)
	var pe *ProblemError
	switch {
	case errors.As(err, &pe):
		return pe.Temporary(), pe.RetryAfter, err
	case err != nil:
		// A success answer that could not be read (the connection dropped in its body): the
		// request was done, and repeating it with the same key returns the same answer.
		return ctx.Err() == nil, 0, err
	}
	if retry {
		return true, parseRetryAfter(resp.Header.Get("Retry-After"), time.Now()), nil
	}
	return false, 0, err
}
