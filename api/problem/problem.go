// Package problem writes RFC 9457 problem details (application/problem+json), the one error
// shape of herald's HTTP API and of the subscribe endpoints before a stream starts.
package problem

import (
	"bytes"
	"encoding/json"
	"net/http"
	"strconv"
	"time"
)

// ContentType is the media type of a problem document.
const ContentType = "application/problem+json"

// Details is a problem document. Type is a short stable code (for example "invalid-channel")
// that clients can switch on; Title is the HTTP status text; Detail says what was wrong with
// this request.
type Details struct {
	Type     string `json:"type"`
	Title    string `json:"title"`
	Status   int    `json:"status"`
	Detail   string `json:"detail,omitempty"`
	Instance string `json:"instance,omitempty"`
	// RetryAfter, when set, is sent as the Retry-After header (whole seconds, at least 1).
	RetryAfter time.Duration `json:"-"`
	// Challenge, when set, is sent as the WWW-Authenticate header (401 answers).
	Challenge string `json:"-"`
}

// New makes a problem with the given status, code and detail.
func New(status int, code, detail string) *Details {
	return &Details{Type: code, Title: http.StatusText(status), Status: status, Detail: detail}
}

// Error makes Details usable as an error, so handlers can return it.
func (d *Details) Error() string { return d.Type + ": " + d.Detail }

// Write sends d as the response.
func Write(w http.ResponseWriter, d *Details) {
	h := w.Header()
	h.Set("Content-Type", ContentType)
	h.Set("Cache-Control", "no-store")
	if d.RetryAfter > 0 {
		h.Set("Retry-After", strconv.Itoa(d.RetryAfterSeconds()))
	}
	if d.Challenge != "" {
		h.Set("WWW-Authenticate", d.Challenge)
	}
	w.WriteHeader(d.Status)
	_, _ = w.Write(d.JSON())
}

// RetryAfterSeconds is RetryAfter in whole seconds, rounded up; 0 when it is not set.
func (d *Details) RetryAfterSeconds() int {
	if d.RetryAfter <= 0 {
		return 0
	}
	return int((d.RetryAfter + time.Second - 1) / time.Second)
}

// JSON is the problem document as Write sends it (a newline ends it).
func (d *Details) JSON() []byte {
	var b bytes.Buffer
	_ = json.NewEncoder(&b).Encode(d) // Details always encodes
	return b.Bytes()
}
