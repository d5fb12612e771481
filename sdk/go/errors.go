package herald

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// Errors a call can return (compare with errors.Is).
var (
	// ErrClosed: the Client or Publisher was closed.
	ErrClosed = errors.New("herald: closed")
	// ErrAlreadySubscribed: the Client already has a subscription to the channel.
	ErrAlreadySubscribed = errors.New("herald: already subscribed to this channel")
	// ErrInvalidChannel: a channel name is not 1-255 bytes of A-Z a-z 0-9 _ . : @ / = + -.
	ErrInvalidChannel = errors.New("herald: invalid channel name")
	// ErrTokenExpired: the server ended the connection because the token expired (WebSocket
	// close 4001, SSE herald.token-expired). The Client reconnects with a fresh token by itself.
	ErrTokenExpired = errors.New("herald: token expired")
	// ErrDeadConnection: nothing arrived for two heartbeat intervals. The Client reconnects.
	ErrDeadConnection = errors.New("herald: connection dead: nothing received for two heartbeat intervals")
)

// ProblemError is an error answer of the HTTP API: an RFC 9457 problem document. Type is the
// server's short stable code ("forbidden", "invalid-channel", "unavailable", ...).
type ProblemError struct {
	Status   int
	Type     string
	Title    string
	Detail   string
	Instance string
	// RetryAfter is the server's Retry-After, when it sent one.
	RetryAfter time.Duration
}

func (e *ProblemError) Error() string {
	var b strings.Builder
	b.WriteString("herald: ")
	b.WriteString(strconv.Itoa(e.Status))
	if e.Type != "" {
		b.WriteString(" " + e.Type)
	} else if e.Title != "" {
		b.WriteString(" " + e.Title)
	}
	if e.Detail != "" {
		b.WriteString(": " + e.Detail)
	}
	return b.String()
}

// Temporary reports whether retrying the same request later may succeed (429, 502, 503, 504).
func (e *ProblemError) Temporary() bool { return retryableStatus(e.Status) }

// overloaded reports whether the server refused for its load: 503 (the node is full, or its
// store is down) or 429 (this client connects too much). The answer to it is to wait for the
// Retry-After and try again, the same request on the same transport.
func (e *ProblemError) overloaded() bool {
	return e.Status == http.StatusTooManyRequests || e.Status == http.StatusServiceUnavailable
}

func retryableStatus(status int) bool {
	switch status {
	case http.StatusTooManyRequests, http.StatusBadGateway, http.StatusServiceUnavailable, http.StatusGatewayTimeout:
		return true
	}
	return false
}

// problemFromResponse reads an error answer. A body that is not a problem document still gives
// the status and its text.
func problemFromResponse(resp *http.Response) *ProblemError {
	return problemFromBody(resp.StatusCode, resp.Header, resp.Body)
}

func problemFromBody(status int, h http.Header, body io.Reader) *ProblemError {
	p := &ProblemError{Status: status, Title: http.StatusText(status), RetryAfter: parseRetryAfter(h.Get("Retry-After"), time.Now())}
	raw, _ := io.ReadAll(io.LimitReader(body, 64<<10))
	mt, _, _ := mime.ParseMediaType(h.Get("Content-Type"))
	if mt == "application/problem+json" || mt == "application/json" {
		var doc struct {
			Type     string `json:"type"`
			Title    string `json:"title"`
			Status   int    `json:"status"`
			Detail   string `json:"detail"`
			Instance string `json:"instance"`
		}
		if json.Unmarshal(raw, &doc) == nil {
			p.Type, p.Detail, p.Instance = doc.Type, doc.Detail, doc.Instance
			if doc.Title != "" {
				p.Title = doc.Title
			}
			return p
		}
	}
	if text := strings.TrimSpace(string(raw)); text != "" && len(text) <= 200 {
		p.Detail = text
	}
	return p
}

// parseRetryAfter reads a Retry-After value: delay seconds or an HTTP date. It returns 0 when
// there is none or it cannot be read.
func parseRetryAfter(v string, now time.Time) time.Duration {
	v = strings.TrimSpace(v)
	if v == "" {
		return 0
	}
	if secs, err := strconv.Atoi(v); err == nil {
		if secs < 0 {
			return 0
		}
		return time.Duration(secs) * time.Second
	}
	if t, err := http.ParseTime(v); err == nil && t.After(now) {
		return t.Sub(now)
	}
	return 0
}

// CloseError is the close frame a WebSocket connection ended with.
type CloseError struct {
	Code   int
	Reason string
}

func (e *CloseError) Error() string {
	if e.Reason == "" {
		return fmt.Sprintf("herald: connection closed by the server (%d)", e.Code)
	}
	return fmt.Sprintf("herald: connection closed by the server (%d %s)", e.Code, e.Reason)
}

// Is makes a 4001 close match ErrTokenExpired.
func (e *CloseError) Is(target error) bool { return target == ErrTokenExpired && e.Code == 4001 }

// SubscribeError is a subscription the server refused (a WebSocket error frame). Code is the
// server's code ("forbidden", "invalid-since", "too-many-channels", ...). The subscription is
// removed from the Client.
type SubscribeError struct {
	Channel string
	Code    string
	Message string
}

func (e *SubscribeError) Error() string {
	return "herald: subscribe " + e.Channel + " refused: " + e.Code + ": " + e.Message
}
