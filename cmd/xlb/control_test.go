//go:build linux

package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/xlbproject/xlb/bpf"
	"github.com/xlbproject/xlb/dataplane"
	"github.com/xlbproject/xlb/director"
	"github.com/xlbproject/xlb/internal/ipvs"
	"github.com/xlbproject/xlb/internal/ipvsadm"
	"github.com/xlbproject/xlb/testenv"
)

// fakeDataplane stands in for the dataplane behind the control socket.
type fakeDataplane struct {
	mu      sync.Mutex
	applied int
	refuse  bool // Apply fails, as with a full destination registry
}

func (f *fakeDataplane) Apply(*ipvs.Config) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.refuse {
		return errors.New("apply config: too many destinations (limit 1)")
	}
	f.applied++
	return nil
}
func (f *fakeDataplane) SetSysctls(ipvs.Sysctls) {}
func (f *fakeDataplane) Zero(*ipvs.ServiceKey)   {}
func (f *fakeDataplane) DestStats(ipvs.ServiceKey, netip.AddrPort) (dataplane.DestStats, bool) {
	return dataplane.DestStats{}, false
}
func (f *fakeDataplane) Conns(context.Context, func(dataplane.Conn)) error { return nil }
func (f *fakeDataplane) Stats() dataplane.Stats                            { return dataplane.Stats{} }
func (f *fakeDataplane) AttachMode() bpf.AttachMode                        { return bpf.Generic }
func (f *fakeDataplane) LocalAddrStats(netip.Addr) (uint64, uint64)        { return 0, 0 }

const testRules = "-A -t 198.18.0.100:80 -s rr\n-a -t 198.18.0.100:80 -r 198.18.0.11:80 -g -w 1\n"

// testServer serves a fake dataplane with testRules on a socket at sock
// (a path, or @name) until the test ends.
func testServer(t *testing.T, sock string, gid int) (*server, *fakeDataplane) {
	t.Helper()
	cfg, err := ipvsadm.ParseRules(strings.NewReader(testRules))
	if err != nil {
		t.Fatal(err)
	}
	fdp := &fakeDataplane{}
	s := newServer(t, fdp, cfg, gid)
	ln, err := listenControl(sock, gid)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		s.serve(ctx, ln)
		close(done)
	}()
	t.Cleanup(func() {
		cancel()
		<-done
	})
	return s, fdp
}

// newServer is a server of fdp with configuration cfg.
func newServer(tb testing.TB, fdp *fakeDataplane, cfg *ipvs.Config, gid int) *server {
	tb.Helper()
	refuse := fdp.refuse
	fdp.refuse = false
	dir, err := director.New(fdp, cfg, director.Options{Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		tb.Fatal(err)
	}
	fdp.refuse = refuse
	return &server{dp: fdp, dir: dir, gid: gid}
}

func save(t *testing.T, sock string) string {
	t.Helper()
	resp, err := call(sock, request{Args: []string{"-S", "-n"}})
	if err != nil || resp.Code != 0 {
		t.Fatalf("-S -n: %v %+v", err, resp)
	}
	return resp.Stdout
}

func sockPath(t *testing.T) string { return filepath.Join(t.TempDir(), "xlb.sock") }

// Clients that connect and say nothing hold no one else up: they are
// served concurrently and dropped after requestTimeout (the daemon used
// to serve one client at a time with a 10 s deadline).
func TestSilentClientsDoNotStall(t *testing.T) {
	sock := sockPath(t)
	testServer(t, sock, -1)
	for i := 0; i < 3; i++ {
		c, err := net.Dial("unix", sock)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
	}
	time.Sleep(50 * time.Millisecond) // let the server take them
	start := time.Now()
	resp, err := call(sock, request{Args: []string{"-L", "-n"}})
	if err != nil || resp.Code != 0 {
		t.Fatalf("-L -n with 3 silent clients: %v %+v", err, resp)
	}
	if d := time.Since(start); d > time.Second {
		t.Errorf("-L -n with 3 silent clients took %v, want < 1s", d)
	}
	// A silent client is dropped after requestTimeout.
	c, err := net.Dial("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetReadDeadline(time.Now().Add(requestTimeout + 2*time.Second))
	var r response
	err = json.NewDecoder(c).Decode(&r)
	if err != nil || !strings.Contains(r.Stderr, "bad request") {
		t.Errorf("silent client after %v: answer %+v, err %v; want a bad request answer", requestTimeout, r, err)
	}
}

// Past maxClients at once, a client is told so and closed; the others
// are still served.
func TestTooManyClients(t *testing.T) {
	sock := sockPath(t)
	testServer(t, sock, -1)
	var silent []net.Conn
	for i := 0; i < maxClients; i++ {
		c, err := net.Dial("unix", sock)
		if err != nil {
			t.Fatal(err)
		}
		silent = append(silent, c)
	}
	time.Sleep(100 * time.Millisecond)
	resp, err := call(sock, request{Args: []string{"-L", "-n"}})
	if err != nil || !strings.Contains(resp.Stderr, "too many control clients") || resp.Code == 0 {
		t.Errorf("client %d: %+v, %v; want a too-many-clients error", maxClients+1, resp, err)
	}
	for _, c := range silent {
		c.Close()
	}
	deadline := time.Now().Add(2 * time.Second)
	for {
		resp, err = call(sock, request{Args: []string{"-L", "-n"}})
		if err == nil && resp.Code == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("after the silent clients left: %+v %v", resp, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// 200 clients at once, half of them changing the configuration: each is
// answered (or told to try again), and every change that was accepted is
// in the final configuration.
func TestConcurrentClients(t *testing.T) {
	sock := sockPath(t)
	s, _ := testServer(t, sock, -1)
	var wg sync.WaitGroup
	var mu sync.Mutex
	added := 0
	for i := 0; i < 200; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			args := []string{"-L", "-n"}
			if i%2 == 0 {
				args = []string{"-a", "-t", "198.18.0.100:80", "-r", fmt.Sprintf("198.18.1.%d:80", i/2), "-g"}
			}
			resp, err := call(sock, request{Args: args})
			switch {
			case err != nil:
				t.Errorf("client %d: %v", i, err)
			case resp.Code == 0 && i%2 == 0:
				mu.Lock()
				added++
				mu.Unlock()
			case resp.Code != 0 && !strings.Contains(resp.Stderr, "too many control clients"):
				t.Errorf("client %d: %+v", i, resp)
			}
		}()
	}
	wg.Wait()
	got := len(s.dir.Config().Services[0].Dests)
	if got != 1+added {
		t.Errorf("after %d accepted -a, the service has %d destinations, want %d", added, got, 1+added)
	}
	if added == 0 {
		t.Error("no -a was accepted")
	}
}

// Garbage, a truncated request, a 20 MiB request and requests the
// configuration refuses all get an error answer, and the configuration is
// unchanged.
func TestBadRequests(t *testing.T) {
	sock := sockPath(t)
	_, fdp := testServer(t, sock, -1)
	before := save(t, sock)
	raw := func(name string, b []byte) response {
		t.Helper()
		c, err := net.Dial("unix", sock)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		// Decoding 16 MiB of JSON takes seconds under -race on a loaded
		// machine: the bound is the server's own (requestLimit), the
		// check is the answer.
		c.SetDeadline(time.Now().Add(requestLimit))
		go func() {
			c.Write(b)
			if len(b) < maxRequest {
				c.(*net.UnixConn).CloseWrite()
			}
		}()
		var r response
		if err := json.NewDecoder(c).Decode(&r); err != nil {
			t.Errorf("%s: no answer: %v", name, err)
		}
		return r
	}
	huge, _ := json.Marshal(request{Args: []string{"-R"}, Stdin: strings.Repeat("-A -t 198.18.0.200:80 -s rr\n", 20<<20/28)})
	for _, tc := range []struct {
		name string
		in   []byte
		want string
	}{
		{"garbage", []byte("\x00\xff\x13garbage{{{"), "bad request"},
		{"truncated", []byte(`{"args":["-A","-t"`), "bad request"},
		{"wrong type", []byte(`{"args":"-C"}`), "bad request"},
		{"20 MiB", huge, "request too large"},
	} {
		r := raw(tc.name, tc.in)
		if !strings.Contains(r.Stderr, tc.want) || r.Code == 0 {
			t.Errorf("%s: answer %+v, want %q and a non-zero code", tc.name, r, tc.want)
		}
	}
	for _, args := range [][]string{
		{"-A", "-t", "198.18.0.100:80", "-s", "rr"}, // exists
		{"-a", "-t", "198.18.0.100:80", "-r", "198.18.0.12:80", "-w", "70000"},
		{"--bogus"},
		{"-R"}, // with a bad line in stdin below
	} {
		req := request{Args: args}
		if args[0] == "-R" {
			req.Stdin = "-A -t 198.18.0.101:80 -s rr\n-A -t nonsense\n"
		}
		resp, err := call(sock, req)
		if err != nil || resp.Code == 0 {
			t.Errorf("%v: %+v %v; want an error", args, resp, err)
		}
	}
	fdp.mu.Lock()
	fdp.refuse = true
	fdp.mu.Unlock()
	if resp, err := call(sock, request{Args: []string{"-A", "-t", "198.18.0.102:80"}}); err != nil || resp.Code == 0 {
		t.Errorf("-A refused by the dataplane: %+v %v; want an error", resp, err)
	}
	if after := save(t, sock); after != before {
		t.Errorf("refused requests changed the configuration:\nbefore:\n%s\nafter:\n%s", before, after)
	}
}

// FuzzDecodeRequest feeds the control socket's decoder and command
// handler arbitrary bytes: no panic, and a refused request leaves the
// configuration as it was.
func FuzzDecodeRequest(f *testing.F) {
	for _, s := range []string{
		`{"args":["-L","-n"]}`,
		`{"args":["-A","-t","10.0.0.1:80","-s","wlc"]}`,
		`{"args":["-R"],"stdin":"-A -t 10.0.0.1:80 -s rr\n-a -t 10.0.0.1:80 -r 10.0.0.2:80 -g -w 3\n"}`,
		`{"args":["-D","-t","198.18.0.100:80"]}`,
		`{"args":["-e","-t","198.18.0.100:80","-r","198.18.0.11:80","-w","0"]}`,
		`{"args":["-C"]}`, `{"args":null}`, `null`, `[]`, `{"args":[1]}`, "\x00\xff",
	} {
		f.Add([]byte(s))
	}
	cfg, err := ipvsadm.ParseRules(strings.NewReader(testRules))
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		req, err := decodeRequest(bytes.NewReader(b))
		if err != nil {
			return
		}
		s := newServer(t, &fakeDataplane{refuse: len(b)%3 == 0}, cfg.Clone(), -1)
		var before bytes.Buffer
		ipvsadm.WriteSave(&before, s.dir.Config(), true)
		resp := s.handleSafe(req)
		if strings.Contains(resp.Stderr, "internal error") {
			t.Fatalf("request %q panicked: %s", b, resp.Stderr)
		}
		if resp.Code != 0 {
			var after bytes.Buffer
			ipvsadm.WriteSave(&after, s.dir.Config(), true)
			if after.String() != before.String() {
				t.Fatalf("refused request %q changed the configuration:\n%s", b, after.String())
			}
		}
	})
}

func TestDecodeRequestLimit(t *testing.T) {
	b, _ := json.Marshal(request{Args: []string{"-R"}, Stdin: strings.Repeat("x", maxRequest)})
	if _, err := decodeRequest(bytes.NewReader(b)); !errors.Is(err, errRequestTooLarge) {
		t.Errorf("decodeRequest(%d bytes) = %v, want %v", len(b), err, errRequestTooLarge)
	}
	b, _ = json.Marshal(request{Args: []string{"-R"}, Stdin: strings.Repeat("x", maxRequest-100)})
	if req, err := decodeRequest(bytes.NewReader(b)); err != nil || len(req.Stdin) != maxRequest-100 {
		t.Errorf("decodeRequest(%d bytes) = %v, want the request", len(b), err)
	}
}

// --socket at an existing file that is not a socket is refused and the
// file kept (it used to be deleted); a stale socket is replaced; a live
// one is refused.
func TestSocketPathPreconditions(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "precious")
	os.WriteFile(file, []byte("keep me"), 0o644)
	if _, err := listenControl(file, -1); err == nil || !strings.Contains(err.Error(), "not a socket") {
		t.Errorf("listenControl(regular file) = %v, want a not-a-socket error", err)
	}
	if b, err := os.ReadFile(file); err != nil || string(b) != "keep me" {
		t.Errorf("the regular file is gone or changed: %q %v", b, err)
	}
	if _, err := listenControl(dir, -1); err == nil || !strings.Contains(err.Error(), "not a socket") {
		t.Errorf("listenControl(directory) = %v, want a not-a-socket error", err)
	}

	stale := filepath.Join(dir, "stale.sock")
	ln, err := net.Listen("unix", stale)
	if err != nil {
		t.Fatal(err)
	}
	ln.(*net.UnixListener).SetUnlinkOnClose(false)
	ln.Close() // as a SIGKILLed daemon leaves it
	ln, err = listenControl(stale, -1)
	if err != nil {
		t.Fatalf("listenControl(stale socket) = %v, want it replaced", err)
	}
	defer ln.Close()
	if _, err := listenControl(stale, -1); err == nil || !strings.Contains(err.Error(), "another xlb daemon is running") {
		t.Errorf("listenControl(live socket) = %v, want another-daemon error", err)
	}
}

// The socket file is 0600 from the moment it exists, whatever the
// umask; with a socket group, 0660 and that group.
func TestSocketMode(t *testing.T) {
	old := unix.Umask(0)
	defer unix.Umask(old)
	p := sockPath(t)
	ln, err := listenControl(p, -1)
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	fi, err := os.Stat(p)
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("socket mode under umask 000 = %v (%v), want 0600", fi.Mode(), err)
	}
	if os.Geteuid() != 0 {
		return
	}
	p2 := sockPath(t)
	ln2, err := listenControl(p2, 1234)
	if err != nil {
		t.Fatal(err)
	}
	defer ln2.Close()
	var st unix.Stat_t
	if err := unix.Stat(p2, &st); err != nil || st.Mode&0o777 != 0o660 || st.Gid != 1234 {
		t.Errorf("socket with group 1234: mode %o gid %d (%v), want 0660, 1234", st.Mode&0o777, st.Gid, err)
	}
}

// asUser runs the xlb client as uid 65534 (nobody) with extra groups.
func asUser(t *testing.T, sock string, groups []uint32, args ...string) (string, error) {
	t.Helper()
	cmd := exec.Command(xlbBin, append([]string{"--socket", sock}, args...)...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534, Groups: groups}}
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// An unprivileged user cannot configure the daemon: not through the
// abstract socket (which has no file permissions), and not through a path
// socket even in the moment its mode may be wrong (here made 0777 on
// purpose; under umask 000 a user used to add a service as root). A
// member of --socket-group can.
func TestSocketRefusesUnprivileged(t *testing.T) {
	testenv.RequireRoot(t)
	// nobody must reach the binary and the socket's directory.
	if err := os.Chmod(filepath.Dir(xlbBin), 0o755); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	os.Chmod(dir, 0o755)
	os.Chmod(filepath.Dir(dir), 0o755)
	path := filepath.Join(dir, "xlb.sock")
	abstract := fmt.Sprintf("@xlb-test-%d", os.Getpid())
	for _, sock := range []string{path, abstract} {
		testServer(t, sock, 4321)
		if !isAbstract(sock) {
			os.Chmod(sock, 0o777)
		}
		before := save(t, sock)
		out, err := asUser(t, sock, nil, "-A", "-t", "198.18.0.200:80", "-s", "rr")
		if err == nil || !strings.Contains(out, "is neither root nor in the socket group") {
			t.Errorf("%s: nobody's -A: %v %q, want permission denied", sock, err, out)
		}
		if after := save(t, sock); after != before {
			t.Errorf("%s: nobody changed the configuration:\n%s", sock, after)
		}
		out, err = asUser(t, sock, []uint32{4321}, "-S", "-n")
		if err != nil || out != before {
			t.Errorf("%s: a member of the socket group: %v %q, want the configuration", sock, err, out)
		}
	}
}

// --conns of 0, negative or past the table's limit is refused before
// anything is touched.
func TestConnsFlag(t *testing.T) {
	for _, tc := range []struct{ conns, want string }{
		{"0", "--conns 0: must be positive"},
		{"-5", "--conns -5: must be positive"},
		{"2000000000", "--conns 2000000000: must be at most"},
	} {
		var out bytes.Buffer
		code := run([]string{"run", "--iface", "nonexistent0", "--conns", tc.conns, "--socket", sockPath(t)}, nil, io.Discard, &out)
		if code == 0 || !strings.Contains(out.String(), tc.want) {
			t.Errorf("xlb run --conns %s: exit %d, %q; want %q", tc.conns, code, out.String(), tc.want)
		}
	}
}

func TestLookupGroup(t *testing.T) {
	for _, name := range []string{"root", "0"} {
		if gid, err := lookupGroup(name); err != nil || gid != 0 {
			t.Errorf("lookupGroup(%q) = %d, %v; want 0", name, gid, err)
		}
	}
	if gid, err := lookupGroup(""); err != nil || gid != -1 {
		t.Errorf("lookupGroup(\"\") = %d, %v; want -1 (no group)", gid, err)
	}
	if _, err := lookupGroup("no-such-group-xlb"); err == nil {
		t.Error("lookupGroup(no-such-group-xlb) succeeded")
	}
}
