//go:build linux

package main

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/xlbproject/xlb/testenv"
)

// queueFigures reads the per-queue lines of `xlb --xlb-stats`: for each
// queue, its counters by name.
func queueFigures(out string) []map[string]int {
	var qs []map[string]int
	for _, l := range strings.Split(out, "\n") {
		f := strings.Fields(l)
		if len(f) < 2 || f[0] != "queue" {
			continue
		}
		m := map[string]int{}
		for i := 2; i+1 < len(f); i += 2 {
			var n int
			fmt.Sscan(f[i+1], &n)
			m[f[i]] = n
		}
		qs = append(qs, m)
	}
	return qs
}

// requireBothQueues fails unless both of the director's queues received
// frames and some moved to their owner: otherwise the test proved
// nothing about multi-queue.
func requireBothQueues(t *testing.T, d *xlbProc) {
	t.Helper()
	out := stats(d)
	qs := queueFigures(out)
	if len(qs) != 2 {
		t.Fatalf("want figures for 2 queues:\n%s", out)
	}
	handed := 0
	for i, q := range qs {
		if q["rx_frames"] == 0 {
			t.Errorf("queue %d received no frame: the veth did not spread flows\n%s", i, out)
		}
		if q["handoff_full"] != 0 || q["handoff_no_frame"] != 0 {
			t.Errorf("queue %d dropped hand-offs:\n%s", i, out)
		}
		handed += q["handed_off"]
	}
	if handed == 0 {
		t.Errorf("no frame was handed to its owner worker:\n%s", out)
	}
}

// A director veth with two RX queues (the client side's peer spreads
// flows over them by flow hash, as RSS): a persistent service keeps one
// client on one real server over many connections that land on both
// queues, and NAT and FULLNAT replies, which hash to another queue than
// their requests, all find their connections.
func TestMultiQueue(t *testing.T) {
	testenv.RequireRoot(t)
	t.Run("persistence", func(t *testing.T) {
		opts := testenv.DefaultOptions()
		opts.DirectorQueues = 2
		env := testenv.New(t, opts)
		var b strings.Builder
		fmt.Fprintf(&b, "-A -t %v:80 -s rr -p 300\n", testenv.VIP)
		for _, rs := range env.Reals {
			fmt.Fprintf(&b, "-a -t %v:80 -r %v:80 -g -w 1\n", testenv.VIP, rs.Addr)
		}
		d := startXLB(t, env, b.String())
		url := fmt.Sprintf("http://%v/", testenv.VIP)
		fresh := env.Client.HTTPClient(false, 5*time.Second)
		seen := map[string]int{}
		for i := 0; i < 100; i++ {
			name, err := testenv.Get(fresh, url)
			if err != nil {
				t.Fatalf("request %d: %v\n%s", i, err, stats(d))
			}
			seen[name]++
		}
		if len(seen) != 1 {
			t.Errorf("one client over 100 connections reached %v; -p wants one real server", seen)
		}
		// Each worker's rr starts at the same server, so a template per
		// worker could still agree: count them. One client, one template.
		conns, err := d.ctl("-L", "-n", "-c")
		if err != nil {
			t.Fatal(err)
		}
		templates := 0
		for _, l := range strings.Split(conns, "\n") {
			if f := strings.Fields(l); len(f) == 6 && f[0] == "TCP" && strings.HasSuffix(f[3], ":0") {
				templates++
			}
		}
		if templates != 1 {
			t.Errorf("%d persistence templates for one client, want 1:\n%s", templates, conns)
		}
		requireBothQueues(t, d)
	})
	for _, c := range []modeCase{modeCases[1], modeCases[3]} { // NAT, FULLNAT
		t.Run(c.name, func(t *testing.T) {
			opts := testenv.DefaultOptions()
			opts.Reals, opts.DirectorQueues = c.reals, 2
			env := testenv.New(t, opts)
			d := startXLB(t, env, modeRules(env, c, false, 80))
			if c.reals == testenv.RealNAT {
				// 300 HTTP connections and 300 UDP flows, all answered,
				// and rr spreads them exactly: one client has one owner
				// worker, so one scheduler round serves it.
				requireSpread(t, env, d, testenv.VIP, 80)
			} else {
				// FULLNAT requests stay on the queue RSS chose (their
				// replies come to the local port's owner, the worker that
				// took it): two rr rounds, so no exact spread.
				if failed, err := checkTraffic(env, 300); failed != 0 {
					t.Fatalf("%d of 300 TCP + 300 UDP requests failed, first: %v\n%s", failed, err, stats(d))
				}
			}
			requireBothQueues(t, d)
		})
	}
	t.Run("nat/ipv6", func(t *testing.T) {
		opts := testenv.DefaultOptions()
		opts.Reals, opts.IPv6, opts.DirectorQueues = testenv.RealNAT, true, 2
		env := testenv.New(t, opts)
		d := startXLB(t, env, modeRules(env, modeCases[1], true, 80))
		requireSpread(t, env, d, env.VIP6, 80)
		requireBothQueues(t, d)
	})
}
