package api

import (
	"context"
	"net/http"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/herald-gateway/herald/api/problem"
)

// readyTimeout bounds the readiness checks of one /readyz request.
const readyTimeout = 5 * time.Second

// healthz is GET /healthz: the process is up.
func (s *server) healthz(c echo.Context) error {
	return writeJSON(c, http.StatusOK, map[string]string{"status": "ok"})
}

// readyz is GET /readyz: 200 when the broker, the token verifier and Options.Ready all report
// ready, else 503. The answer names the part that is not ready, never its error, which is
// logged instead (it may hold addresses).
func (s *server) readyz(c echo.Context) error {
	ctx, cancel := context.WithTimeout(c.Request().Context(), readyTimeout)
	defer cancel()
	checks := []struct {
		name  string
		check func(context.Context) error
	}{
		{"broker", s.broker.Ready},
		{"auth", func(context.Context) error { return s.auth.Ready() }},
		{"server", s.ready},
	}
	for _, ch := range checks {
		if ch.check == nil {
			continue
		}
		if err := ch.check(ctx); err != nil {
			s.log.WarnContext(ctx, "not ready", "part", ch.name, "err", err)
			p := problem.New(http.StatusServiceUnavailable, typeNotReady, ch.name+" is not ready")
			p.RetryAfter = time.Second
			return p
		}
	}
	return writeJSON(c, http.StatusOK, map[string]string{"status": "ok"})
}
