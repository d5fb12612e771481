package gateway

import (
	"encoding/json"
	"strconv"
	"strings"
	"testing"
	"time"
)

// TestPollAnswerIsBounded: a poll of several channels far behind gets one answer of about
// pollAnswerBytes, with more set, and polling on from its cursor at once yields every message
// exactly once, in order per channel, every channel being served before the answers run out.
func TestPollAnswerIsBounded(t *testing.T) {
	const (
		channels = 4
		perChan  = 40
		size     = 60 << 10 // 40 x 60 KiB = 2.4 MB per channel, 9.6 MB in all
	)
	e := newEnv(t)
	tok := e.token([]string{"*"}, nil, time.Hour)
	data := `"` + strings.Repeat("x", size-2) + `"`
	query := "access_token=" + tok + "&timeout=0"
	since := ""
	for c := range channels {
		name := "big" + strconv.Itoa(c)
		query += "&channel=" + name
		for range perChan {
			e.publish(name, data)
		}
		since += ",0"
	}
	cursor := since[1:]
	seen := map[string][]string{}
	answers := 0
	for {
		resp := e.poll(t, query+"&since="+cursor)
		if t.Failed() {
			return
		}
		answers++
		bytes := 0
		for _, m := range resp.Messages {
			bytes += len(m.Data)
			seen[m.Channel] = append(seen[m.Channel], m.ID)
		}
		if bytes > pollAnswerBytes+size {
			t.Fatalf("answer %d holds %d bytes, want at most %d", answers, bytes, pollAnswerBytes+size)
		}
		cursor = resp.Cursor
		if !resp.More {
			break
		}
		if answers > 2*channels*perChan*size/pollAnswerBytes+channels {
			t.Fatalf("%d answers and still more", answers)
		}
	}
	if answers < channels*perChan*size/pollAnswerBytes {
		t.Fatalf("%d answers: the budget did not cut them", answers)
	}
	for c := range channels {
		ids := seen["big"+strconv.Itoa(c)]
		if len(ids) != perChan {
			t.Fatalf("channel %d: %d messages, want %d", c, len(ids), perChan)
		}
	}
	// Nothing left: a poll from the final cursor waits (timeout=0: answers empty).
	if resp := e.poll(t, query+"&since="+cursor); len(resp.Messages) != 0 || resp.More {
		t.Fatalf("after the catch-up: %d messages, more=%v", len(resp.Messages), resp.More)
	}
}

// TestPollServesEveryChannel: when the budget is spent on the first channels, the next answer
// starts with the ones left out (oldest position first), so a busy channel does not starve its
// neighbours.
func TestPollServesEveryChannel(t *testing.T) {
	e := newEnv(t)
	tok := e.token([]string{"*"}, nil, time.Hour)
	big := `"` + strings.Repeat("y", 60<<10) + `"`
	for range 40 {
		e.publish("first", big)
	}
	e.publish("second", `"small"`)
	resp := e.poll(t, "access_token="+tok+"&timeout=0&channel=first&channel=second&since=0,0")
	if !resp.More {
		t.Fatalf("first answer: more=false with %d messages", len(resp.Messages))
	}
	got := map[string]int{}
	for _, m := range resp.Messages {
		got[m.Channel]++
	}
	if got["second"] == 0 {
		// "first" took the whole budget; "second" kept its position and goes first now.
		resp = e.poll(t, "access_token="+tok+"&timeout=0&channel=first&channel=second&since="+resp.Cursor)
		if len(resp.Messages) == 0 || resp.Messages[0].Channel != "second" {
			b, _ := json.Marshal(resp.Messages[:min(1, len(resp.Messages))])
			t.Fatalf("second answer starts with %s, want the channel left out", b)
		}
	}
}
