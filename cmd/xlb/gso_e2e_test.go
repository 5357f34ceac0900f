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

// In generic mode a client with its veth's default offloads (TSO, which
// needs TX checksum offload) sends its data in GSO skbs of up to 64 KiB,
// which reach the XDP program whole: too large for an AF_XDP frame.
// With the offload on, the tc companion forwards them (redirect_gso),
// with the flow's other frames (its sender leaves its checksums to the
// NIC: pass_partial), and an 8 MiB upload arrives intact (hash-checked),
// in DR, NAT and FULLNAT.
// In NAT and FULLNAT the director's interface has its TX offload off,
// so the kernel segments the rewritten skbs and computes every checksum
// from the pseudo-header sum the companion rewrote: a wrong one would
// reach the real server as a bad checksum, which it drops. With the
// offload off, such skbs cannot be forwarded: the daemon warns at start
// and counts them (drop_gso_no_flow).
func TestGSOGeneric(t *testing.T) {
	testenv.RequireRoot(t)
	for _, c := range []struct {
		mode    modeCase
		offload string
		dirTx   bool // the director's TX offload (segmentation, checksums) left on
	}{
		{modeCases[0], "on", true},
		{modeCases[1], "on", false},
		{modeCases[3], "on", false},
		{modeCases[0], "off", true},
	} {
		name := c.mode.name + "/offload=" + c.offload
		t.Run(name, func(t *testing.T) {
			opts := testenv.DefaultOptions()
			opts.Reals, opts.XLB = c.mode.reals, xlbBin
			env := testenv.New(t, opts)
			// testenv turns the clients' TX offload off; a client
			// namespace's default is on, with TSO.
			if err := env.Client.Ethtool("-K", env.Client.Ifname, "tx", "on", "tso", "on", "gso", "on"); err != nil {
				t.Fatal(err)
			}
			if !c.dirTx {
				if err := env.Director.Ethtool("-K", "eth0", "tx", "off"); err != nil {
					t.Fatal(err)
				}
			}
			d := startXLB(t, env, modeRules(env, c.mode, false, 80), "--xdp-mode", "generic", "--offload="+c.offload)
			if err := addTransferService(d, env, c.mode, false, env.VIP, 9000); err != nil {
				t.Fatal(err)
			}
			const warning = "GSO packets to services"
			if got := strings.Contains(d.Output.String(), warning); got != (c.offload == "off") {
				t.Errorf("daemon log mentions %q: %v, want %v\n%s", warning, got, c.offload == "off", d.Output.String())
			}
			vip := netip.AddrPortFrom(env.VIP, 9000)
			if c.offload == "off" {
				// Whatever the transfer does (stalls, or creeps on the
				// segments retransmitted one by one), the loss is counted.
				env.Client.Transfer(vip, 1<<20, 0, 3*time.Second)
				if xs := daemonStats(t, d); xs["xdp.drop_gso_no_flow"] == 0 || xs["xdp.redirect_gso"] != 0 {
					t.Errorf("drop_gso_no_flow %d, redirect_gso %d: want > 0 and 0\n%s", xs["xdp.drop_gso_no_flow"], xs["xdp.redirect_gso"], stats(d))
				}
				return
			}
			start := time.Now()
			if _, err := env.Client.Transfer(vip, 8<<20, 64<<10, 60*time.Second); err != nil {
				t.Fatalf("8 MiB up with client TSO on: %v\n%s", err, stats(d))
			}
			el := time.Since(start)
			xs := daemonStats(t, d)
			t.Logf("%s: 8 MiB in %v; pass_gso %d, pass_partial %d, redirect_gso %d, drop_gso_no_flow %d, drop_gso_unfit %d, redirect_offload %d, redirect %d",
				name, el.Round(time.Millisecond), xs["xdp.pass_gso"], xs["xdp.pass_partial"], xs["xdp.redirect_gso"], xs["xdp.drop_gso_no_flow"],
				xs["xdp.drop_gso_unfit"], xs["xdp.redirect_offload"], xs["xdp.redirect"])
			// The companion forwards what XDP passed it: GSO skbs, and
			// the other frames of the flow, whose sender leaves its
			// checksums to the NIC (pass_partial).
			if xs["xdp.pass_gso"] == 0 || xs["xdp.redirect_gso"] == 0 || xs["xdp.redirect_gso"] > xs["xdp.pass_gso"]+xs["xdp.pass_partial"] {
				t.Errorf("pass_gso %d, pass_partial %d, redirect_gso %d: want GSO skbs passed to the companion and forwarded",
					xs["xdp.pass_gso"], xs["xdp.pass_partial"], xs["xdp.redirect_gso"])
			}
			if t.Failed() {
				t.Log(fmt.Sprint(xs))
			}
		})
	}
}
