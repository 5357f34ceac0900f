package bgp

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net/netip"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/xlbproject/xlb/internal/ipvs"
	"github.com/xlbproject/xlb/testenv"
)

// helperEnv names the config file of a speaker the test binary runs as a
// helper process inside a director's namespace. gobgp opens its sockets
// from goroutines on any OS thread, so the speaker cannot share the test
// process with other namespaces: the whole process must be in the
// director's.
const helperEnv = "XLB_BGP_HELPER_CONFIG"

func TestMain(m *testing.M) {
	if conf := os.Getenv(helperEnv); conf != "" {
		os.Exit(helperMain(conf, os.Stdin, os.Stdout))
	}
	os.Exit(m.Run())
}

// helperMain runs a speaker driven by stdin, one command a line, and
// answers each with "ok" or "error: ...":
//
//	announce PREFIX | withdraw PREFIX   the Speaker's calls
//	apply VIP WEIGHT                    the Reconciler, with one service VIP:80 and one real server of WEIGHT
//	drain 1|0                           the Reconciler's drain state
//	close                               Close, then exit
//
// On end of input (the test died) it exits without withdrawing.
func helperMain(conf string, in io.Reader, out io.Writer) int {
	f, err := os.Open(conf)
	if err != nil {
		fmt.Fprintln(out, "error:", err)
		return 1
	}
	cfg, err := ParseFile(f)
	f.Close()
	if err != nil {
		fmt.Fprintln(out, "error:", err)
		return 1
	}
	ctx := context.Background()
	sp, err := Start(ctx, cfg, nil)
	if err != nil {
		fmt.Fprintln(out, "error:", err)
		return 1
	}
	rec := NewReconciler(sp)
	fmt.Fprintln(out, "ok")
	sc := bufio.NewScanner(in)
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) == 0 {
			continue
		}
		err := fmt.Errorf("bad command %q", sc.Text())
		switch {
		case f[0] == "close":
			err = sp.Close()
			if err != nil {
				fmt.Fprintln(out, "error:", err)
				return 1
			}
			fmt.Fprintln(out, "ok")
			return 0
		case len(f) == 2 && (f[0] == "announce" || f[0] == "withdraw"):
			var p netip.Prefix
			if p, err = netip.ParsePrefix(f[1]); err == nil {
				if f[0] == "announce" {
					err = sp.Announce(ctx, p, netip.Addr{})
				} else {
					err = sp.Withdraw(ctx, p)
				}
			}
		case len(f) == 3 && f[0] == "apply":
			var vip netip.Addr
			var w int
			if vip, err = netip.ParseAddr(f[1]); err == nil {
				if w, err = strconv.Atoi(f[2]); err == nil {
					s := ipvs.NewService(ipvs.ServiceKey{Proto: ipvs.TCP, Addr: vip, Port: 80})
					d := ipvs.NewDest(netip.MustParseAddrPort("192.168.50.1:80"))
					d.Weight = int32(w)
					s.Dests = []ipvs.Dest{d}
					err = rec.Apply(ctx, &ipvs.Config{Services: []ipvs.Service{s}})
				}
			}
		case len(f) == 2 && f[0] == "drain":
			err = rec.SetDraining(ctx, f[1] == "1")
		}
		if err != nil {
			fmt.Fprintln(out, "error:", err)
		} else {
			fmt.Fprintln(out, "ok")
		}
	}
	return 0
}

// speakerProc is a helper speaker running in a director's namespace.
type speakerProc struct {
	t     *testing.T
	name  string
	cmd   *exec.Cmd
	in    io.WriteCloser
	lines chan string
	errs  testenv.SyncBuffer
	done  chan struct{}
}

func startSpeaker(t *testing.T, h *testenv.Host, conf string) *speakerProc {
	t.Helper()
	file := t.TempDir() + "/bgp.conf"
	if err := os.WriteFile(file, []byte(conf), 0o600); err != nil {
		t.Fatal(err)
	}
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	p := &speakerProc{t: t, name: h.Name, lines: make(chan string, 16), done: make(chan struct{})}
	p.cmd = h.Command(exe)
	p.cmd.Env = append(os.Environ(), helperEnv+"="+file)
	p.cmd.Stderr = &p.errs
	p.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if p.in, err = p.cmd.StdinPipe(); err != nil {
		t.Fatal(err)
	}
	out, err := p.cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := p.cmd.Start(); err != nil {
		t.Fatalf("start speaker in %s: %v", h.NSName, err)
	}
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			p.lines <- sc.Text()
		}
		close(p.lines)
	}()
	go func() {
		p.cmd.Wait()
		close(p.done)
	}()
	t.Cleanup(p.kill)
	p.reply("start")
	return p
}

// reply waits for the helper's answer to what it was last told.
func (p *speakerProc) reply(what string) {
	p.t.Helper()
	select {
	case l, ok := <-p.lines:
		if !ok {
			p.t.Fatalf("%s: %s: speaker exited: %s", p.name, what, p.errs.String())
		}
		if l != "ok" {
			p.t.Fatalf("%s: %s: %s", p.name, what, l)
		}
	case <-time.After(10 * time.Second):
		p.t.Fatalf("%s: %s: no answer in 10s: %s", p.name, what, p.errs.String())
	}
}

func (p *speakerProc) do(cmd string) {
	p.t.Helper()
	if _, err := fmt.Fprintln(p.in, cmd); err != nil {
		p.t.Fatalf("%s: %s: %v", p.name, cmd, err)
	}
	p.reply(cmd)
}

func (p *speakerProc) signal(sig syscall.Signal) {
	if p.cmd.Process != nil {
		syscall.Kill(-p.cmd.Process.Pid, sig)
	}
}

// kill ends the helper however it stands (also stopped).
func (p *speakerProc) kill() {
	p.signal(syscall.SIGKILL)
	p.signal(syscall.SIGCONT)
	select {
	case <-p.done:
	case <-time.After(5 * time.Second):
		p.t.Errorf("%s: speaker did not die", p.name)
	}
}

func speakerConf(i int, holdTime int) string {
	return fmt.Sprintf("router-id %v\nas 65001\nhold-time %d\npeer %v as 65000\n",
		testenv.ScaleOutDirectorAddr(i), holdTime, testenv.ScaleOutRouterLinkAddr(i))
}

// TestBGPScaleOutECMP runs three directors' speakers against FRR and
// reads the router's kernel route to the VIP: an ECMP route over every
// director that announces, losing a director's nexthop when it withdraws
// (by call, by the policy, on Close), when its process dies and when it
// hangs (hold time, 3 s).
func TestBGPScaleOutECMP(t *testing.T) {
	so := testenv.NewScaleOut(t, testenv.ScaleOutOptions{Directors: 3})
	vip := testenv.ScaleOutVIP
	vipP := HostPrefix(vip).String()
	d := func(i int) netip.Addr { return testenv.ScaleOutDirectorAddr(i) }
	const hold = 3
	sp := make([]*speakerProc, 3)
	start := time.Now()
	for i := range sp {
		sp[i] = startSpeaker(t, so.Directors[i], speakerConf(i+1, hold))
	}
	// Director 1 announces through the policy: a VIP with a healthy real
	// server. Directors 2 and 3 announce directly.
	sp[0].do("apply " + vip.String() + " 1")
	sp[1].do("announce " + vipP)
	sp[2].do("announce " + vipP)
	step := func(name string, limit time.Duration, want ...netip.Addr) time.Duration {
		t.Helper()
		took, err := so.WaitNexthops(vip, want, limit)
		if err != nil {
			out, _ := so.Vtysh(context.Background(), "show bgp summary")
			t.Fatalf("%s: %v\n%s", name, err, out)
		}
		t.Logf("%s: router's route to %v has nexthops %v after %v", name, vip, want, took.Round(time.Millisecond))
		return took
	}
	step("all announce", 30*time.Second, d(1), d(2), d(3))
	t.Logf("sessions up and ECMP over 3 directors %v after the speakers started", time.Since(start).Round(time.Millisecond))

	// The router spreads the client's flows over the three directors
	// (each answers with its name), and none to a withdrawn one.
	if err := so.ServeVIP(vip); err != nil {
		t.Fatal(err)
	}
	const flows = 30
	by, failed := so.Spread(vip, flows)
	t.Logf("%d flows over 3 announcing directors: %v, %d failed", flows, by, failed)
	if failed > 0 || len(by) != 3 {
		t.Errorf("%d flows: %v, %d failed; want all three directors used, none failed", flows, by, failed)
	}

	sp[2].do("withdraw " + vipP)
	step("director 3 withdraws", 5*time.Second, d(1), d(2))
	by, failed = so.Spread(vip, flows)
	t.Logf("%d flows after director 3 withdrew: %v, %d failed", flows, by, failed)
	if failed > 0 || by["dir3"] > 0 || len(by) != 2 {
		t.Errorf("%d flows after director 3 withdrew: %v, %d failed; want directors 1 and 2 only, none failed", flows, by, failed)
	}
	sp[2].do("announce " + vipP)
	step("director 3 announces again", 5*time.Second, d(1), d(2), d(3))

	// The policy: the only real server fails (weight 0), then drain.
	sp[0].do("apply " + vip.String() + " 0")
	step("director 1's real servers fail", 5*time.Second, d(2), d(3))
	sp[0].do("apply " + vip.String() + " 5")
	step("director 1's real server back", 5*time.Second, d(1), d(2), d(3))
	sp[0].do("drain 1")
	step("director 1 drains", 5*time.Second, d(2), d(3))
	sp[0].do("drain 0")
	step("director 1 undrains", 5*time.Second, d(1), d(2), d(3))

	sp[1].do("close")
	step("director 2 closes", 5*time.Second, d(1), d(3))
	select {
	case <-sp[1].done:
	case <-time.After(5 * time.Second):
		t.Error("director 2's speaker did not exit after close")
	}

	// A hung director: its session stays open, its keepalives stop. The
	// router drops it when the hold time expires.
	sp[2].signal(syscall.SIGSTOP)
	took := step("director 3 hangs", (hold+5)*time.Second, d(1))
	// The last keepalive came up to a keepalive interval (1 s) before the
	// stop; a removal well under that is not the hold timer.
	if took < (hold*time.Second)/2 {
		t.Errorf("director 3 removed after %v, before the %ds hold time could expire: not by the hold timer", took, hold)
	}

	// A killed director: the kernel closes its session, the router drops
	// its route at once.
	sp[0].signal(syscall.SIGKILL)
	step("director 1 killed", 5*time.Second)
}

// TestBGPGracefulRestart shows what graceful restart gives: with the
// capability negotiated (FRR is a helper by default), a speaker that dies
// without a NOTIFICATION leaves its route in the router's FIB, stale, for
// the restart time; without it the route goes at once (TestBGPScaleOutECMP,
// "director 1 killed").
func TestBGPGracefulRestart(t *testing.T) {
	so := testenv.NewScaleOut(t, testenv.ScaleOutOptions{Directors: 1})
	vip := testenv.ScaleOutVIP
	const restart = 4
	sp := startSpeaker(t, so.Directors[0], speakerConf(1, 3)+fmt.Sprintf("graceful-restart %d\n", restart))
	sp.do("announce " + HostPrefix(vip).String())
	d1 := testenv.ScaleOutDirectorAddr(1)
	if _, err := so.WaitNexthops(vip, []netip.Addr{d1}, 30*time.Second); err != nil {
		t.Fatal(err)
	}
	if out, err := so.Vtysh(context.Background(), "show bgp neighbors "+d1.String()); err != nil || !strings.Contains(out, "Graceful Restart Capability: advertised and received") {
		t.Fatalf("graceful restart not negotiated: %v\n%s", err, out)
	}
	sp.signal(syscall.SIGKILL)
	killed := time.Now()
	time.Sleep(time.Second)
	if nhs, err := so.Nexthops(vip); err != nil || len(nhs) != 1 {
		t.Fatalf("route 1 s after the speaker died: %v, %v, want kept (stale) during the %d s restart time", nhs, err, restart)
	}
	if _, err := so.WaitNexthops(vip, nil, (restart+5)*time.Second); err != nil {
		t.Fatal(err)
	}
	took := time.Since(killed)
	t.Logf("graceful restart kept the dead speaker's route %v (restart time %d s)", took.Round(time.Millisecond), restart)
	if took < (restart-1)*time.Second {
		t.Errorf("route removed after %v, before the %d s restart time", took, restart)
	}
}
