package api

import (
	"errors"

	"github.com/labstack/echo/v4"

	"github.com/herald-gateway/herald/api/auth"
	"github.com/herald-gateway/herald/api/problem"
)

// authenticate verifies the request's token (Authorization: Bearer, access_token query
// parameter or, when the CORS policy lets it count for the request's origin, the herald_token
// cookie). A missing, invalid or expired token is the 401 problem of problem.Auth, the one the
// gateway answers too, with its WWW-Authenticate challenge. The verifier's reason is logged,
// never sent.
func (s *server) authenticate(c echo.Context) (*auth.Claims, error) {
	r := c.Request()
	claims, err := s.auth.Verify(r.Context(), auth.FromRequest(r, s.cors.CookieAllowed(r)))
	if err == nil {
		return claims, nil
	}
	if !errors.Is(err, auth.ErrNoToken) {
		s.log.InfoContext(r.Context(), "token refused", "path", r.URL.Path, "client", r.RemoteAddr, "err", err)
	}
	return nil, problem.Auth(err)
}

// forbidden is the 403 for an action the token does not allow on channel.
func forbidden(action, channel string) *problem.Details {
	return problem.Forbidden(action, channel)
}
