package bgp

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"slices"
	"testing"
	"time"

	api "github.com/osrg/gobgp/v3/api"
)

// freePort returns a TCP port nothing listens on at the moment.
func freePort(t *testing.T) uint16 {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return uint16(l.Addr().(*net.TCPAddr).Port)
}

// received lists the prefixes in s's global RIB (what its peers sent).
func received(t *testing.T, s *Speaker) []netip.Prefix {
	t.Helper()
	var out []netip.Prefix
	for _, afi := range []api.Family_Afi{api.Family_AFI_IP, api.Family_AFI_IP6} {
		err := s.srv.ListPath(context.Background(), &api.ListPathRequest{
			TableType: api.TableType_GLOBAL, Family: &api.Family{Afi: afi, Safi: api.Family_SAFI_UNICAST},
		}, func(d *api.Destination) {
			out = append(out, netip.MustParsePrefix(d.Prefix))
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	slices.SortFunc(out, comparePrefix)
	return out
}

func waitReceived(t *testing.T, s *Speaker, want ...netip.Prefix) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	var got []netip.Prefix
	for time.Now().Before(deadline) {
		if got = received(t, s); slices.Equal(got, want) {
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("peer received %v, want %v", got, want)
}

// TestSpeakerLoopback runs two speakers over 127.0.0.1, no privileges: a
// "router" that listens and a director that dials it and announces.
func TestSpeakerLoopback(t *testing.T) {
	ctx := context.Background()
	port := freePort(t)
	lo := netip.MustParseAddr("127.0.0.1")
	router, err := Start(ctx, Config{
		RouterID: netip.MustParseAddr("10.0.0.1"), AS: 65000, ListenPort: port, HoldTime: 3 * time.Second,
		Peers: []Peer{{Addr: lo, AS: 65001}},
	}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer router.Close()
	dir, err := Start(ctx, Config{
		RouterID: netip.MustParseAddr("10.0.0.2"), AS: 65001, HoldTime: 3 * time.Second, GracefulRestart: 30 * time.Second,
		NextHop6: netip.MustParseAddr("2001:db8::2"),
		Peers:    []Peer{{Addr: lo, AS: 65000, Port: port}},
	}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer dir.Close()

	v4, v4b := netip.MustParsePrefix("10.9.0.1/32"), netip.MustParsePrefix("10.9.0.2/32")
	v6 := netip.MustParsePrefix("2001:db8::10/128")
	for _, p := range []netip.Prefix{v4, v4b, v6} {
		if err := dir.Announce(ctx, p, netip.Addr{}); err != nil {
			t.Fatal(err)
		}
	}
	waitReceived(t, router, v4, v4b, v6)
	if got := dir.Announced(); !slices.Equal(got, []netip.Prefix{v4, v4b, v6}) {
		t.Errorf("Announced() = %v", got)
	}
	st, err := dir.Peers(ctx)
	if err != nil || len(st) != 1 || !st[0].Established || st[0].State != "established" || st[0].UpdatesSent == 0 {
		t.Errorf("Peers() = %+v, %v, want one established session with updates sent", st, err)
	}
	if err := dir.Withdraw(ctx, v4b); err != nil {
		t.Fatal(err)
	}
	if err := dir.Withdraw(ctx, v4b); err != nil {
		t.Errorf("withdraw twice: %v", err)
	}
	waitReceived(t, router, v4, v6)

	for _, bad := range []struct {
		p  string
		nh string
	}{{"10.9.0.0/24", ""}, {"2001:db8::/64", ""}, {"10.9.0.3/32", "2001:db8::1"}, {"2001:db8::3/128", "10.0.0.1"}} {
		var nh netip.Addr
		if bad.nh != "" {
			nh = netip.MustParseAddr(bad.nh)
		}
		if err := dir.Announce(ctx, netip.MustParsePrefix(bad.p), nh); err == nil {
			t.Errorf("Announce(%s, %v) succeeded", bad.p, nh)
		}
	}

	// Close withdraws before it ends the session; afterwards the speaker
	// refuses work.
	if err := dir.Close(); err != nil {
		t.Fatal(err)
	}
	waitReceived(t, router)
	if err := dir.Announce(ctx, v4, netip.Addr{}); !errors.Is(err, ErrClosed) {
		t.Errorf("Announce after Close = %v, want ErrClosed", err)
	}
	if err := dir.Close(); err != nil {
		t.Errorf("second Close = %v", err)
	}
}

func TestStartInvalid(t *testing.T) {
	if _, err := Start(context.Background(), Config{AS: 1}, nil); err == nil {
		t.Error("Start without router-id succeeded")
	}
}
