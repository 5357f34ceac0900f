//go:build linux

package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/xlbproject/xlb/testenv"
)

// nsDaemon is an `xlb run` on a topology's director whose control socket
// may be the default abstract one: its clients run in the director's
// namespace.
type nsDaemon struct {
	*testenv.Proc
	env   *testenv.Env
	sock  string // "" for the default socket
	rules string // the rules file
}

// writeRules writes rules to a file in dir and returns its path.
func writeRules(t *testing.T, dir, rules string) string {
	t.Helper()
	f := filepath.Join(dir, "rules")
	if err := os.WriteFile(f, []byte(rules), 0o644); err != nil {
		t.Fatal(err)
	}
	return f
}

// startDaemon runs xlb run --iface eth0 --rules FILE --conns 65536 plus
// extra on the director and waits until it answers. sock is passed as
// --socket unless it is "" (the default socket). It is stopped in
// t.Cleanup.
func startDaemon(t *testing.T, env *testenv.Env, rulesFile, sock string, extra ...string) *nsDaemon {
	t.Helper()
	d, err := launchDaemon(env, rulesFile, sock, extra...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { d.Stop(syscall.SIGTERM, 10*time.Second) })
	if err := d.waitUp(15 * time.Second); err != nil {
		t.Fatal(err)
	}
	return d
}

func launchDaemon(env *testenv.Env, rulesFile, sock string, extra ...string) (*nsDaemon, error) {
	args := []string{"run", "--iface", "eth0", "--rules", rulesFile, "--conns", "65536"}
	if sock != "" {
		args = append(args, "--socket", sock)
	}
	p, err := env.Director.Start(xlbBin, append(args, extra...)...)
	if err != nil {
		return nil, err
	}
	return &nsDaemon{Proc: p, env: env, sock: sock, rules: rulesFile}, nil
}

// waitUp polls the control socket until the daemon answers.
func (d *nsDaemon) waitUp(limit time.Duration) error {
	deadline := time.Now().Add(limit)
	for {
		if _, err := d.ctl("-L", "-n"); err == nil {
			return nil
		}
		if time.Now().After(deadline) || d.Exited() {
			d.Stop(syscall.SIGKILL, time.Second)
			return fmt.Errorf("xlb did not come up: %v\nlogs:\n%s", d.Err(), d.Output.String())
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// ctl runs an ipvsadm command against the daemon, from the director's
// namespace.
func (d *nsDaemon) ctl(args ...string) (string, error) {
	if d.sock != "" {
		args = append([]string{"--socket", d.sock}, args...)
	}
	out, err := d.env.Director.Command(xlbBin, args...).CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("xlb %s: %w: %s", strings.Join(args, " "), err, out)
	}
	return string(out), nil
}

// mustSave is -S -n.
func (d *nsDaemon) mustSave(t *testing.T) string {
	t.Helper()
	out, err := d.ctl("-S", "-n")
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// xdpAttached tells whether the director's eth0 has an XDP program.
func xdpAttached(t *testing.T, env *testenv.Env) bool {
	t.Helper()
	out, err := env.Director.Command("ip", "link", "show", "dev", "eth0").CombinedOutput()
	if err != nil {
		t.Fatalf("ip link show: %v %s", err, out)
	}
	return strings.Contains(string(out), "xdp")
}

// checkTraffic sends n new TCP connections and n new UDP flows through
// the VIP and returns how many failed, with the first error.
func checkTraffic(env *testenv.Env, n int) (failed int, first error) {
	c := env.Client.HTTPClient(false, 3*time.Second)
	url := fmt.Sprintf("http://%v/", testenv.VIP)
	vip53 := netip.AddrPortFrom(testenv.VIP, 53)
	for i := 0; i < n; i++ {
		if _, err := testenv.Get(c, url); err != nil {
			failed++
			if first == nil {
				first = fmt.Errorf("TCP %d: %w", i, err)
			}
		}
		if _, err := env.Client.QueryUDP(vip53, 2*time.Second); err != nil {
			failed++
			if first == nil {
				first = fmt.Errorf("UDP %d: %w", i, err)
			}
		}
	}
	return failed, first
}

// requireTraffic asserts 0 failed requests out of 300 TCP and 300 UDP.
func requireTraffic(t *testing.T, env *testenv.Env, logs func() string) {
	t.Helper()
	if failed, err := checkTraffic(env, 300); failed != 0 {
		t.Fatalf("%d of 300 TCP + 300 UDP requests failed, first: %v\nxlb logs:\n%s", failed, err, logs())
	}
}

// keepAlive is one HTTP/1.1 connection to the VIP, driven by hand so that
// a reset shows (net/http would silently retry a GET on a new connection),
// whose requests must all be answered by the same real server (owner).
type keepAlive struct {
	c     net.Conn
	br    *bufio.Reader
	owner string
	n     int // requests answered
}

// dialKeepAlive opens a keepAlive to vip from the client.
func dialKeepAlive(env *testenv.Env, vip netip.AddrPort) (*keepAlive, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	c, err := env.Client.DialContext(ctx, "tcp4", vip.String())
	if err != nil {
		return nil, err
	}
	return &keepAlive{c: c, br: bufio.NewReader(c)}, nil
}

// mustKeepAlive is dialKeepAlive and a first request, closed when the
// test ends.
func mustKeepAlive(t *testing.T, env *testenv.Env, vip netip.AddrPort) *keepAlive {
	t.Helper()
	k, err := dialKeepAlive(env, vip)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { k.c.Close() })
	if _, err := k.get(3 * time.Second); err != nil {
		t.Fatal(err)
	}
	return k
}

// get sends one request and returns the body, the real server's name; an
// answer from another real server than the first one is an error.
func (k *keepAlive) get(timeout time.Duration) (string, error) {
	k.c.SetDeadline(time.Now().Add(timeout))
	if _, err := io.WriteString(k.c, "GET / HTTP/1.1\r\nHost: vip\r\n\r\n"); err != nil {
		return "", err
	}
	resp, err := http.ReadResponse(k.br, nil)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return "", err
	}
	if resp.Close {
		return "", errors.New("server closed the connection")
	}
	if k.owner == "" {
		k.owner = string(b)
	} else if string(b) != k.owner {
		return "", fmt.Errorf("answered by %s, was %s", b, k.owner)
	}
	k.n++
	return string(b), nil
}
