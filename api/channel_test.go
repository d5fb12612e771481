package api_test

import (
	"github.com/herald-gateway/herald/gateway/broker"
	"net/http"
	"strings"
	"testing"
)

func TestChannelInfo(t *testing.T) {
	e := newEnv(t)
	e.gw.setSubscribers("lobby", 3)

	r := e.do(request{path: "/v1/channels/lobby", token: token(t, nil, []string{"lobby"})})
	if r.status != http.StatusOK {
		t.Fatalf("status %d: %s", r.status, r.body)
	}
	var info struct {
		Channel     string
		Subscribers int
		LastID      *string `json:"last_id"`
	}
	r.json(t, &info)
	// An empty channel's position is the broker's epoch, as on every transport: not 0-0.
	if info.Channel != "lobby" || info.Subscribers != 3 || info.LastID == nil || *info.LastID == "0-0" {
		t.Fatalf("before any publish: %s", r.body)
	}
	if epoch, err := broker.ParseID(*info.LastID); err != nil || epoch.IsZero() {
		t.Fatalf("before any publish, last_id %q is not the epoch", *info.LastID)
	}

	id := e.publish("lobby", `{"data":1}`)
	r = e.do(request{path: "/v1/channels/lobby", token: token(t, []string{"lobby"}, nil)}) // publish rights suffice
	r.json(t, &info)
	if r.status != http.StatusOK || info.LastID == nil || *info.LastID != id {
		t.Fatalf("after a publish of %s: %d %s", id, r.status, r.body)
	}
}

func TestChannelInfoErrors(t *testing.T) {
	e := newEnv(t)
	e.do(request{path: "/v1/channels/lobby"}).wantProblem(t, 401, "unauthorized")
	e.do(request{path: "/v1/channels/lobby", token: token(t, []string{"other"}, []string{"other"})}).wantProblem(t, 403, "forbidden")
	e.do(request{path: "/v1/channels/" + strings.Repeat("x", 300), token: testAPIKey}).wantProblem(t, 400, "invalid-channel")
}
