package bgp

import (
	"flag"
	"io"
	"net/netip"
	"os"
	"reflect"
	"strings"
	"testing"
	"time"
)

func TestParsePeer(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want Peer
		err  string
	}{
		{in: "10.0.0.1:65000", want: Peer{Addr: netip.MustParseAddr("10.0.0.1"), AS: 65000}},
		{in: "10.0.0.1:4200000000:1179", want: Peer{Addr: netip.MustParseAddr("10.0.0.1"), AS: 4200000000, Port: 1179}},
		{in: "[2001:db8::1]:65000", want: Peer{Addr: netip.MustParseAddr("2001:db8::1"), AS: 65000}},
		{in: "[2001:db8::1]:65000:179", want: Peer{Addr: netip.MustParseAddr("2001:db8::1"), AS: 65000, Port: 179}},
		{in: "[::ffff:10.0.0.1]:1", want: Peer{Addr: netip.MustParseAddr("10.0.0.1"), AS: 1}},
		{in: "10.0.0.1", err: "want ADDR:AS"},
		{in: "10.0.0.1:0", err: "bad AS"},
		{in: "10.0.0.1:4294967296", err: "bad AS"},
		{in: "10.0.0.1:65000:0", err: "bad port"},
		{in: "10.0.0.1:65000:65536", err: "bad port"},
		{in: "10.0.0:65000", err: "bad address"},
		{in: "2001:db8::1:65000", err: "bad address"},
		{in: "[2001:db8::1]65000", err: "want [ADDR]"},
		{in: "[fe80::1%eth0]:65000", err: "bad address"},
		{in: "", err: "want ADDR:AS"},
	} {
		got, err := ParsePeer(tc.in)
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("ParsePeer(%q) = %v, %v, want error containing %q", tc.in, got, err, tc.err)
			}
			continue
		}
		if err != nil || got != tc.want {
			t.Errorf("ParsePeer(%q) = %v, %v, want %v", tc.in, got, err, tc.want)
			continue
		}
		// String round-trips.
		if back, err := ParsePeer(got.String()); err != nil || back != got {
			t.Errorf("ParsePeer(%q.String() = %q) = %v, %v", tc.in, got.String(), back, err)
		}
	}
}

const sampleFile = `# director 1
router-id 10.0.1.2
as 65001
hold-time 3s
graceful-restart 120
shutdown-delay 1
nexthop 10.0.1.2   # its address on the router's link
nexthop6 2001:db8:1::2
peer 10.0.1.1 as 65000
peer 2001:db8:1::1 as 65000 port 1179
`

func TestParseFile(t *testing.T) {
	got, err := ParseFile(strings.NewReader(sampleFile))
	if err != nil {
		t.Fatal(err)
	}
	want := Config{
		RouterID: netip.MustParseAddr("10.0.1.2"), AS: 65001, HoldTime: 3 * time.Second,
		GracefulRestart: 120 * time.Second, ShutdownDelay: time.Second,
		NextHop: netip.MustParseAddr("10.0.1.2"), NextHop6: netip.MustParseAddr("2001:db8:1::2"),
		Peers: []Peer{
			{Addr: netip.MustParseAddr("10.0.1.1"), AS: 65000},
			{Addr: netip.MustParseAddr("2001:db8:1::1"), AS: 65000, Port: 1179},
		},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("ParseFile = %+v, want %+v", got, want)
	}
	// Defaults: hold time 90 s, no graceful restart, no listener.
	got, err = ParseFile(strings.NewReader("router-id 1.2.3.4\nas 1\npeer 1.2.3.5 as 2\n"))
	if err != nil || got.HoldTime != DefaultHoldTime || got.GracefulRestart != 0 || got.ListenPort != 0 {
		t.Errorf("ParseFile(minimal) = %+v, %v", got, err)
	}
}

func TestParseFileErrors(t *testing.T) {
	base := "router-id 10.0.1.2\nas 65001\npeer 10.0.1.1 as 65000\n"
	for _, tc := range []struct{ in, err string }{
		{"as 65001\npeer 10.0.1.1 as 65000\n", "router-id"},
		{"router-id 2001:db8::1\nas 1\npeer 10.0.1.1 as 2\n", "must be an IPv4"},
		{"router-id 10.0.1.2\npeer 10.0.1.1 as 65000\n", "local AS missing"},
		{"router-id 10.0.1.2\nas 65001\n", "no peer"},
		{base + "peer 10.0.1.1 as 65000\n", "listed twice"},
		{base + "peer 10.0.1.9\n", "AS missing"},
		{base + "peer 10.0.1.9 as\n", "line 4: peer 10.0.1.9: as: value missing"},
		{base + "peer 10.0.1.9 as 1 mtu 9000\n", "unknown option"},
		{base + "peer 0.0.0.0 as 1\n", "unicast"},
		{base + "peer 224.0.0.5 as 1\n", "unicast"},
		{base + "hold-time 2\n", "3s-65535s"},
		{base + "hold-time 65536\n", "3s-65535s"},
		{base + "hold-time 1.5s\n", "whole seconds"},
		{base + "hold-time -3s\n", "whole seconds"},
		{base + "graceful-restart 4096\n", "0-4095s"},
		{base + "listen-port 65536\n", "bad port"},
		{base + "shutdown-delay 61\n", "0-60s"},
		{base + "nexthop 2001:db8::1\n", "must be IPv4"},
		{base + "nexthop6 10.0.0.1\n", "must be IPv6"},
		{base + "as 1 2\n", "line 4: as: want one value"},
		{base + "bfd on\n", `unknown directive "bfd"`},
		{base + "router-id x\n", "bad address"},
	} {
		_, err := ParseFile(strings.NewReader(tc.in))
		if err == nil || !strings.Contains(err.Error(), tc.err) {
			t.Errorf("ParseFile(%q) error = %v, want it to contain %q", tc.in, err, tc.err)
		}
	}
}

func parseFlags(t *testing.T, args ...string) (*Config, error) {
	t.Helper()
	fs := flag.NewFlagSet("xlb run", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	f := RegisterFlags(fs)
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	return f.Config(func(name string) (io.ReadCloser, error) { return os.Open(name) })
}

func TestFlags(t *testing.T) {
	c, err := parseFlags(t)
	if c != nil || err != nil {
		t.Errorf("no flags: Config() = %v, %v, want nil, nil", c, err)
	}
	c, err = parseFlags(t, "--bgp-as", "65001", "--bgp-router-id", "10.0.1.2",
		"--bgp-peer", "10.0.1.1:65000", "--bgp-peer", "[2001:db8::1]:65000:1179",
		"--bgp-hold-time", "3", "--bgp-graceful-restart", "30", "--bgp-nexthop", "10.0.1.2", "--bgp-listen-port", "1790", "--bgp-shutdown-delay", "2")
	if err != nil {
		t.Fatal(err)
	}
	want := &Config{
		RouterID: netip.MustParseAddr("10.0.1.2"), AS: 65001, HoldTime: 3 * time.Second, GracefulRestart: 30 * time.Second,
		NextHop: netip.MustParseAddr("10.0.1.2"), ListenPort: 1790, ShutdownDelay: 2 * time.Second,
		Peers: []Peer{
			{Addr: netip.MustParseAddr("10.0.1.1"), AS: 65000},
			{Addr: netip.MustParseAddr("2001:db8::1"), AS: 65000, Port: 1179},
		},
	}
	if !reflect.DeepEqual(c, want) {
		t.Errorf("Config() = %+v, want %+v", c, want)
	}

	file := t.TempDir() + "/bgp.conf"
	if err := os.WriteFile(file, []byte(sampleFile), 0o600); err != nil {
		t.Fatal(err)
	}
	if c, err = parseFlags(t, "--bgp", file); err != nil || c.AS != 65001 || len(c.Peers) != 2 {
		t.Errorf("--bgp %s: Config() = %+v, %v", file, c, err)
	}

	for _, tc := range []struct {
		args []string
		err  string
	}{
		{[]string{"--bgp", file, "--bgp-as", "1"}, "excludes"},
		{[]string{"--bgp", t.TempDir() + "/missing"}, "open bgp config"},
		{[]string{"--bgp-as", "65001", "--bgp-peer", "10.0.0.1:1"}, "router-id"},
		{[]string{"--bgp-as", "4294967296", "--bgp-router-id", "1.1.1.1", "--bgp-peer", "10.0.0.1:1"}, "--bgp-as"},
		{[]string{"--bgp-as", "1", "--bgp-router-id", "1.1.1.1", "--bgp-peer", "10.0.0.1:1", "--bgp-hold-time", "2"}, "hold time"},
		{[]string{"--bgp-as", "1", "--bgp-router-id", "1.1.1.1", "--bgp-peer", "10.0.0.1:1", "--bgp-nexthop", "nope"}, "--bgp-nexthop"},
		{[]string{"--bgp-peer", "10.0.0.1"}, "want ADDR:AS"},
		{[]string{"--bgp-as", "1", "--bgp-router-id", "1.1.1.1", "--bgp-peer", "10.0.0.1:1", "--bgp-shutdown-delay", "61"}, "--bgp-shutdown-delay"},
	} {
		if _, err := parseFlags(t, tc.args...); err == nil || !strings.Contains(err.Error(), tc.err) {
			t.Errorf("flags %q: error = %v, want it to contain %q", tc.args, err, tc.err)
		}
	}
}

func FuzzParseFile(f *testing.F) {
	f.Add(sampleFile)
	f.Add("router-id 1.2.3.4\nas 1\npeer 1.2.3.5 as 2 port 3\n")
	f.Add("peer [::1]:1\n")
	f.Fuzz(func(t *testing.T, in string) {
		c, err := ParseFile(strings.NewReader(in))
		if err != nil {
			return
		}
		// Whatever parses is valid, and valid again after a round trip of
		// its peers through their flag form.
		if err := c.Validate(); err != nil {
			t.Fatalf("ParseFile(%q) = %+v, which does not validate: %v", in, c, err)
		}
		for _, p := range c.Peers {
			if back, err := ParsePeer(p.String()); err != nil || back != p {
				t.Fatalf("ParsePeer(%q) = %v, %v, want %v", p.String(), back, err, p)
			}
		}
	})
}

func FuzzParsePeer(f *testing.F) {
	for _, s := range []string{"10.0.0.1:65000", "[2001:db8::1]:65000:179", "1.2.3.4:1:1", "[::]:", ":"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, in string) {
		p, err := ParsePeer(in)
		if err != nil {
			return
		}
		if p.AS == 0 || !p.Addr.IsValid() {
			t.Fatalf("ParsePeer(%q) = %+v without error", in, p)
		}
		if back, err := ParsePeer(p.String()); err != nil || back != p {
			t.Fatalf("ParsePeer(%q) round trip via %q = %v, %v", in, p.String(), back, err)
		}
	})
}
