package main

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/xlbproject/xlb/internal/ipvsadm"
	"github.com/xlbproject/xlb/testenv"
)

// runBin runs the xlb binary under the name argv0 (a link to it), with
// XLB_SOCKET=sock, as uid (0: the test's own user), and returns its
// output and exit code.
func runBin(t *testing.T, bin, sock string, uid uint32, stdin string, args ...string) (string, string, int) {
	t.Helper()
	cmd := exec.Command(bin, args...)
	cmd.Env = append(os.Environ(), "XLB_SOCKET="+sock)
	cmd.Stdin = strings.NewReader(stdin)
	if uid != 0 {
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: uid, Gid: uid}}
	}
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	var ee *exec.ExitError
	switch {
	case err == nil:
		return out.String(), errb.String(), 0
	case errors.As(err, &ee):
		return out.String(), errb.String(), ee.ExitCode()
	}
	t.Fatalf("run %s %v: %v", bin, args, err)
	return "", "", 0
}

// TestIpvsadmByName: run through a link named ipvsadm, or as xlb
// ipvsadm, xlb is ipvsadm 1.31: the same answers as the daemon's for
// ipvsadm's commands, none of xlb's own (--socket, --xlb-stats, run), and
// ipvsadm's fail(1) texts when the user is not root or no daemon (no
// IPVS) is there.
func TestIpvsadmByName(t *testing.T) {
	testenv.RequireRoot(t) // to run the client as another user
	dir := t.TempDir()
	// The link and the binary must be reachable by the unprivileged user.
	for _, d := range []string{dir, filepath.Dir(dir), filepath.Dir(xlbBin)} {
		if err := os.Chmod(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	link := filepath.Join(dir, "ipvsadm")
	if err := os.Symlink(xlbBin, link); err != nil {
		t.Fatal(err)
	}
	sock := fmt.Sprintf("@xlb-ipvsadm-test-%d", os.Getpid())
	testServer(t, sock, -1)

	// ipvsadm's commands: the same bytes and codes as xlb's client.
	for _, args := range [][]string{
		{"-L", "-n"},
		{"-S", "-n"},
		{"-L", "-n", "-t", "198.18.0.200:80"},
		{"-A", "-t", "198.18.0.100:80"},
		{"-a", "-t", "198.18.0.100:80", "-r", "198.18.0.12", "-w", "70000"},
		{"-h"},
		{"--version"},
		{},
	} {
		wo, we, wc := runBin(t, xlbBin, sock, 0, "", args...)
		for _, name := range []string{"link", "xlb ipvsadm"} {
			var o, e string
			var c int
			if name == "link" {
				o, e, c = runBin(t, link, sock, 0, "", args...)
			} else {
				o, e, c = runBin(t, xlbBin, sock, 0, "", append([]string{"ipvsadm"}, args...)...)
			}
			if o != wo || e != we || c != wc {
				t.Errorf("%s %q = %q, %q, exit %d; want xlb's %q, %q, exit %d", name, args, o, e, c, wo, we, wc)
			}
		}
	}
	if _, e, c := runBin(t, link, sock, 0, "", "-A", "-t", "198.18.0.100:80"); c != 255 || e != "Service already exists\n" {
		t.Errorf("ipvsadm -A of an existing service = %q, exit %d; want Service already exists, 255", e, c)
	}
	// -R reads its rules from stdin.
	if _, e, c := runBin(t, link, sock, 0, "-A -t 198.18.0.101:80 -s wrr\n", "-R"); c != 0 || e != "" {
		t.Errorf("ipvsadm -R = %q, exit %d; want success", e, c)
	}
	if o, _, _ := runBin(t, link, sock, 0, "", "-S", "-n"); !strings.Contains(o, "-A -t 198.18.0.101:80 -s wrr\n") {
		t.Errorf("ipvsadm -S -n after -R = %q, want the restored service", o)
	}

	// xlb's own words are ipvsadm's errors here, as ipvsadm would print
	// them for an unknown option or a stray argument.
	for _, args := range [][]string{{"--xlb-stats"}, {"--socket", sock, "-L", "-n"}, {"run", "--iface", "eth0"}, {"--xlb-help"}} {
		_, perr := ipvsadm.Parse(args)
		var pe *ipvsadm.Error
		if !errors.As(perr, &pe) {
			t.Fatalf("ipvsadm.Parse(%q) = %v, want an error", args, perr)
		}
		o, e, c := runBin(t, link, sock, 0, "", args...)
		if o != "" || e != pe.Msg+"\n" || c != pe.Code {
			t.Errorf("ipvsadm %q = %q, %q, exit %d; want ipvsadm's %q, exit %d", args, o, e, c, pe.Msg, pe.Code)
		}
	}

	// A user who is not root (nor the daemon's, nor in a socket group).
	const rootMsg = "Can't initialize ipvs: Permission denied (you must be root)\n" +
		"Are you sure that IP Virtual Server is built in the kernel or as module?\n"
	for _, args := range [][]string{{"-L", "-n"}, {"-A", "-t", "198.18.0.102:80"}, {"-h"}} {
		o, e, c := runBin(t, link, sock, 65534, "", args...)
		if o != "" || e != rootMsg || c != 1 {
			t.Errorf("ipvsadm %q as uid 65534 = %q, %q, exit %d; want %q, exit 1", args, o, e, c, rootMsg)
		}
	}
	// As xlb, the same user is told why, in xlb's words, with the same code.
	if _, e, c := runBin(t, xlbBin, sock, 65534, "", "-L", "-n"); c != 1 || !strings.Contains(e, "permission denied: uid 65534 is not root") {
		t.Errorf("xlb -L -n as uid 65534 = %q, exit %d; want xlb's permission message, exit 1", e, c)
	}

	// No daemon: ipvsadm on a host without IPVS.
	o, e, c := runBin(t, link, sock+"-none", 0, "", "-L", "-n")
	if want := "Can't initialize ipvs: Protocol not available\nAre you sure that IP Virtual Server is built in the kernel or as module?\n"; o != "" || e != want || c != 1 {
		t.Errorf("ipvsadm -L -n with no daemon = %q, %q, exit %d; want %q, exit 1", o, e, c, want)
	}
}
