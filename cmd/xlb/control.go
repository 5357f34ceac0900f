package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net"
	"os"
	"os/user"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/xlbproject/xlb/internal/ipvsadm"
)

// defaultSocket is an abstract Unix socket: it lives in the network
// namespace, not in the file system, so daemons in two namespaces of one
// host (which share /run under `ip netns exec`) each have their own, a
// client reaches the daemon of its own namespace, and a killed daemon
// leaves nothing behind. Abstract sockets have no file permissions: peers
// are authorized by their credentials (SO_PEERCRED).
const defaultSocket = "@xlb"

const (
	// maxRequest bounds a request's size: a -R of 50k destinations is
	// about 2.5 MB.
	maxRequest = 16 << 20
	// requestTimeout is how long a client may stay silent while it sends
	// its request; a silent client is dropped then, and holds no one else
	// up meanwhile since clients are served concurrently. requestLimit
	// bounds the whole request, however it trickles in.
	requestTimeout = 2 * time.Second
	requestLimit   = 30 * time.Second
	// answerTimeout bounds writing the answer to a client that does not
	// read it.
	answerTimeout = 10 * time.Second
	// maxClients bounds the clients served at once; one more is told so
	// and closed.
	maxClients = 64
)

// request is one ipvsadm command line sent to the daemon; response is
// what ipvsadm would have printed and its exit code.
type request struct {
	Args  []string `json:"args"`
	Stdin string   `json:"stdin,omitempty"` // for -R
	// Ipvsadm asks for ipvsadm 1.31 only, without xlb's extra commands
	// (--xlb-stats): the client was run as ipvsadm.
	Ipvsadm bool `json:"ipvsadm,omitempty"`
}

type response struct {
	Stdout string `json:"stdout"`
	Stderr string `json:"stderr"`
	Code   int    `json:"code"`
	// Denied is set when the peer may not use the daemon; ipvsadm's
	// client then says what ipvsadm says to a user who is not root.
	Denied bool `json:"denied,omitempty"`
}

var errRequestTooLarge = fmt.Errorf("request too large (limit %d MiB)", maxRequest>>20)

// decodeRequest reads one JSON request of at most maxRequest bytes from
// r. It reads no further than needed: the client waits for the answer
// without closing its end.
func decodeRequest(r io.Reader) (request, error) {
	lr := &io.LimitedReader{R: r, N: maxRequest + 1}
	var req request
	if err := json.NewDecoder(lr).Decode(&req); err != nil {
		if lr.N <= 0 {
			return request{}, errRequestTooLarge
		}
		return request{}, fmt.Errorf("decode request: %w", err)
	}
	if lr.N <= 0 {
		return request{}, errRequestTooLarge
	}
	return req, nil
}

// isAbstract tells an abstract socket name ("@name") from a path.
func isAbstract(path string) bool { return strings.HasPrefix(path, "@") }

// lookupGroup resolves --socket-group (a name or a numeric ID); "" is
// no group (-1).
func lookupGroup(name string) (int, error) {
	if name == "" {
		return -1, nil
	}
	g, err := user.LookupGroup(name)
	if err != nil {
		if _, nerr := strconv.Atoi(name); nerr != nil {
			return -1, fmt.Errorf("socket group %s: no such group", name)
		}
		if g, err = user.LookupGroupId(name); err != nil {
			return -1, fmt.Errorf("socket group %s: no such group ID", name)
		}
	}
	return strconv.Atoi(g.Gid)
}

// listenControl opens the daemon's control socket. An abstract socket
// taken by another daemon of this namespace is refused. A path is created
// with mode 0600 from the start (0660 and group gid with a socket
// group): it replaces only a stale socket, one nobody answers on, and
// refuses any other existing file.
func listenControl(path string, gid int) (net.Listener, error) {
	if isAbstract(path) {
		ln, err := net.Listen("unix", path)
		if errors.Is(err, syscall.EADDRINUSE) {
			return nil, fmt.Errorf("control socket %s: another xlb daemon is running in this network namespace", path)
		}
		if err != nil {
			return nil, fmt.Errorf("listen on control socket %s: %w", path, err)
		}
		return ln, nil
	}
	if err := removeStale(path); err != nil {
		return nil, err
	}
	// The umask makes bind create the file 0600: a chmod after bind left a
	// moment in which anyone could connect (under umask 000 an
	// unprivileged user added a service as root). No other goroutine
	// creates files while the daemon starts.
	old := unix.Umask(0o177)
	ln, err := net.Listen("unix", path)
	unix.Umask(old)
	if err != nil {
		return nil, fmt.Errorf("listen on control socket %s: %w", path, err)
	}
	if gid >= 0 {
		if err := os.Chown(path, -1, gid); err != nil {
			ln.Close()
			return nil, fmt.Errorf("give control socket %s to group %d: %w", path, gid, err)
		}
		if err := os.Chmod(path, 0o660); err != nil {
			ln.Close()
			return nil, fmt.Errorf("open control socket %s to group %d: %w", path, gid, err)
		}
	}
	return ln, nil
}

// removeStale removes path if it is a socket nobody answers on, and
// refuses anything else that exists there.
func removeStale(path string) error {
	fi, err := os.Lstat(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("control socket %s: %w", path, err)
	}
	if fi.Mode().Type() != fs.ModeSocket {
		return fmt.Errorf("control socket %s: exists and is not a socket (%s); refusing to replace it", path, fileKind(fi.Mode()))
	}
	c, err := net.DialTimeout("unix", path, 200*time.Millisecond)
	if err == nil {
		c.Close()
		return fmt.Errorf("control socket %s: another xlb daemon is running", path)
	}
	if !errors.Is(err, syscall.ECONNREFUSED) {
		return fmt.Errorf("control socket %s: %w", path, err)
	}
	if err := os.Remove(path); err != nil {
		return fmt.Errorf("remove stale control socket %s: %w", path, err)
	}
	return nil
}

func fileKind(m fs.FileMode) string {
	switch {
	case m.IsDir():
		return "a directory"
	case m.IsRegular():
		return "a regular file"
	case m.Type() == fs.ModeSymlink:
		return "a symbolic link"
	}
	return "mode " + m.String()
}

// serve answers control requests until ctx ends or ln is closed. Clients
// are served concurrently, at most maxClients at once; the server's lock
// keeps commands that change the configuration one at a time.
func (s *server) serve(ctx context.Context, ln net.Listener) {
	go func() {
		<-ctx.Done()
		ln.Close()
	}()
	sem := make(chan struct{}, maxClients)
	var wg sync.WaitGroup
	defer wg.Wait()
	for {
		c, err := ln.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) || ctx.Err() != nil {
				return
			}
			// EMFILE and the like: keep serving once the pressure is off.
			s.logger().Warn("accept control client", "err", err)
			time.Sleep(50 * time.Millisecond)
			continue
		}
		select {
		case sem <- struct{}{}:
		default:
			c.SetWriteDeadline(time.Now().Add(100 * time.Millisecond))
			json.NewEncoder(c).Encode(response{
				Stderr: fmt.Sprintf("xlb: too many control clients at once (limit %d); try again\n", maxClients),
				Code:   1,
			})
			c.Close()
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			s.handleConn(c)
		}()
	}
}

func (s *server) handleConn(c net.Conn) {
	defer c.Close()
	answer := func(r response) {
		c.SetWriteDeadline(time.Now().Add(answerTimeout))
		json.NewEncoder(c).Encode(r)
	}
	if err := s.authorize(c); err != nil {
		answer(response{Stderr: fmt.Sprintf("xlb: %v\n", err), Code: 1, Denied: true})
		return
	}
	req, err := decodeRequest(&idleReader{c: c, end: time.Now().Add(requestLimit)})
	if err != nil {
		answer(response{Stderr: fmt.Sprintf("bad request: %v\n", err), Code: 2})
		return
	}
	answer(s.handleSafe(req))
}

// idleReader reads from c with a deadline of requestTimeout from the
// last read, and never past end.
type idleReader struct {
	c   net.Conn
	end time.Time
}

func (r *idleReader) Read(p []byte) (int, error) {
	d := time.Now().Add(requestTimeout)
	if d.After(r.end) {
		d = r.end
	}
	r.c.SetReadDeadline(d)
	return r.c.Read(p)
}

// handleSafe runs a request; a panic in it is a bug that must not take
// the load balancer down: it is logged and answered.
func (s *server) handleSafe(req request) (resp response) {
	defer func() {
		if p := recover(); p != nil {
			s.logger().Error("control request panicked", "args", req.Args, "panic", p)
			resp = response{Stderr: fmt.Sprintf("xlb: internal error: %v\n", p), Code: 1}
		}
	}()
	return s.handle(req)
}

// authorize admits root, the daemon's own user and, with a socket group,
// members of that group, by the credentials the kernel recorded when the
// peer connected. An abstract socket has no permissions of its own, and a
// path's permissions are checked again here.
func (s *server) authorize(c net.Conn) error {
	uc, ok := c.(*net.UnixConn)
	if !ok {
		return errors.New("permission denied: not a unix socket")
	}
	cred, err := peerCred(uc)
	if err != nil {
		return fmt.Errorf("permission denied: read peer credentials: %w", err)
	}
	if cred.Uid == 0 || int(cred.Uid) == os.Geteuid() {
		return nil
	}
	if s.gid >= 0 && (int(cred.Gid) == s.gid || inGroup(cred, s.gid)) {
		return nil
	}
	if s.gid >= 0 {
		return fmt.Errorf("permission denied: uid %d is neither root nor in the socket group (gid %d)", cred.Uid, s.gid)
	}
	return fmt.Errorf("permission denied: uid %d is not root (see xlb run --socket-group)", cred.Uid)
}

func peerCred(c *net.UnixConn) (*unix.Ucred, error) {
	rc, err := c.SyscallConn()
	if err != nil {
		return nil, err
	}
	var cred *unix.Ucred
	var cerr error
	if err := rc.Control(func(fd uintptr) {
		cred, cerr = unix.GetsockoptUcred(int(fd), unix.SOL_SOCKET, unix.SO_PEERCRED)
	}); err != nil {
		return nil, err
	}
	return cred, cerr
}

// inGroup tells whether the peer has gid among its supplementary groups:
// those of its process when it is visible, else its user's.
func inGroup(cred *unix.Ucred, gid int) bool {
	want := strconv.Itoa(gid)
	if b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", cred.Pid)); err == nil && cred.Pid > 0 {
		for _, l := range strings.Split(string(b), "\n") {
			if g, ok := strings.CutPrefix(l, "Groups:"); ok {
				for _, f := range strings.Fields(g) {
					if f == want {
						return true
					}
				}
				return false
			}
		}
	}
	u, err := user.LookupId(strconv.Itoa(int(cred.Uid)))
	if err != nil {
		return false
	}
	gids, err := u.GroupIds()
	if err != nil {
		return false
	}
	for _, g := range gids {
		if g == want {
			return true
		}
	}
	return false
}

func (s *server) logger() *slog.Logger {
	if s.log == nil {
		return slog.Default()
	}
	return s.log
}

// client sends an ipvsadm command line to the daemon and prints its
// answer.
func client(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	path := clientSocket()
	if len(args) > 0 && (args[0] == "--socket" || args[0] == "-socket") && len(args) > 1 {
		path, args = args[1], args[2:]
	}
	req := request{Args: args}
	if isRestore(args) {
		b, err := io.ReadAll(stdin)
		if err != nil {
			fmt.Fprintf(stderr, "xlb: read rules from stdin: %v\n", err)
			return 1
		}
		req.Stdin = string(b)
	}
	resp, err := call(path, req)
	if err != nil {
		fmt.Fprintf(stderr, "xlb: %v\nIs the daemon running (xlb run --iface IF) in this network namespace?\n", err)
		return 1
	}
	io.WriteString(stdout, resp.Stdout)
	io.WriteString(stderr, resp.Stderr)
	return resp.Code
}

// clientSocket is the daemon's socket for a client: $XLB_SOCKET or the
// default.
func clientSocket() string {
	if path := os.Getenv("XLB_SOCKET"); path != "" {
		return path
	}
	return defaultSocket
}

// ipvsadmInitFailed is what ipvsadm 1.31's main prints when libipvs
// cannot start (fail(1, ...) after ipvs_init and a modprobe), with
// ipvs_strerror's wording of the errno: "Permission denied (you must be
// root)" for EPERM from a user who is not root, "Protocol not available"
// (ENOPROTOOPT) when IPVS is not there, here when no daemon answers.
func ipvsadmInitFailed(w io.Writer, reason string) int {
	fmt.Fprintf(w, "Can't initialize ipvs: %s\nAre you sure that IP Virtual Server is built in the kernel or as module?\n", reason)
	return ipvsadm.ExitRuntime
}

// ipvsadmClient is xlb run as ipvsadm (a link named ipvsadm, or xlb
// ipvsadm ...): every argument is ipvsadm's, none is xlb's (no --socket:
// the daemon is the one of $XLB_SOCKET or of this network namespace), and
// output, errors and exit codes are ipvsadm 1.31's, including its answers
// to a user who is not root and to a host without IPVS (no daemon).
func ipvsadmClient(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	req := request{Args: args, Ipvsadm: true}
	if isRestore(args) {
		// ipvsadm reads the rules after ipvs_init; a read error is not
		// one of its messages, so this one is xlb's.
		b, err := io.ReadAll(stdin)
		if err != nil {
			fmt.Fprintf(stderr, "ipvsadm: read rules from stdin: %v\n", err)
			return ipvsadm.ExitRuntime
		}
		req.Stdin = string(b)
	}
	resp, err := call(clientSocket(), req)
	if err != nil {
		return ipvsadmInitFailed(stderr, "Protocol not available")
	}
	if resp.Denied {
		return ipvsadmInitFailed(stderr, "Permission denied (you must be root)")
	}
	io.WriteString(stdout, resp.Stdout)
	io.WriteString(stderr, resp.Stderr)
	return resp.Code
}

func call(path string, req request) (response, error) {
	var resp response
	c, err := net.DialTimeout("unix", path, 2*time.Second)
	if err != nil {
		return resp, fmt.Errorf("connect to daemon at %s: %w", path, err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(15 * time.Second))
	// The daemon may answer before reading (a refused peer, too many
	// clients) and close: then the write fails but the answer is there.
	werr := json.NewEncoder(c).Encode(req)
	if err := json.NewDecoder(c).Decode(&resp); err != nil {
		if werr != nil {
			return resp, fmt.Errorf("send to daemon: %w", werr)
		}
		return resp, fmt.Errorf("read daemon answer: %w", err)
	}
	return resp, nil
}

func isRestore(args []string) bool {
	for _, a := range args {
		if a == "-R" || a == "--restore" {
			return true
		}
	}
	return false
}
