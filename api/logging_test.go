package api_test

import (
	"net/http"
	"strings"
	"testing"
)

// TestRequestLogRedactsTokens checks that neither a query token nor the Authorization header
// reaches the log, while the request itself is logged.
func TestRequestLogRedactsTokens(t *testing.T) {
	e := newEnv(t)
	queryToken := token(t, nil, []string{"*"})
	headerToken := token(t, []string{"*"}, []string{"*"})
	e.do(request{path: "/v1/channels/logged/messages?limit=5&access_token=" + queryToken})
	e.do(request{path: "/v1/channels/logged/messages?access_token=" + queryToken + "&since=x"})
	e.do(request{method: http.MethodPost, path: "/v1/channels/logged/messages", body: `{"data":1}`, token: headerToken})
	e.do(request{method: http.MethodPost, path: "/v1/channels/logged/messages", body: `{"data":1}`, token: testAPIKey})
	logs := e.logBuf.String()
	for _, secret := range []string{queryToken, headerToken, testAPIKey} {
		if strings.Contains(logs, secret) {
			t.Fatalf("a token reached the log:\n%s", logs)
		}
	}
	if !strings.Contains(logs, "access_token=REDACTED") || !strings.Contains(logs, "/v1/channels/logged/messages") {
		t.Fatalf("the requests were not logged as expected:\n%s", logs)
	}
}
