package main

import (
	"fmt"
	"strconv"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/herald-gateway/herald/gateway/admission"
)

// admissionConfig is what herald serve is told about admission control (see package
// admission).
type admissionConfig struct {
	maxConnections int
	maxPerAddr     int
	ratePerAddr    float64
	burstPerAddr   int
	trustedProxies listValue
	publishRate    float64
	publishBurst   int
}

// admissionFlags registers the admission flags on fs.
func admissionFlags(fs *flagSet, c *admissionConfig) {
	def, nofile := admission.DefaultMaxConnections()
	fs.IntVar(&c.maxConnections, "max-connections", def, "most subscriber connections (WebSocket, SSE, long-poll) on this node, 0: no limit; past it\n"+
		"503 with Retry-After. The default is the descriptor limit ("+strconv.Itoa(nofile)+" here) less a tenth (at least 100),\n"+
		"kept for publishers, health checks, Valkey and connections still sending their request")
	fs.bindEnv("max-connections", "HERALD_MAX_CONNECTIONS")
	fs.IntVar(&c.maxPerAddr, "max-connections-per-ip", 0, "most subscriber connections of one client address (IPv6: one /64), 0: no limit; past it\n"+
		"429 with Retry-After. Off by default: behind a proxy every client has the proxy's address\n"+
		"unless --trusted-proxies names it")
	fs.bindEnv("max-connections-per-ip", "HERALD_MAX_CONNECTIONS_PER_IP")
	fs.Float64Var(&c.ratePerAddr, "connect-rate-per-ip", 0, "new subscriber connections per second one client address may open (long-polls count\n"+
		"each), 0: no limit; past it 429 with Retry-After. Off by default, as --max-connections-per-ip")
	fs.bindEnv("connect-rate-per-ip", "HERALD_CONNECT_RATE_PER_IP")
	fs.IntVar(&c.burstPerAddr, "connect-burst-per-ip", 0, "connections one address may open at once before --connect-rate-per-ip applies;\n0: twice the rate, at least 10")
	fs.bindEnv("connect-burst-per-ip", "HERALD_CONNECT_BURST_PER_IP")
	fs.Var(&c.trustedProxies, "trusted-proxies", "proxies (CIDRs or addresses) whose X-Forwarded-For or Forwarded header names the client\n"+
		"for the per-address limits; repeatable, the variable is comma-separated; none: the TCP peer is the client")
	fs.bindEnv("trusted-proxies", "HERALD_TRUSTED_PROXIES")
	fs.Float64Var(&c.publishRate, "publish-rate", 0, "messages per second one credential (API key, or token subject) may publish over HTTP,\n"+
		"batches and WebSocket together; may be a fraction, 0: no limit; past it 429 (WebSocket: error\n"+
		"rate-limited) with when to retry")
	fs.bindEnv("publish-rate", "HERALD_PUBLISH_RATE")
	fs.IntVar(&c.publishBurst, "publish-burst", 0, "messages one credential may publish at once before --publish-rate applies;\n0: twice the rate, at least 10")
	fs.bindEnv("publish-burst", "HERALD_PUBLISH_BURST")
}

// publishLimiter builds the publish rate limiter shared by the API and the gateway (nil: no
// limit).
func (c *admissionConfig) publishLimiter() (*admission.PublishLimiter, error) {
	if c.publishRate < 0 || c.publishBurst < 0 {
		return nil, fmt.Errorf("--publish-rate and --publish-burst must not be negative")
	}
	return admission.NewPublishLimiter(admission.PublishConfig{Rate: c.publishRate, Burst: c.publishBurst}), nil
}

// controller builds the admission controller and registers its series with reg.
func (c *admissionConfig) controller(reg prometheus.Registerer) (*admission.Controller, *admission.Metrics, error) {
	if c.maxConnections < 0 || c.maxPerAddr < 0 || c.ratePerAddr < 0 || c.burstPerAddr < 0 {
		return nil, nil, fmt.Errorf("--max-connections, --max-connections-per-ip, --connect-rate-per-ip and --connect-burst-per-ip must not be negative")
	}
	var items []string
	for _, it := range c.trustedProxies.items {
		items = append(items, splitList(it)...)
	}
	trusted, err := admission.ParsePrefixes(items)
	if err != nil {
		return nil, nil, fmt.Errorf("--trusted-proxies: %w", err)
	}
	m := admission.NewMetrics(reg)
	return admission.New(admission.Config{
		MaxConnections: c.maxConnections, MaxPerAddr: c.maxPerAddr,
		RatePerAddr: c.ratePerAddr, BurstPerAddr: c.burstPerAddr,
		TrustedProxies: trusted, Metrics: m,
	}), m, nil
}

// splitList splits a flag value given as a comma-separated list (--trusted-proxies a,b).
func splitList(v string) []string {
	var l listValue
	l.setAll(v)
	return l.items
}

// maxHeaderBytes bounds a request's header block. net/http's default, 1 MiB, would let each
// slow client that trickles headers for the whole header timeout make the server buffer a
// megabyte; 32 KiB holds a large token and the cookies of a browser page with room to spare.
// Past it net/http answers 431.
const maxHeaderBytes = 32 << 10
