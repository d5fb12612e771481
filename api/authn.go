package api

import (
	"errors"
	"net/http"

	"github.com/labstack/echo/v4"

	"github.com/herald-gateway/herald/api/auth"
	"github.com/herald-gateway/herald/api/problem"
)

// wwwAuthenticate values (RFC 6750, section 3).
const (
	challengeNoToken = `Bearer realm="herald"`
	challengeInvalid = `Bearer realm="herald", error="invalid_token", error_description="the token is not valid"`
	challengeExpired = `Bearer realm="herald", error="invalid_token", error_description="the token has expired"`
)

// authenticate verifies the request's token (Authorization: Bearer, access_token query
// parameter or herald_token cookie). A missing, invalid or expired token is a 401 problem
// (unauthorized, invalid-token, token-expired: the types the gateway uses too) with a
// WWW-Authenticate challenge. The verifier's error text is not sent: it is logged when it is
// not one of auth's sentinel errors.
func (s *server) authenticate(c echo.Context) (*auth.Claims, error) {
	r := c.Request()
	claims, err := s.auth.Verify(r.Context(), auth.FromRequest(r))
	if err == nil {
		return claims, nil
	}
	h := c.Response().Header()
	switch {
	case errors.Is(err, auth.ErrNoToken):
		h.Set("WWW-Authenticate", challengeNoToken)
		return nil, problem.New(http.StatusUnauthorized, typeUnauthorized, "a bearer token or API key is required")
	case errors.Is(err, auth.ErrExpired):
		h.Set("WWW-Authenticate", challengeExpired)
		return nil, problem.New(http.StatusUnauthorized, typeTokenExpired, "the token has expired")
	case !errors.Is(err, auth.ErrInvalidToken):
		s.log.WarnContext(r.Context(), "token verification failed", "err", err)
	}
	h.Set("WWW-Authenticate", challengeInvalid)
	return nil, problem.New(http.StatusUnauthorized, typeInvalidToken, "the token is not valid")
}

// forbidden is the 403 for an action the token does not allow on channel.
func forbidden(action, channel string) *problem.Details {
	return problem.New(http.StatusForbidden, typeForbidden, "the token does not allow "+action+" on channel "+channel)
}
