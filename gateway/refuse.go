package gateway

import (
	"bytes"
	"net"
	"net/http"
	"strconv"
	"time"

	"github.com/gobwas/ws"
	"github.com/herald-gateway/herald/api/problem"
	"github.com/herald-gateway/herald/gateway/wsframe"
)

// Refusals of connections the epoll core could not take over (see adopt): the request was
// accepted and its connection hijacked, but the socket cannot be made the core's, typically
// because the process is at its descriptor limit. The client gets an answer that says "not now"
// in its own protocol, and the connection is closed: no subscription, no count, no goroutine
// stays behind.

// refuseWrite bounds the write of a refusal: the socket is fresh and its buffer empty, so the
// write does not wait unless the client is gone.
const refuseWrite = time.Second

// refuseSSE answers an SSE request with 503 unavailable (Retry-After) on its hijacked
// connection netc and closes it. The answer carries the CORS headers of the request, like the
// stream would have, so that a page on another origin sees a 503 rather than a network error.
func (g *Gateway) refuseSSE(netc net.Conn, r *http.Request) {
	p := problem.New(http.StatusServiceUnavailable, problem.TypeUnavailable, "cannot open the stream now; retry later")
	p.RetryAfter = time.Second
	body := p.JSON()
	h := http.Header{}
	g.cfg.CORS.SetHeaders(h, r)
	h.Set("Content-Type", problem.ContentType)
	h.Set("Cache-Control", "no-store")
	h.Set("Retry-After", strconv.Itoa(p.RetryAfterSeconds()))
	h.Set("Content-Length", strconv.Itoa(len(body)))
	h.Set("Connection", "close")
	var b bytes.Buffer
	b.WriteString("HTTP/1.1 503 Service Unavailable\r\n")
	_ = h.Write(&b)
	b.WriteString("\r\n")
	b.Write(body)
	writeAndClose(netc, b.Bytes())
}

// refuseWebSocket closes an upgraded connection netc with 1011: the client reconnects with
// backoff. (1013, try again later, would say it better, but gobwas/ws, which the Go SDK uses,
// rejects codes RFC 6455 itself does not define.)
func refuseWebSocket(netc net.Conn) {
	writeAndClose(netc, wsframe.CloseFrame(ws.StatusInternalServerError, "server busy: try again later"))
}

func writeAndClose(netc net.Conn, p []byte) {
	_ = netc.SetWriteDeadline(time.Now().Add(refuseWrite))
	_, _ = netc.Write(p)
	_ = netc.Close()
}
