package valkeytest

import (
	"context"
	"fmt"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"
)

// Cluster is a Valkey Cluster of primaries without replicas, each a Server.
type Cluster struct {
	t     testing.TB
	Nodes []*Server
}

// StartCluster starts n cluster-enabled servers, joins them with valkey-cli --cluster create
// (slots split evenly, no replicas) and waits until every node reports cluster_state:ok.
// Nodes tolerate a missing shard (cluster-require-full-coverage no), so one can be restarted
// while the others keep serving.
func StartCluster(t testing.TB, n int, opts ...Option) *Cluster {
	t.Helper()
	requireBinaries(t)
	if n < 3 {
		t.Fatalf("valkeytest: a cluster needs at least 3 primaries, got %d", n)
	}
	c := &Cluster{t: t}
	addrs := make([]string, n)
	for i := range n {
		c.Nodes = append(c.Nodes, StartServer(t, append(opts, clusterNode())...))
		addrs[i] = c.Nodes[i].Addr()
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	args := append(append([]string{"--cluster", "create"}, addrs...), "--cluster-replicas", "0", "--cluster-yes")
	if out, err := exec.CommandContext(ctx, "valkey-cli", args...).CombinedOutput(); err != nil {
		t.Fatalf("valkeytest: valkey-cli --cluster create: %v\n%s", err, out)
	}
	c.WaitOK()
	return c
}

// URL is a seed list of every node: valkey://host:port,host:port,...
func (c *Cluster) URL() string {
	addrs := make([]string, len(c.Nodes))
	for i, s := range c.Nodes {
		addrs[i] = s.Addr()
	}
	return "valkey://" + strings.Join(addrs, ",")
}

// WaitOK waits until every node reports cluster_state:ok and agrees that all 16384 slots are
// served.
func (c *Cluster) WaitOK() {
	c.t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		ok := true
		for _, s := range c.Nodes {
			out, err := s.Do("CLUSTER", "INFO")
			if err != nil || !strings.Contains(out, "cluster_state:ok") || !strings.Contains(out, "cluster_slots_ok:16384") {
				ok = false
				break
			}
		}
		if ok {
			return
		}
		if time.Now().After(deadline) {
			c.t.Fatal("valkeytest: cluster did not reach cluster_state:ok")
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// NodeFor returns the node that serves key's slot.
func (c *Cluster) NodeFor(key string) *Server {
	c.t.Helper()
	slotText := c.Nodes[0].MustDo("CLUSTER", "KEYSLOT", key)
	slot, err := strconv.Atoi(strings.TrimSpace(slotText))
	if err != nil {
		c.t.Fatalf("valkeytest: CLUSTER KEYSLOT answered %q", slotText)
	}
	nodes := c.Nodes[0].MustDo("CLUSTER", "NODES")
	for _, line := range strings.Split(nodes, "\n") {
		fields := strings.Fields(line)
		if len(fields) < 9 || !strings.Contains(fields[2], "master") {
			continue
		}
		addr, _, _ := strings.Cut(fields[1], "@")
		for _, r := range fields[8:] {
			lo, hi, isRange := strings.Cut(r, "-")
			from, err1 := strconv.Atoi(lo)
			to := from
			var err2 error
			if isRange {
				to, err2 = strconv.Atoi(hi)
			}
			if err1 == nil && err2 == nil && slot >= from && slot <= to {
				return c.node(addr)
			}
		}
	}
	c.t.Fatalf("valkeytest: no node serves slot %d", slot)
	return nil
}

func (c *Cluster) node(addr string) *Server {
	for _, s := range c.Nodes {
		if s.Addr() == addr {
			return s
		}
	}
	c.t.Fatalf("valkeytest: %s is not a node of this cluster", addr)
	return nil
}

// RestartNode stops node i and starts it again on the same port and data directory (its
// nodes.conf brings it back into the cluster), then waits for the cluster to be whole again.
func (c *Cluster) RestartNode(i int) {
	c.t.Helper()
	c.Nodes[i].Restart()
	c.WaitOK()
}

// String lists the nodes' addresses, for test logs.
func (c *Cluster) String() string { return fmt.Sprint(c.URL()) }
