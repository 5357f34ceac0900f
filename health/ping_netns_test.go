package health

import (
	"context"
	"net/netip"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/vishvananda/netlink"

	"github.com/xlbproject/xlb/testenv"
)

// TestPingNetNS pings in a namespace of its own: over a raw socket (the
// namespace's ping_group_range starts as "1 0", no one), over a ping
// socket once the range lets everyone, and an address on a veth whose
// peer has no address, which never answers: the check times out.
func TestPingNetNS(t *testing.T) {
	testenv.InNewNetNS(t, func(h *netlink.Handle) {
		lo, err := h.LinkByName("lo")
		if err != nil {
			t.Fatal(err)
		}
		if err := h.LinkSetUp(lo); err != nil {
			t.Fatal(err)
		}
		veth := &netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: "xlbhc0"}, PeerName: "xlbhc1"}
		if err := h.LinkAdd(veth); err != nil {
			t.Fatal(err)
		}
		for _, n := range []string{"xlbhc0", "xlbhc1"} {
			l, err := h.LinkByName(n)
			if err != nil {
				t.Fatal(err)
			}
			if err := h.LinkSetUp(l); err != nil {
				t.Fatal(err)
			}
			if n == "xlbhc0" {
				a, _ := netlink.ParseAddr("10.99.0.1/24")
				if err := h.AddrAdd(l, a); err != nil {
					t.Fatal(err)
				}
			}
		}
		c := fast(PingCheck)
		ping := func(addr string, wantRaw bool) {
			t.Helper()
			dst := netip.MustParseAddr(addr)
			conn, raw, err := c.listenICMP(dst.Is6())
			if err != nil {
				t.Fatalf("listenICMP: %v", err)
			}
			conn.Close()
			if raw != wantRaw {
				t.Errorf("raw socket %v, want %v", raw, wantRaw)
			}
			if _, err := c.probe(context.Background(), netip.AddrPortFrom(dst, 0)); err != nil {
				t.Errorf("ping %s = %v, want success", addr, err)
			}
		}
		ping("127.0.0.1", true)
		ping("::1", true)
		if err := os.WriteFile("/proc/sys/net/ipv4/ping_group_range", []byte("0 2147483647"), 0); err != nil {
			t.Fatalf("open ping sockets to everyone in the namespace: %v", err)
		}
		ping("127.0.0.1", false)
		ping("::1", false)
		// With bindto the source is the veth's address.
		c.BindTo = netip.MustParseAddr("10.99.0.1")
		ping("10.99.0.1", false)
		c.BindTo = netip.Addr{}

		begin := time.Now()
		_, err = c.probe(context.Background(), netip.MustParseAddrPort("10.99.0.2:0"))
		took := time.Since(begin)
		if err == nil || !strings.Contains(err.Error(), "timeout") {
			t.Errorf("ping of a silent address = %v, want a timeout", err)
		}
		if took < c.ConnectTimeout-50*time.Millisecond || took > c.ConnectTimeout+500*time.Millisecond {
			t.Errorf("silent ping failed after %v, want about connect_timeout %v", took, c.ConnectTimeout)
		}
	})
}
