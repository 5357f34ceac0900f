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
		xlbs[i] = startXLBOn(t, so.Directors[i], []string{"eth0"}, rules,
			"--bgp-as", "65001", "--bgp-router-id", d(i+1).String(),
			"--bgp-peer", fmt.Sprintf("%v:65000", testenv.ScaleOutRouterLinkAddr(i+1)), "--bgp-hold-time", "3")
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

	if err := xlbs[1].stop(); err != nil {
		t.Fatalf("stop xlb 2: %v\n%s", err, xlbs[1].Output.String())
	}
	step("director 2 stopped", d(1))
	logs := xlbs[1].Output.String()
	w, x := strings.Index(logs, "bgp withdrawn"), strings.Index(logs, "xdp detached")
	if w < 0 || x < 0 || w > x {
		t.Errorf("xlb 2 did not withdraw before detaching XDP (withdrawn at %d, detached at %d):\n%s", w, x, logs)
	}
}
