package api_test

import (
	"net/http"
	"testing"
	"time"

	"github.com/herald-gateway/herald/api"
	"github.com/herald-gateway/herald/gateway/admission"
)

// TestContractRateLimited holds the publish routes' answers under a publish rate limit to the
// document: a publish over the rate is a 429 rate-limited with Retry-After; a batch partly over
// it a 207 whose excess messages carry that problem; a batch with no token left a 429.
func TestContractRateLimited(t *testing.T) {
	c := loadContract(t)
	now := time.Unix(1_700_000_000, 0)
	limiter := admission.NewPublishLimiter(admission.PublishConfig{Rate: 0.5, Burst: 2, Now: func() time.Time { return now }})
	e := newEnv(t, withOptions(func(o *api.Options) { o.PublishLimiter = limiter }))
	other := token(t, []string{"*"}, []string{"*"})
	post := func(path, body, tok string) request {
		return request{method: http.MethodPost, path: path, body: body, token: tok}
	}
	single := post("/v1/channels/r/messages", `{"data":1}`, testAPIKey)

	if r := c.check(t, e, single, true); r.status != 201 {
		t.Fatalf("publish within the burst: %d %s", r.status, r.body)
	}
	r := c.check(t, e, post("/v1/messages", `{"channels":["r","s","t"],"data":2}`, testAPIKey), true)
	var batch struct {
		Results []struct {
			ID    string
			Error *problemDoc
		}
	}
	r.json(t, &batch)
	if r.status != 207 || r.header.Get("Retry-After") != "4" || len(batch.Results) != 3 || batch.Results[0].ID == "" ||
		batch.Results[1].Error == nil || batch.Results[1].Error.Type != "rate-limited" || batch.Results[2].Error == nil {
		t.Fatalf("a batch of 3 with 1 token: %d Retry-After %q %s, want 207, the first stored, the rest rate-limited, Retry-After 4",
			r.status, r.header.Get("Retry-After"), r.body)
	}
	for _, req := range []request{single, post("/v1/messages", `{"channels":["r"],"data":3}`, testAPIKey)} {
		r := c.check(t, e, req, true)
		var p problemDoc
		r.json(t, &p)
		if r.status != 429 || p.Type != "rate-limited" || r.header.Get("Retry-After") != "2" {
			t.Fatalf("%s over the rate: %d Retry-After %q %s, want 429 rate-limited, Retry-After 2",
				req.path, r.status, r.header.Get("Retry-After"), r.body)
		}
	}
	if r := c.check(t, e, post("/v1/channels/r/messages", `{"data":4}`, other), true); r.status != 201 {
		t.Fatalf("another credential: %d %s", r.status, r.body)
	}
	now = now.Add(2 * time.Second)
	if r := c.check(t, e, single, true); r.status != 201 {
		t.Fatalf("publish after the Retry-After: %d %s", r.status, r.body)
	}
	if got := e.metric(`herald_publish_errors_total{reason="rate_limited"}`); got != "4" {
		t.Fatalf("herald_publish_errors_total{reason=\"rate_limited\"} = %q, want 4 (two batch results, two requests)", got)
	}
}
