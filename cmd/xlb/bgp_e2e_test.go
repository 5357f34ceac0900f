//go:build linux

package main

import (
	"fmt"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/xlbproject/xlb/testenv"
)

// TestBGPDaemonECMP runs `xlb run` with BGP flags on two directors behind
// the FRR router: both announce the VIP from their applied configuration
// (ECMP over both), a director whose only real server goes to weight 0
// withdraws and comes back with it, and SIGTERM withdraws before XDP is
// detached.
func TestBGPDaemonECMP(t *testing.T) {
	so := testenv.NewScaleOut(t, testenv.ScaleOutOptions{Directors: 2})
	vip := testenv.ScaleOutVIP
	d := testenv.ScaleOutDirectorAddr
	xlbs := make([]*xlbProc, 2)
	for i := range xlbs {
		// The real server is the router's end of the link: an address
		// that resolves, which is all the control plane needs here.
		rs := testenv.ScaleOutRouterLinkAddr(i + 1)
		rules := fmt.Sprintf("-A -t %v:80 -s mh\n-a -t %v:80 -r %v:80 -g -w 1\n", vip, vip, rs)
		args := []string{"--bgp-as", "65001", "--bgp-router-id", d(i + 1).String(),
			"--bgp-peer", fmt.Sprintf("%v:65000", testenv.ScaleOutRouterLinkAddr(i+1)), "--bgp-hold-time", "3"}
		if i == 1 {
			args = append(args, "--bgp-shutdown-delay", "1")
		}
		xlbs[i] = startXLBOn(t, so.Directors[i], []string{"eth0"}, rules, args...)
	}
	step := func(name string, want ...netip.Addr) {
		t.Helper()
		took, err := so.WaitNexthops(vip, want, 30*time.Second)
		if err != nil {
			t.Fatalf("%s: %v\nxlb 1:\n%s\nxlb 2:\n%s", name, err, xlbs[0].Output.String(), xlbs[1].Output.String())
		}
		t.Logf("%s: nexthops %v after %v", name, want, took.Round(time.Millisecond))
	}
	step("both announce", d(1), d(2))

	rs := testenv.ScaleOutRouterLinkAddr(1)
	if _, err := xlbs[0].ctl("-e", "-t", vip.String()+":80", "-r", rs.String()+":80", "-g", "-w", "0"); err != nil {
		t.Fatal(err)
	}
	step("director 1's only real server at weight 0", d(2))
	if _, err := xlbs[0].ctl("-e", "-t", vip.String()+":80", "-r", rs.String()+":80", "-g", "-w", "1"); err != nil {
		t.Fatal(err)
	}
	step("director 1's real server back", d(1), d(2))

	if _, err := xlbs[0].ctl("drain"); err != nil {
		t.Fatal(err)
	}
	step("xlb drain on director 1", d(2))
	if _, err := xlbs[0].ctl("undrain"); err != nil {
		t.Fatal(err)
	}
	step("xlb undrain on director 1", d(1), d(2))

	// Director 2 stops with a 1 s shutdown delay: the route goes at once,
	// the daemon forwards a second longer.
	stopped := make(chan error, 1)
	stopAt := time.Now()
	go func() { stopped <- xlbs[1].stop() }()
	step("director 2 stopping", d(1))
	if !xlbs[1].Exited() {
		t.Logf("director 2 still running (forwarding) after its route went: %v", time.Since(stopAt).Round(time.Millisecond))
	} else {
		t.Errorf("director 2 exited before its route went or within the 1 s shutdown delay")
	}
	if err := <-stopped; err != nil {
		t.Fatalf("stop xlb 2: %v\n%s", err, xlbs[1].Output.String())
	}
	if took := time.Since(stopAt); took < time.Second {
		t.Errorf("xlb 2 stopped after %v, within its 1 s shutdown delay", took)
	}
	logs := xlbs[1].Output.String()
	w, x := strings.Index(logs, "bgp withdrawn"), strings.Index(logs, "xdp detached")
	if w < 0 || x < 0 || w > x {
		t.Errorf("xlb 2 did not withdraw before detaching XDP (withdrawn at %d, detached at %d):\n%s", w, x, logs)
	}
}
