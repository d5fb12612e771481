package api_test

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"

	"github.com/herald-gateway/herald/api"
	"github.com/herald-gateway/herald/gateway/broker"
	"github.com/herald-gateway/herald/gateway/broker/memory"
)

// historyAnswer is the body of a history page.
type historyAnswer struct {
	Messages []struct {
		Channel string
		ID      string
		Event   *string
		Data    json.RawMessage
	}
	Next     string
	Complete bool
	Reason   string
	More     bool
}

func (e *env) readHistory(path, tok string) (response, historyAnswer) {
	e.t.Helper()
	r := e.do(request{path: path, token: tok})
	var out historyAnswer
	if r.status == http.StatusOK {
		r.json(e.t, &out)
	}
	return r, out
}

func TestHistoryPages(t *testing.T) {
	e := newEnv(t)
	var ids []string
	for _, body := range []string{`{"data":{"n":0},"event":"e"}`, `{"data":1}`, `{"data":2}`, `{"data":3}`, `{"data":4}`} {
		ids = append(ids, e.publish("news", body))
	}
	tok := token(t, nil, []string{"news"})

	r, page := e.readHistory("/v1/channels/news/messages?limit=2", tok)
	if r.status != http.StatusOK || len(page.Messages) != 2 || page.Messages[0].ID != ids[0] || page.Messages[1].ID != ids[1] {
		t.Fatalf("first page: %d %s", r.status, r.body)
	}
	if page.Next != ids[1] || !page.More || !page.Complete {
		t.Fatalf("first page: next %s more %v complete %v", page.Next, page.More, page.Complete)
	}
	m := page.Messages[0]
	if m.Channel != "news" || m.Event == nil || *m.Event != "e" || string(m.Data) != `{"n":0}` {
		t.Fatalf("first message %+v", m)
	}
	if page.Messages[1].Event != nil {
		t.Fatal(`a message without event name has "event"`)
	}

	_, page = e.readHistory("/v1/channels/news/messages?limit=2&since="+page.Next, tok)
	if len(page.Messages) != 2 || page.Messages[0].ID != ids[2] || !page.More {
		t.Fatalf("second page: %+v", page)
	}
	_, page = e.readHistory("/v1/channels/news/messages?since="+page.Next, tok)
	if len(page.Messages) != 1 || page.Messages[0].ID != ids[4] || page.More || page.Next != ids[4] {
		t.Fatalf("last page: %+v", page)
	}
	_, page = e.readHistory("/v1/channels/news/messages?since="+page.Next, tok)
	if len(page.Messages) != 0 || page.Next != ids[4] || page.More || !page.Complete {
		t.Fatalf("page after the end: %+v", page)
	}
	_, page = e.readHistory("/v1/channels/news/messages?since=0", tok)
	if len(page.Messages) != 5 {
		t.Fatalf("since=0 gave %d messages, want 5", len(page.Messages))
	}
}

func TestHistoryEmptyChannel(t *testing.T) {
	e := newEnv(t)
	r, page := e.readHistory("/v1/channels/nothing/messages", testAPIKey)
	if r.status != http.StatusOK || page.Messages == nil || len(page.Messages) != 0 || !page.Complete || page.More {
		t.Fatalf("empty channel: %d %s", r.status, r.body)
	}
	if !strings.Contains(string(r.body), `"messages":[]`) {
		t.Fatalf("messages is not an empty list: %s", r.body)
	}
	// next is a position to read on from: nothing is missed after it.
	id := e.publish("nothing", `{"data":1}`)
	_, page = e.readHistory("/v1/channels/nothing/messages?since="+page.Next, testAPIKey)
	if len(page.Messages) != 1 || page.Messages[0].ID != id || !page.Complete {
		t.Fatalf("read on from an empty page's next: %+v, want the one message %s, complete", page, id)
	}
}

// TestHistoryTrimmed shows "complete": false when messages after since were trimmed.
func TestHistoryTrimmed(t *testing.T) {
	e := newEnv(t, withMemory(func(o *memory.Options) {
		o.Retention.Default = broker.Retention{Size: 2, TTL: broker.DefaultRetention.TTL}
	}))
	first := e.publish("small", `{"data":1}`)
	e.publish("small", `{"data":2}`)
	e.publish("small", `{"data":3}`)
	e.publish("small", `{"data":4}`)
	_, page := e.readHistory("/v1/channels/small/messages?since="+first, testAPIKey)
	if page.Complete || page.Reason != "trimmed" || len(page.Messages) != 2 {
		t.Fatalf("after a trim: %+v, want 2 messages and complete false, reason trimmed", page)
	}
}

func TestHistoryBadInput(t *testing.T) {
	e := newEnv(t)
	cases := []struct {
		query string
		typ   string
	}{
		{"since=abc", "invalid-since"},
		{"since=-1", "invalid-since"},
		{"since=", "invalid-since"},
		{"since=1&since=2", "invalid-since"},
		{"limit=0", "invalid-limit"},
		{"limit=1001", "invalid-limit"},
		{"limit=ten", "invalid-limit"},
		{"limit=", "invalid-limit"},
	}
	for _, c := range cases {
		t.Run(c.query, func(t *testing.T) {
			r := e.do(request{path: "/v1/channels/x/messages?" + c.query, token: testAPIKey})
			r.wantProblem(t, 400, c.typ)
		})
	}
	r := e.do(request{path: "/v1/channels/a%20b/messages", token: testAPIKey})
	r.wantProblem(t, 400, "invalid-channel")
}

func TestHistoryAuth(t *testing.T) {
	e := newEnv(t)
	e.publish("room:1", `{"data":1}`)
	sub := token(t, nil, []string{"room:*"})
	for name, req := range map[string]request{
		"bearer":  {path: "/v1/channels/room:1/messages", token: sub},
		"query":   {path: "/v1/channels/room:1/messages?access_token=" + sub},
		"cookie":  {path: "/v1/channels/room:1/messages", header: map[string]string{"Cookie": "herald_token=" + sub}},
		"api key": {path: "/v1/channels/room:1/messages", token: testAPIKey},
	} {
		if r := e.do(req); r.status != http.StatusOK {
			t.Fatalf("%s: status %d: %s", name, r.status, r.body)
		}
	}
	e.do(request{path: "/v1/channels/room:1/messages"}).wantProblem(t, 401, "unauthorized")
	e.do(request{path: "/v1/channels/room:1/messages", token: token(t, []string{"*"}, nil)}).wantProblem(t, 403, "forbidden")
	e.do(request{path: "/v1/channels/room:1/messages", token: token(t, nil, []string{"room:2"})}).wantProblem(t, 403, "forbidden")
}

// TestHistoryPageByteLimit: a page holds at most Options.HistoryPageBytes of message data (one
// message past it at most), says more when it was cut there, and paging on from next reads every
// message once.
func TestHistoryPageByteLimit(t *testing.T) {
	const pageBytes = 10_000
	e := newEnv(t, withOptions(func(o *api.Options) { o.HistoryPageBytes = pageBytes }))
	data := `"` + strings.Repeat("z", 3000) + `"`
	var ids []string
	for range 10 {
		ids = append(ids, e.publish("big", `{"data":`+data+`}`))
	}
	tok := token(t, nil, []string{"big"})
	var got []string
	since, pages := "0", 0
	for {
		r, page := e.readHistory("/v1/channels/big/messages?limit=1000&since="+since, tok)
		if r.status != http.StatusOK {
			t.Fatalf("status %d: %s", r.status, r.body)
		}
		pages++
		n := 0
		for _, m := range page.Messages {
			n += len(m.Data)
			got = append(got, m.ID)
		}
		if n > pageBytes+len(data) {
			t.Fatalf("page %d holds %d bytes, want at most %d", pages, n, pageBytes+len(data))
		}
		since = page.Next
		if !page.More {
			break
		}
		if pages > len(ids) {
			t.Fatal("more pages than messages")
		}
	}
	if pages < 3 || strings.Join(got, ",") != strings.Join(ids, ",") {
		t.Fatalf("%d pages with %v, want at least 3 pages with %v", pages, got, ids)
	}
}
