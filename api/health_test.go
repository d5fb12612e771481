package api_test

import (
	"bytes"
	"context"
	"errors"
	"net/http"
	"strings"
	"testing"

	"github.com/herald-gateway/herald/api"
	"github.com/herald-gateway/herald/gateway/broker"
	"github.com/herald-gateway/herald/openapi"
)

func TestHealthz(t *testing.T) {
	e := newEnv(t, failWith(broker.ErrUnavailable)) // liveness does not depend on the broker
	r := e.do(request{path: "/healthz"})
	if r.status != http.StatusOK || strings.TrimSpace(string(r.body)) != `{"status":"ok"}` {
		t.Fatalf("healthz: %d %s", r.status, r.body)
	}
}

func TestReadyz(t *testing.T) {
	e := newEnv(t)
	r := e.do(request{path: "/readyz"})
	if r.status != http.StatusOK || strings.TrimSpace(string(r.body)) != `{"status":"ok"}` {
		t.Fatalf("readyz: %d %s", r.status, r.body)
	}
}

func TestReadyzBrokerDown(t *testing.T) {
	e := newEnv(t, failWith(errInternalSecret))
	r := e.do(request{path: "/readyz"})
	p := r.wantProblem(t, 503, "not-ready")
	if strings.Contains(string(r.body), "10.1.2.3") || !strings.Contains(p.Detail, "broker") {
		t.Fatalf("readyz problem %s", r.body)
	}
	if !strings.Contains(e.logBuf.String(), "10.1.2.3") {
		t.Fatal("the broker's error was not logged")
	}
}

func TestReadyzExtraCheck(t *testing.T) {
	e := newEnv(t, withOptions(func(o *api.Options) {
		o.Ready = func(context.Context) error { return errors.New("draining") }
	}))
	e.do(request{path: "/readyz"}).wantProblem(t, 503, "not-ready")
}

func TestMetricsAfterPublish(t *testing.T) {
	e := newEnv(t)
	if got := e.metric("herald_messages_published_total"); got != "0" {
		t.Fatalf("herald_messages_published_total %q before any publish", got)
	}
	e.publish("m", `{"data":1}`)
	if got := e.metric("herald_messages_published_total"); got != "1" {
		t.Fatalf("herald_messages_published_total %q, want 1", got)
	}
	r := e.do(request{path: "/metrics"})
	if !bytes.Contains(r.body, []byte("\ngo_goroutines ")) || !strings.HasPrefix(r.header.Get("Content-Type"), "text/plain") {
		t.Fatalf("/metrics lacks the Go runtime series or is not text: %s", r.header.Get("Content-Type"))
	}
}

func TestOpenAPIServed(t *testing.T) {
	e := newEnv(t)
	r := e.do(request{path: "/openapi.yaml"})
	if r.status != http.StatusOK || r.header.Get("Content-Type") != "application/yaml" || !bytes.Equal(r.body, openapi.Spec) {
		t.Fatalf("/openapi.yaml: %d %q, %d bytes", r.status, r.header.Get("Content-Type"), len(r.body))
	}
}
