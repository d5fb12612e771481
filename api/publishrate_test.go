package api_test

import (
	"net/http"
	"testing"
	"time"

	"github.com/herald-gateway/herald/api"
	"github.com/herald-gateway/herald/gateway/admission"
)

// TestContractRateLimited holds the publish routes' answers under a publish rate limit to the
// document: a publish or a batch over the rate is a 429 rate-limited with Retry-After, whole.
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
	refused := func(req request, retry string) {
		t.Helper()
		r := c.check(t, e, req, true)
		var p problemDoc
		r.json(t, &p)
		if r.status != 429 || p.Type != "rate-limited" || r.header.Get("Retry-After") != retry {
			t.Fatalf("%s over the rate: %d Retry-After %q %s, want 429 rate-limited, Retry-After %s",
				req.path, r.status, r.header.Get("Retry-After"), r.body, retry)
		}
	}

	if r := c.check(t, e, single, true); r.status != 201 {
		t.Fatalf("publish within the burst: %d %s", r.status, r.body)
	}
	// One token left: a batch of two is refused whole (until the second token, in 2 s) and
	// spends nothing, so a single publish still passes.
	refused(post("/v1/messages", `{"channels":["r","s"],"data":2}`, testAPIKey), "2")
	if r := c.check(t, e, single, true); r.status != 201 {
		t.Fatalf("publish with the token the batch left: %d %s", r.status, r.body)
	}
	refused(single, "2")
	refused(post("/v1/messages", `{"channels":["r"],"data":3}`, testAPIKey), "2")
	if r := c.check(t, e, post("/v1/channels/r/messages", `{"data":4}`, other), true); r.status != 201 {
		t.Fatalf("another credential: %d %s", r.status, r.body)
	}
	now = now.Add(2 * time.Second)
	if r := c.check(t, e, single, true); r.status != 201 {
		t.Fatalf("publish after the Retry-After: %d %s", r.status, r.body)
	}
	if got := e.metric(`herald_publish_errors_total{reason="rate_limited"}`); got != "3" {
		t.Fatalf("herald_publish_errors_total{reason=\"rate_limited\"} = %q, want the 3 refusals", got)
	}
}
