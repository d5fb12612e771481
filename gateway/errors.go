package gateway

import (
	"errors"
	"net/http"

	"github.com/herald-gateway/herald/api/auth"
	"github.com/herald-gateway/herald/api/problem"
)

// writeAuthProblem answers a subscribe request whose credential was refused.
func writeAuthProblem(w http.ResponseWriter, err error) {
	code := "invalid-token"
	switch {
	case errors.Is(err, auth.ErrNoToken):
		code = "unauthorized"
	case errors.Is(err, auth.ErrExpired):
		code = "token-expired"
	}
	w.Header().Set("WWW-Authenticate", `Bearer realm="herald"`)
	problem.Write(w, problem.New(http.StatusUnauthorized, code, authMessage(err)))
}

// authMessage is what a client is told about a refused credential. The auth package's errors
// describe the problem without the token itself, so they are safe to return.
func authMessage(err error) string {
	if errors.Is(err, auth.ErrNoToken) {
		return "a token is required: Authorization: Bearer <token>, access_token or the herald_token cookie"
	}
	return err.Error()
}
