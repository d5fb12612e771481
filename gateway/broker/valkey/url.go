package valkey

import (
	"errors"
	"fmt"
	"net/url"
	"strings"

	"github.com/valkey-io/valkey-go"
)

// ParseURL turns a Valkey URL into client options. Accepted forms:
//
//	valkey://[user:password@]host[:port][/db][?options]   plain TCP (redis:// is the same)
//	valkeys://...                                         TLS (rediss:// is the same)
//	valkey://host1:port1,host2:port2,host3:port3          several seeds: a Cluster's nodes (the
//	                                                      client asks them for the slot map) or
//	                                                      a Sentinel's sentinels, see below
//	valkey://sentinel1:26379,sentinel2:26379?master_set=mymaster
//	                                                      Sentinel: the hosts are sentinels, the
//	                                                      primary is the one they name mymaster
//
// Whether a single host is a Cluster node is detected when connecting. The query options are
// valkey-go's (valkey.ParseURL): addr (another seed, repeatable), db, dial_timeout,
// write_timeout, protocol=2, client_name, skip_verify (TLS), master_set.
func ParseURL(raw string) (valkey.ClientOption, error) {
	if raw == "" {
		return valkey.ClientOption{}, errors.New("empty valkey URL")
	}
	u, err := url.Parse(raw)
	if err != nil {
		return valkey.ClientOption{}, fmt.Errorf("valkey URL: %w", err)
	}
	if u.Scheme == "unix" {
		return valkey.ParseURL(raw)
	}
	// valkey-go takes extra seeds as addr= parameters; accept the common comma list too.
	if hosts := strings.Split(u.Host, ","); len(hosts) > 1 {
		q := u.Query()
		extra := q["addr"]
		q.Del("addr")
		for _, h := range hosts[1:] {
			if h = strings.TrimSpace(h); h != "" {
				q.Add("addr", h)
			}
		}
		for _, h := range extra {
			q.Add("addr", h)
		}
		u.Host = strings.TrimSpace(hosts[0])
		u.RawQuery = q.Encode()
	}
	opt, err := valkey.ParseURL(u.String())
	if err != nil {
		return valkey.ClientOption{}, fmt.Errorf("valkey URL: %w", err)
	}
	return opt, nil
}
