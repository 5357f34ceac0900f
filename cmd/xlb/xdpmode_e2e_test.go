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

// --xdp-mode attaches the program the way it says, and xlb forwards in
// either mode. In generic mode the offload needs nothing of the veth
// peer (no testenv.EnableXDPTx): generic XDP transmits the skb through
// the veth's own transmit path, so an offloaded flow's frames still
// arrive, and the XDP program forwards most of them itself. A client
// that leaves its checksums to the NIC (CHECKSUM_PARTIAL, a sender on
// the same host) never has a frame forwarded by the XDP program, in
// either mode: natively the worker completes every checksum; in generic
// mode the tc companion forwards the flow's frames with their partial
// checksums (TestGSOGeneric). Its connection keeps working past the
// offload threshold (natively, the program's XDP_TX would lose the
// skb's flag, and the real server would drop every later frame).
func TestXDPModes(t *testing.T) {
	testenv.RequireRoot(t)
	env := testenv.New(t, testenv.DefaultOptions())
	vip80, vip53 := netip.AddrPortFrom(testenv.VIP, 80), netip.AddrPortFrom(testenv.VIP, 53)
	for _, tc := range []struct {
		mode, offload string
		attached      string // the mode xlb reports and `ip link` shows
		txCsum        bool   // the client leaves checksums to its veth (CHECKSUM_PARTIAL)
	}{
		{"native", "off", "native", false},
		{"generic", "off", "generic", false},
		{"generic", "on", "generic", false},
		{"generic", "on", "generic", true},
		{"native", "on", "native", true},
		{"auto", "off", "native", false}, // veth has native XDP
	} {
		name := tc.mode + "/offload=" + tc.offload
		if tc.txCsum {
			name += "/tx-checksum-offload"
		}
		t.Run(name, func(t *testing.T) {
			if tc.txCsum {
				if err := env.Client.Ethtool("-K", "eth0", "tx", "on"); err != nil {
					t.Fatal(err)
				}
				defer env.Client.Ethtool("-K", "eth0", "tx", "off")
			}
			if tc.mode == "native" && tc.offload == "on" {
				if err := env.EnableXDPTx(); err != nil {
					t.Fatal(err)
				}
				defer env.DisableXDPTx()
			}
			d := startXLB(t, env, drRules(env, "rr"), "--xdp-mode", tc.mode, "--offload="+tc.offload)
			if want := "mode=" + tc.attached; !strings.Contains(d.Output.String(), want) {
				t.Errorf("daemon log has no %q:\n%s", want, d.Output.String())
			}
			out, err := env.Director.Command("ip", "link", "show", "eth0").CombinedOutput()
			ipLink := map[string]string{"native": "xdp ", "generic": "xdpgeneric "}[tc.attached]
			if err != nil || !strings.Contains(string(out), ipLink) {
				t.Errorf("ip link show eth0: %v: want %q in\n%s", err, ipLink, out)
			}
			const n = 40
			k := mustKeepAlive(t, env, vip80)
			for i := range n {
				if _, err := k.get(3 * time.Second); err != nil {
					t.Fatalf("request %d: %v\n%s", i, err, d.Output.String())
				}
			}
			uc, err := env.Client.UDPConn(vip53)
			if err != nil {
				t.Fatal(err)
			}
			defer uc.Close()
			for i := range n {
				if _, err := testenv.ExchangeUDP(uc, 3*time.Second); err != nil {
					t.Fatalf("UDP query %d: %v", i, err)
				}
			}
			xs := daemonStats(t, d)
			off, steered := xs["xdp.redirect_offload"], xs["xdp.redirect"]
			t.Logf("%s, offload %s: XDP forwarded %d frames itself, steered %d to the workers", tc.mode, tc.offload, off, steered)
			// In generic mode with the offload on, such a flow is the tc
			// companion's (pass_partial, redirect_gso) once installed,
			// at its first established frame.
			companion := tc.txCsum && tc.attached == "generic" && tc.offload == "on"
			tcFwd := xs["xdp.redirect_gso"]
			switch {
			case (tc.offload == "off" || tc.txCsum) && off != 0:
				// A flow whose sender leaves its checksums to the NIC
				// never has a frame forwarded by XDP itself.
				t.Errorf("redirect_offload = %d, want 0", off)
			case tc.offload == "on" && !tc.txCsum && off <= steered:
				t.Errorf("XDP forwarded %d frames, the workers %d: want most by XDP", off, steered)
			case companion && (tcFwd <= steered || tcFwd+steered < 2*n || xs["xdp.pass_partial"] != tcFwd):
				t.Errorf("tc companion forwarded %d frames (pass_partial %d), the workers %d: want most by the companion, %d in all",
					tcFwd, xs["xdp.pass_partial"], steered, 2*n)
			case !companion && (tc.offload == "off" || tc.txCsum) && steered < 2*n:
				t.Errorf("the workers got %d frames, want at least %d", steered, 2*n)
			case !companion && tc.txCsum && xs["workers.csum_completed"] < 2*n:
				t.Errorf("csum_completed = %d, want at least %d", xs["workers.csum_completed"], 2*n)
			case !companion && tcFwd != 0:
				t.Errorf("redirect_gso = %d, want 0", tcFwd)
			}
			if t.Failed() {
				t.Log(fmt.Sprint(xs))
			}
		})
	}
}
