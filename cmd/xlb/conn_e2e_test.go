//go:build linux

package main

import (
	"errors"
	"fmt"
	"net/netip"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"

	"github.com/xlbproject/xlb/testenv"
)

// restore runs `xlb -R` with rules on stdin.
func (d *xlbProc) restore(rules string) error {
	cmd := exec.Command(xlbBin, "--socket", d.sock, "-R")
	cmd.Stdin = strings.NewReader(rules)
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("xlb -R: %w: %s", err, out)
	}
	return nil
}

// Issue 12, finding 11: deleting a service, or the common -C then -R
// reload, reset every established connection. As with IPVS, connections
// of a deleted service keep flowing to their real server until they end,
// while new connections to it meet the director's own stack (a reset);
// -C; -R of the same rules does not disturb them at all.
func TestServiceRemovalKeepsConnections(t *testing.T) {
	testenv.RequireRoot(t)
	for _, tc := range []struct {
		name   string
		change func(d *xlbProc, rules string) error
		gone   bool // the service is gone afterwards
	}{
		{"delete", func(d *xlbProc, _ string) error {
			_, err := d.ctl("-D", "-t", fmt.Sprintf("%v:80", testenv.VIP))
			return err
		}, true},
		{"clear and restore", func(d *xlbProc, rules string) error {
			if _, err := d.ctl("-C"); err != nil {
				return err
			}
			return d.restore(rules)
		}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			env := testenv.New(t, testenv.DefaultOptions())
			rules := drRules(env, "rr")
			d := startXLB(t, env, rules)
			// FIN_WAIT 1 s, so that closed connections end quickly.
			if _, err := d.ctl("--set", "0", "1", "0"); err != nil {
				t.Fatal(err)
			}
			var conns []*keepAlive
			var names []string
			for i := range 10 {
				k, err := dialKeepAlive(env, netip.AddrPortFrom(testenv.VIP, 80))
				if err != nil {
					t.Fatalf("connection %d: %v", i, err)
				}
				defer k.c.Close()
				name, err := k.get(3 * time.Second)
				if err != nil {
					t.Fatalf("connection %d, first request: %v", i, err)
				}
				conns = append(conns, k)
				names = append(names, name)
			}
			before, _ := d.ctl("-S", "-n")
			if err := tc.change(d, rules); err != nil {
				t.Fatal(err)
			}
			// Across more than one resolver tick, which removes a dying
			// service only once its connections are gone.
			for round := range 4 {
				for i, k := range conns {
					name, err := k.get(3 * time.Second)
					if err != nil {
						t.Fatalf("round %d, connection %d (to %s): %v\nxlb logs:\n%s", round, i, names[i], err, d.Output.String())
					}
					if name != names[i] {
						t.Fatalf("round %d, connection %d answered by %s, before by %s", round, i, name, names[i])
					}
				}
				time.Sleep(400 * time.Millisecond)
			}

			after, _ := d.ctl("-S", "-n")
			_, err := dialKeepAlive(env, netip.AddrPortFrom(testenv.VIP, 80))
			if tc.gone {
				if !errors.Is(err, syscall.ECONNREFUSED) {
					t.Errorf("new connection to the deleted service: %v, want connection refused (the director's stack resets it)", err)
				}
				if strings.Contains(after, ":80") && strings.Contains(after, "-A -t") {
					t.Errorf("the deleted service is still configured:\n%s", after)
				}
				// Once its connections end, the service leaves the XDP map.
				for _, k := range conns {
					k.c.Close()
				}
				closed := time.Now()
				for !strings.Contains(d.Output.String(), "deleted service drained") {
					if time.Since(closed) > 5*time.Second {
						t.Fatalf("deleted service not removed 5 s after its connections closed:\n%s", d.Output.String())
					}
					time.Sleep(50 * time.Millisecond)
				}
				t.Logf("deleted service removed %v after its connections closed", time.Since(closed))
				return
			}
			if err != nil {
				t.Errorf("new connection after -C; -R: %v", err)
			}
			if after != before {
				t.Errorf("-C; -R of the same rules changed the configuration:\nbefore:\n%s\nafter:\n%s", before, after)
			}
			// The connections are the service's again: counted on their
			// real servers (IPVS takes destinations back from its trash).
			list, _ := d.ctl("-L", "-n")
			if act := activeConns(t, list, ":80"); act < 10 {
				t.Errorf("ActiveConn of the restored service's real servers = %d, want ≥ 10:\n%s", act, list)
			}
		})
	}
}

// activeConns sums the ActiveConn column of the real servers whose address
// ends with port in an -L -n listing; inactConns the InActConn column.
func activeConns(t *testing.T, list, port string) int { return connColumn(t, list, port, 3) }
func inactConns(t *testing.T, list, port string) int  { return connColumn(t, list, port, 4) }

func connColumn(t *testing.T, list, port string, col int) int {
	t.Helper()
	n := 0
	for _, l := range strings.Split(list, "\n") {
		f := strings.Fields(l)
		if len(f) < 6 || f[0] != "->" || !strings.HasSuffix(f[1], port) {
			continue
		}
		v, err := strconv.Atoi(f[col+1])
		if err != nil {
			t.Fatalf("bad -L -n line %q: %v", l, err)
		}
		n += v
	}
	return n
}

// Issue 12, finding 12: once the table had held more than about 12,800
// entries, -L -c on an idle daemon scanned to that high-water mark at
// 2,500 entries a second and timed out, and dead entries were swept at 640
// a second, so InActConn stayed up for minutes after a flood.
func TestConnListingAfterFlood(t *testing.T) {
	testenv.RequireRoot(t)
	env := testenv.New(t, testenv.DefaultOptions())
	d := startXLB(t, env, drRules(env, "rr"))
	// A UDP timeout longer than the flood takes to send (about 1 s), so
	// that the table holds all the flows at once.
	const timeout = 2 * time.Second
	if _, err := d.ctl("--set", "0", "0", "2"); err != nil {
		t.Fatal(err)
	}
	const flows = 20000
	frames := udpFlows(t, env, flows)
	start := time.Now()
	// In bursts, so that the AF_XDP ring (copy mode, one queue) keeps up.
	for i := 0; i < flows; i += 500 {
		if err := sendRaw(env.Client, frames[i:min(i+500, flows)], 1); err != nil {
			t.Fatal(err)
		}
		time.Sleep(10 * time.Millisecond)
	}
	sent := time.Now()
	list, err := d.ctl("-L", "-n")
	if err != nil {
		t.Fatal(err)
	}
	peak := inactConns(t, list, ":53")
	t.Logf("%d flows sent in %v; InActConn of the UDP service %d", flows, sent.Sub(start), peak)
	if peak < flows*3/4 {
		t.Fatalf("InActConn after %d flows = %d, want most of them:\n%s", flows, peak, list)
	}
	// An idle worker sweeps its whole table twice a second.
	for {
		list, err = d.ctl("-L", "-n")
		if err != nil {
			t.Fatal(err)
		}
		n := inactConns(t, list, ":53")
		if n == 0 {
			t.Logf("InActConn back to 0 %v after the last flow", time.Since(sent))
			break
		}
		if time.Since(sent) > timeout+2*time.Second {
			t.Fatalf("InActConn %d %v after the last flow (timeout %v), want 0:\n%s", n, time.Since(sent), timeout, list)
		}
		time.Sleep(50 * time.Millisecond)
	}
	t0 := time.Now()
	conns, err := d.ctl("-L", "-n", "-c")
	took := time.Since(t0)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("-L -n -c after the flood: %v", took)
	if took > time.Second {
		t.Errorf("-L -n -c took %v, want < 1 s", took)
	}
	if lines := strings.Split(strings.TrimSpace(conns), "\n"); len(lines) != 2 {
		t.Errorf("-L -n -c lists %d lines, want the two header lines:\n%.600s", len(lines), conns)
	}
}

// udpFlows builds n UDP datagrams from the client to VIP:53, each from
// its own source port, so each is a new flow.
func udpFlows(t *testing.T, env *testenv.Env, n int) [][]byte {
	t.Helper()
	var out [][]byte
	for i := range n {
		eth := layers.Ethernet{SrcMAC: env.Client.MAC, DstMAC: env.Director.MAC, EthernetType: layers.EthernetTypeIPv4}
		ip := layers.IPv4{Version: 4, IHL: 5, TTL: 64, Protocol: layers.IPProtocolUDP,
			SrcIP: testenv.ClientAddr.AsSlice(), DstIP: testenv.VIP.AsSlice()}
		udp := layers.UDP{SrcPort: layers.UDPPort(32768 + i), DstPort: 53}
		udp.SetNetworkLayerForChecksum(&ip)
		buf := gopacket.NewSerializeBuffer()
		if err := gopacket.SerializeLayers(buf, gopacket.SerializeOptions{FixLengths: true, ComputeChecksums: true},
			&eth, &ip, &udp, gopacket.Payload("who")); err != nil {
			t.Fatal(err)
		}
		out = append(out, buf.Bytes())
	}
	return out
}
