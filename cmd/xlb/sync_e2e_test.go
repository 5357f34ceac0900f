//go:build linux

package main

import (
	"fmt"
	"net/netip"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/xlbproject/xlb/testenv"
)

// Issue 11's failover: a master and a backup director run the same rr
// service over three DR real servers, with the sync daemons started by
// ipvsadm. 16 keep-alive connections and a stream of new requests go
// through the VIP; once the backup lists the 16 connections, the master
// is SIGKILLed and the VIP moves to the backup (address and gratuitous
// ARP, as keepalived's VRRP would). Every one of the 16 connections
// must still work, answered by the same real server, and the stream's
// failures are bounded by the failover window. The "nosync" variant is
// the control: without sync the backup's rr sends the connections'
// packets wherever its own rotation points (or drops them), and
// connections break.
func TestSyncFailover(t *testing.T) {
	testenv.RequireRoot(t)
	for _, tc := range []struct {
		name    string
		sync    bool
		unicast bool
	}{
		{"multicast", true, false},
		{"unicast", true, true},
		{"nosync", false, false},
	} {
		t.Run(tc.name, func(t *testing.T) { syncFailover(t, tc.sync, tc.unicast) })
	}
}

// reqStream sends new HTTP requests to the VIP one after the other, every
// interval, and records when each failed one started.
type reqStream struct {
	mu     sync.Mutex
	ok     int
	failed []time.Time
	stop   chan struct{}
	done   chan struct{}
}

func startReqStream(env *testenv.Env, interval, timeout time.Duration) *reqStream {
	s := &reqStream{stop: make(chan struct{}), done: make(chan struct{})}
	c := env.Client.HTTPClient(false, timeout)
	url := fmt.Sprintf("http://%v/", env.VIP)
	go func() {
		defer close(s.done)
		for {
			select {
			case <-s.stop:
				return
			case <-time.After(interval):
			}
			start := time.Now()
			_, err := testenv.Get(c, url)
			s.mu.Lock()
			if err != nil {
				s.failed = append(s.failed, start)
			} else {
				s.ok++
			}
			s.mu.Unlock()
		}
	}()
	return s
}

func (s *reqStream) end() (ok int, failed []time.Time) {
	close(s.stop)
	<-s.done
	return s.ok, s.failed
}

// connDests parses `ipvsadm -L -c -n` into client address:port ->
// destination for TCP entries to vip.
func connDests(list string, vip netip.AddrPort) map[string]string {
	m := map[string]string{}
	for _, l := range strings.Split(list, "\n") {
		f := strings.Fields(l)
		if len(f) == 6 && f[0] == "TCP" && f[4] == vip.String() {
			m[f[3]] = f[5]
		}
	}
	return m
}

func syncFailover(t *testing.T, withSync, unicast bool) {
	f := testenv.NewFailover(t, testenv.DefaultOptions())
	rules := drRules(f.Env, "rr")
	var mExtra, bExtra []string
	if unicast {
		mExtra = []string{"--sync-peer", testenv.BackupSyncAddr.String()}
		bExtra = []string{"--sync-peer", testenv.MasterSyncAddr.String()}
	}
	master := startXLBOn(t, f.Director, []string{"eth0"}, rules, mExtra...)
	backup := startXLBOn(t, f.Backup, []string{"eth0"}, rules, bExtra...)
	logs := func() string {
		return "master:\n" + master.Output.String() + "\nbackup:\n" + backup.Output.String()
	}
	if withSync {
		if out, err := backup.ctl("--start-daemon", "backup", "--mcast-interface", testenv.SyncIface, "--syncid", "9"); err != nil {
			t.Fatalf("%v %s", err, out)
		}
		if out, err := master.ctl("--start-daemon", "master", "--mcast-interface", testenv.SyncIface, "--syncid", "9"); err != nil {
			t.Fatalf("%v %s", err, out)
		}
		out, _ := master.ctl("-L", "--daemon")
		want := "master sync daemon (mcast=sync0, syncid=9, maxlen=1472, group=224.0.0.81, port=8848, ttl=1"
		if unicast {
			want += ", peers=" + testenv.BackupSyncAddr.String() + ":8848"
		}
		if out != want+")\n" {
			t.Errorf("master -L --daemon = %q, want %q", out, want+")\n")
		}
	}

	vip := netip.AddrPortFrom(f.VIP, 80)
	const n = 16
	conns := make([]*keepAlive, n)
	for i := range conns {
		conns[i] = mustKeepAlive(t, f.Env, vip)
	}
	owners := map[string]int{}
	for _, k := range conns {
		owners[k.owner]++
	}
	if len(owners) < 2 {
		t.Fatalf("the 16 connections all went to %v: rr should spread them", owners)
	}
	const interval, timeout = 10 * time.Millisecond, 500 * time.Millisecond
	st := startReqStream(f.Env, interval, timeout)
	defer func() {
		select {
		case <-st.stop:
		default:
			st.end()
		}
	}()

	if withSync {
		// The backup knows every connection, with the master's choice.
		if missing := waitSynced(t, master, backup, conns, vip, 5*time.Second); len(missing) > 0 {
			t.Fatalf("the backup lacks %d of the 16 connections after 5 s: %v\n%s", len(missing), missing, logs())
		}
	}

	// Failover: the master dies, the backup takes the VIP after a
	// detection delay (keepalived's would be its advert interval times 3).
	const detect = 100 * time.Millisecond
	killed := time.Now()
	if err := master.Stop(syscall.SIGKILL, 5*time.Second); err != nil && !master.Exited() {
		t.Fatalf("kill the master: %v", err)
	}
	time.Sleep(detect)
	if err := f.MoveVIP(f.Director, f.Backup); err != nil {
		t.Fatal(err)
	}
	moved := time.Now()
	window := moved.Sub(killed)

	var wg sync.WaitGroup
	errs := make([]error, n)
	for i, k := range conns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, errs[i] = k.get(2 * time.Second)
		}()
	}
	wg.Wait()
	var broken []string
	for i, err := range errs {
		if err != nil {
			broken = append(broken, fmt.Sprintf("%v: %v", conns[i].c.LocalAddr(), err))
		}
	}
	time.Sleep(300 * time.Millisecond) // the stream runs on the backup
	ok, failed := st.end()
	late := 0
	for _, at := range failed {
		if at.After(moved) {
			late++
		}
	}
	t.Logf("failover window %v (detection %v); stream: %d ok, %d failed (%d started after the move); %d of %d connections broken",
		window.Round(time.Millisecond), detect, ok, len(failed), late, len(broken), n)
	if !withSync {
		if len(broken) == 0 {
			t.Fatalf("without sync no connection broke: the test cannot tell sync from luck\n%s", logs())
		}
		return
	}
	if len(broken) > 0 {
		t.Errorf("%d of the 16 connections broke with sync: %v\n%s", len(broken), broken, logs())
	}
	// Sequential requests: at most one per interval fails while the VIP
	// points at the dead master, plus the one in flight at each edge.
	if bound := int(window/interval) + 2; len(failed) > bound || late > 0 {
		t.Errorf("stream: %d requests failed (%d after the move), want at most %d in a %v window", len(failed), late, bound, window)
	}
	if ok == 0 {
		t.Error("stream: no request succeeded")
	}
	// The backup serves new connections too.
	if failed, err := checkTraffic(f.Env, 30); failed != 0 {
		t.Errorf("after failover %d of 30 TCP + 30 UDP requests failed, first: %v", failed, err)
	}
	// The sync counters show it on the backup.
	if out, err := backup.ctl("--xlb-stats"); err != nil || !strings.Contains(out, "sync:") || !strings.Contains(out, "sync_installed") {
		t.Errorf("backup --xlb-stats lacks the sync section or the workers' sync_installed: %v\n%s", err, out)
	}
}

// waitSynced waits until the backup lists every connection in conns with
// the master's real server, and returns the ones it still lacks after
// limit.
func waitSynced(t *testing.T, master, backup *xlbProc, conns []*keepAlive, vip netip.AddrPort, limit time.Duration) []string {
	t.Helper()
	out, err := master.ctl("-L", "-c", "-n")
	if err != nil {
		t.Fatal(err)
	}
	onMaster := connDests(out, vip)
	deadline := time.Now().Add(limit)
	var missing []string
	for {
		out, err := backup.ctl("-L", "-c", "-n")
		if err != nil {
			t.Fatal(err)
		}
		onBackup := connDests(out, vip)
		missing = missing[:0]
		for _, k := range conns {
			c := k.c.LocalAddr().String()
			if d, ok := onBackup[c]; !ok || d != onMaster[c] {
				missing = append(missing, fmt.Sprintf("%s (master %s, backup %q)", c, onMaster[c], d))
			}
		}
		if len(missing) == 0 || time.Now().After(deadline) {
			return missing
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// waitLog waits until p's output has s.
func waitLog(p *xlbProc, s string, limit time.Duration) bool {
	for deadline := time.Now().Add(limit); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		if strings.Contains(p.Output.String(), s) {
			return true
		}
	}
	return false
}

// A network fault on the sync link: the interface disappears under both
// running daemons, which say so (log, --xlb-stats), keep balancing and
// keep their -L --daemon; when it comes back as a new device, both
// reopen their sockets and connections opened from then on are synced
// again. Connections opened while it was gone are not (as with the
// kernel, nothing resends them before sync_period packets).
func TestSyncInterfaceFault(t *testing.T) {
	testenv.RequireRoot(t)
	f := testenv.NewFailover(t, testenv.DefaultOptions())
	rules := drRules(f.Env, "rr")
	master := startXLBOn(t, f.Director, []string{"eth0"}, rules)
	backup := startXLBOn(t, f.Backup, []string{"eth0"}, rules)
	for _, d := range []struct {
		p    *xlbProc
		role string
	}{{backup, "backup"}, {master, "master"}} {
		if out, err := d.p.ctl("--start-daemon", d.role, "--mcast-interface", testenv.SyncIface); err != nil {
			t.Fatalf("%v %s", err, out)
		}
	}
	daemons := map[*xlbProc]string{}
	for _, p := range []*xlbProc{master, backup} {
		daemons[p], _ = p.ctl("-L", "--daemon")
	}
	vip := netip.AddrPortFrom(f.VIP, 80)
	open := func(n int) []*keepAlive {
		ks := make([]*keepAlive, n)
		for i := range ks {
			ks[i] = mustKeepAlive(t, f.Env, vip)
		}
		return ks
	}
	if missing := waitSynced(t, master, backup, open(4), vip, 5*time.Second); len(missing) > 0 {
		t.Fatalf("before the fault the backup lacks %v", missing)
	}

	if err := f.CutSync(); err != nil {
		t.Fatal(err)
	}
	during := open(4) // balanced; their records cannot be sent
	for _, p := range []*xlbProc{master, backup} {
		if !waitLog(p, "sync interface is gone", 3*time.Second) {
			t.Errorf("no report of the missing interface:\n%s", p.Output.String())
		}
		out, err := p.ctl("--xlb-stats")
		if err != nil || !strings.Contains(out, "interface_down true") {
			t.Errorf("--xlb-stats during the fault: %v\n%s", err, out)
		}
		if out, _ := p.ctl("-L", "--daemon"); out != daemons[p] {
			t.Errorf("-L --daemon during the fault = %q, want %q", out, daemons[p])
		}
	}
	for _, k := range during {
		if _, err := k.get(2 * time.Second); err != nil {
			t.Errorf("connection during the fault: %v", err)
		}
	}

	if err := f.LinkSync(); err != nil {
		t.Fatal(err)
	}
	for _, p := range []*xlbProc{master, backup} {
		if !waitLog(p, "sync socket reopened", 3*time.Second) {
			t.Fatalf("no reopen after the interface came back:\n%s", p.Output.String())
		}
	}
	if missing := waitSynced(t, master, backup, open(4), vip, 5*time.Second); len(missing) > 0 {
		t.Errorf("after the fault the backup lacks %v\nmaster:\n%s\nbackup:\n%s", missing, master.Output.String(), backup.Output.String())
	}
	for _, p := range []*xlbProc{master, backup} {
		if out, err := p.ctl("--xlb-stats"); err != nil || !strings.Contains(out, "interface_down false  reopens 1") {
			t.Errorf("--xlb-stats after the fault: %v\n%s", err, out)
		}
	}
}

// keepalived.conf's lvs_sync_daemon starts a backup sync daemon with
// `xlb run --keepalived` (keepalived's state before any VRRP
// transition); ipvsadm adds the master beside it.
func TestSyncKeepalivedDaemon(t *testing.T) {
	testenv.RequireRoot(t)
	f := testenv.NewFailover(t, testenv.DefaultOptions())
	conf := "global_defs {\n    lvs_sync_daemon sync0 VI_1 id 9\n}\n" +
		kaConf(f.VIP, 80, "DR", "", kaReal{addr: testenv.RealAddr(0), port: 80, weight: 1})
	d, _ := startKeepalived(t, f.Env, conf)
	const backup = "backup sync daemon (mcast=sync0, syncid=9, maxlen=1472, group=224.0.0.81, port=8848, ttl=1)\n"
	if out, err := d.ctl("-L", "--daemon"); err != nil || out != backup {
		t.Errorf("-L --daemon = %q, %v; want %q", out, err, backup)
	}
	if !strings.Contains(d.Output.String(), "VRRP is not supported: the sync daemon starts as backup") {
		t.Errorf("no warning about VI_1:\n%s", d.Output.String())
	}
	if out, err := d.ctl("--start-daemon", "master", "--mcast-interface", "sync0", "--syncid", "9"); err != nil {
		t.Fatalf("%v %s", err, out)
	}
	const both = "master sync daemon (mcast=sync0, syncid=9, maxlen=1472, group=224.0.0.81, port=8848, ttl=1)\n" + backup
	if out, err := d.ctl("-L", "--daemon"); err != nil || out != both {
		t.Errorf("-L --daemon = %q, %v; want %q", out, err, both)
	}
}
