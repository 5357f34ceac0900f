//go:build linux

package dataplane

import (
	"context"
	"net/netip"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/xlbproject/xlb/conntrack"
	"github.com/xlbproject/xlb/internal/ipvs"
	"github.com/xlbproject/xlb/internal/packet"
	pt "github.com/xlbproject/xlb/internal/packet/packettest"
	"github.com/xlbproject/xlb/ipvssync"
	"github.com/xlbproject/xlb/laddr"
	"github.com/xlbproject/xlb/modes"
	"github.com/xlbproject/xlb/sched"
)

// syncRS are the real servers of syncDirector's services.
var syncRS = []netip.Addr{netip.MustParseAddr("198.18.0.11"), netip.MustParseAddr("198.18.0.12"), netip.MustParseAddr("198.18.0.13")}

// director is a dataplane of fake-kernel workers for the sync tests.
type director struct {
	d     *Dataplane
	ws    []*worker
	ks    []*fakeKernel
	dests []*sched.Dest // by syncRS index
}

// syncDirector is a director with n workers (hand-off rings between
// them) and an rr TCP service VIP:80 and UDP service VIP:53 over the
// three syncRS:8080 by method m (FULLNAT: local address testLaddr),
// persistent (/32, 300 s) if persistent: what Apply would give its
// workers, with the destinations' methods set as Apply sets them.
func syncDirector(t testing.TB, m modes.Method, persistent bool, n int) *director {
	t.Helper()
	d := &Dataplane{reg: sched.NewRegistry(16), ctSettings: conntrack.NewSettings(conntrack.DefaultTimeouts())}
	dr := &director{d: d}
	fwd := make([]destFwd, 17)
	f := map[modes.Method]ipvs.Fwd{modes.Route: ipvs.FwdRoute, modes.Masq: ipvs.FwdMasq, modes.FullNAT: ipvs.FwdFullNAT}[m]
	var specs []ipvs.Service
	dests := map[ipvs.ServiceKey]map[netip.AddrPort]*sched.Dest{}
	var lists [][]*sched.Dest
	for _, k := range testServices {
		spec := ipvs.Service{Key: k, Sched: "rr", Netmask: 32, Persistent: persistent, Timeout: 300}
		if m == modes.FullNAT {
			spec.LocalAddrs = []ipvs.LocalAddr{{Addr: testLaddr}}
		}
		dm := map[netip.AddrPort]*sched.Dest{}
		var list []*sched.Dest
		for j, rs := range syncRS {
			dst := sched.NewDest(rs, 8080, 1)
			if err := d.reg.Add(dst); err != nil {
				t.Fatal(err)
			}
			dst.SetFwd(uint8(m))
			fwd[dst.ID] = destFwd{mac: realMACs[j], macOK: true, method: m, addr: dst.Addr, port: dst.Port}
			dm[netip.AddrPortFrom(rs, 8080)] = dst
			list = append([]*sched.Dest{dst}, list...) // newest first, as Apply gives them
			spec.Dests = append(spec.Dests, ipvs.Dest{Addr: rs, Port: 8080, Fwd: f, Weight: 1})
			if k == testServices[0] {
				dr.dests = append(dr.dests, dst)
			}
		}
		specs = append(specs, spec)
		dests[k] = dm
		lists = append(lists, list)
	}
	d.fwd.Store(&fwd)
	var sp []*ipvs.Service
	for i := range specs {
		sp = append(sp, &specs[i])
	}
	own := newOwnership(sp, nil, n)
	for i := 0; i < n; i++ {
		cfg := &workerConfig{services: map[svcKey]*workerService{}, own: own, fwmarks: map[fwmKey]*workerService{}}
		for j := range specs {
			rr, err := sched.New("rr", sched.DefaultOptions())
			if err != nil {
				t.Fatal(err)
			}
			rr.Update(lists[j])
			pol, err := servicePolicy(&specs[j], rr, nil)
			if err != nil {
				t.Fatal(err)
			}
			ws := &workerService{id: uint32(j + 1), ct: pol, dests: dests[specs[j].Key]}
			if m == modes.FullNAT {
				ws.laddrs = [][16]byte{testLaddr.As16()}
				cfg.laddrs = []netip.Addr{testLaddr}
			}
			cfg.services[makeSvcKey(specs[j].Key)] = ws
		}
		lo := laddr.DefaultOptions()
		lo.Worker, lo.Workers = i, n
		pool, err := laddr.New(lo)
		if err != nil {
			t.Fatal(err)
		}
		kern, q := newFakeKernel(1024, 2048, 256)
		w := &worker{id: i, dp: d, q: q, mac: directorMAC, mtu: 1500, ds: newDestStats(17), pool: pool}
		copts := conntrack.DefaultOptions()
		copts.Capacity = 1 << 12
		copts.Registry = d.reg
		copts.Settings = d.ctSettings
		copts.LocalReleased = func(la [16]byte, lport uint16, rs [16]byte, rport uint16) { w.pool.Release(la, rs, rport, lport) }
		copts.LocalReserved = func(la [16]byte, lport uint16, rs [16]byte, rport uint16) bool {
			return w.pool.Reserve(la, rs, rport, lport)
		}
		if w.ct, err = conntrack.New(copts); err != nil {
			t.Fatal(err)
		}
		w.cfg.Store(cfg)
		q.refill()
		dr.ws = append(dr.ws, w)
		dr.ks = append(dr.ks, kern)
	}
	d.workers = dr.ws
	if n > 1 {
		connectHandoff(dr.ws, 2048)
	}
	return dr
}

// poll polls every worker twice at now (hand-offs both ways) and
// returns what they sent, clearing it.
func (dr *director) poll(now int64) [][]byte {
	for range 2 {
		for _, w := range dr.ws {
			w.poll(now)
		}
	}
	var sent [][]byte
	for _, k := range dr.ks {
		sent = append(sent, k.sent...)
		k.sent = nil
	}
	return sent
}

// send delivers frames on worker 0 and polls.
func (dr *director) send(now int64, frames ...[]byte) [][]byte {
	for _, f := range frames {
		if !dr.ks[0].deliver(f) {
			panic("fake kernel could not deliver")
		}
	}
	return dr.poll(now)
}

func (dr *director) counter(c Counter) uint64 {
	n := uint64(0)
	for _, w := range dr.ws {
		n += w.stats.local[c]
	}
	return n
}

// collector is a sink that keeps what it was given.
type collector struct {
	mu    sync.Mutex
	conns []ipvssync.Conn
}

func (c *collector) sink(conns []ipvssync.Conn) {
	c.mu.Lock()
	c.conns = append(c.conns, conns...)
	c.mu.Unlock()
}

// wait returns the records once there are at least n, and clears them.
func (c *collector) wait(t *testing.T, n int) []ipvssync.Conn {
	t.Helper()
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(time.Millisecond) {
		c.mu.Lock()
		if len(c.conns) >= n {
			got := c.conns
			c.conns = nil
			c.mu.Unlock()
			return got
		}
		c.mu.Unlock()
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	t.Fatalf("sink got %d records, want %d: %v", len(c.conns), n, c.conns)
	return nil
}

// quiet checks that the sink got nothing more for a while.
func (c *collector) quiet(t *testing.T) {
	t.Helper()
	time.Sleep(3 * drainIdle)
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.conns) != 0 {
		t.Errorf("sink got %v, want nothing", c.conns)
	}
}

// export starts the director's export into a collector, and makes the
// workers see it (one batch edge).
func (dr *director) export(t *testing.T) *collector {
	c := &collector{}
	stop := dr.d.StartSyncExport(c.sink)
	t.Cleanup(stop)
	dr.poll(0)
	return c
}

func clientTCP(src netip.Addr, sport uint16, flags uint8) []byte {
	return pt.Packet{SrcMAC: clientMAC, DstMAC: directorMAC[:], Src: src, Dst: testVIP,
		SrcPort: sport, DstPort: 80, Flags: flags, Payload: []byte("xlb")}.Frame()
}

// rsIndex is the syncRS index of the MAC a frame was sent to, or -1.
func rsIndex(f []byte) int {
	for i, mac := range realMACs {
		if [6]byte(f[:6]) == mac {
			return i
		}
	}
	return -1
}

// The kernel's master rules: a TCP connection is sent at its 3rd input
// packet in ESTABLISHED (sync_threshold), then every 50th (sync_period);
// at once when it moves into FIN_WAIT, CLOSE_WAIT, CLOSE or TIME_WAIT;
// never before it is established.
func TestSyncNeededKernelRules(t *testing.T) {
	a := syncDirector(t, modes.Route, false, 1)
	c := a.export(t)
	cl := testClient
	a.send(1, clientTCP(cl, 40000, syn))
	c.quiet(t)                           // SYN_RECV: not synced
	a.send(2, clientTCP(cl, 40000, ack)) // ESTABLISHED at the 2nd packet: not yet
	c.quiet(t)
	sent := a.send(3, clientTCP(cl, 40000, ack|packet.TCPFlagPSH)) // the 3rd
	got := c.wait(t, 1)
	if len(got) != 1 {
		t.Fatalf("exported %v, want one record", got)
	}
	r := got[0]
	want := ipvssync.Conn{Protocol: ipvssync.ProtoTCP, Client: netip.AddrPortFrom(testClient, 40000),
		Virtual: netip.AddrPortFrom(testVIP, 80), Dest: netip.AddrPortFrom(syncRS[rsIndex(sent[0])], 8080),
		Flags: ipvssync.FlagDRoute, State: ipvssync.TCPEstablished, Timeout: 900}
	if !connEqual(r, want) {
		t.Errorf("exported %v, want %v", &r, &want)
	}
	// Packets 4..52 are not sent; the 53rd is.
	for i := 4; i <= 52; i++ {
		a.send(int64(i), clientTCP(cl, 40000, ack))
	}
	c.quiet(t)
	a.send(53, clientTCP(cl, 40000, ack))
	if got := c.wait(t, 1); len(got) != 1 || got[0].State != ipvssync.TCPEstablished {
		t.Errorf("53rd packet exported %v, want the established connection", got)
	}
	// The client's FIN: FIN_WAIT, sent at once with FIN_WAIT's timeout.
	a.send(54, clientTCP(cl, 40000, ack|packet.TCPFlagFIN))
	got = c.wait(t, 1)
	if len(got) != 1 || got[0].State != 4 || got[0].Timeout != 120 || got[0].Flags&ipvssync.FlagInactive == 0 {
		t.Errorf("after FIN exported %v, want FIN_WAIT, 120 s, inactive", got)
	}
	if n := a.counter(SyncExported); n != 3 {
		t.Errorf("sync_exported = %d, want 3", n)
	}
	// UDP: the 3rd datagram; ICMP never (no entry is synced for it).
	for i := 0; i < 3; i++ {
		a.send(60, udpTo(5353, 53))
	}
	got = c.wait(t, 1)
	if len(got) != 1 || got[0].Protocol != ipvssync.ProtoUDP || got[0].State != ipvssync.UDPNormal || got[0].Timeout != 300 {
		t.Errorf("UDP exported %v, want one UDP record, state 0, timeout 300", got)
	}
}

// viaWire sends conns through the kernel's wire format, as a master's
// Sender and a backup's Receiver would: encoded into one v1 message and
// decoded, the backup's flag masking included.
func viaWire(t *testing.T, conns []ipvssync.Conn) []ipvssync.Conn {
	t.Helper()
	msg, err := ipvssync.AppendMessage(nil, 1, conns)
	if err != nil {
		t.Fatalf("encode %v: %v", conns, err)
	}
	var d ipvssync.Decoder
	r := d.Decode(msg)
	if r.Dropped != ipvssync.ReasonNone || len(r.Conns) != len(conns) {
		t.Fatalf("decode: %d of %d records, dropped %v, skipped %v", len(r.Conns), len(conns), r.Dropped, r.Skipped)
	}
	return slices.Clone(r.Conns)
}

func connEqual(a, b ipvssync.Conn) bool {
	return a.Protocol == b.Protocol && a.Client == b.Client && a.Virtual == b.Virtual && a.Dest == b.Dest &&
		a.Fwmark == b.Fwmark && a.Flags == b.Flags && a.State == b.State && a.Timeout == b.Timeout && a.Local == b.Local
}

// establish opens a TCP connection from cl:sport on dr and sends it
// three input packets, the kernel's threshold to sync it.
func establish(dr *director, now int64, cl netip.Addr, sport uint16) [][]byte {
	return dr.send(now, clientTCP(cl, sport, syn), clientTCP(cl, sport, ack), clientTCP(cl, sport, ack|packet.TCPFlagPSH))
}

// The failover case: a connection made on master A is exported; backup B
// installs the records and forwards the flow's next ACK, its first frame
// there, to the same real server, where B's own scheduler (rr) would
// have sent a new connection elsewhere, and without scheduling.
func TestSyncFailoverDR(t *testing.T) {
	a := syncDirector(t, modes.Route, false, 1)
	b := syncDirector(t, modes.Route, false, 1)
	c := a.export(t)
	sent := establish(a, 1, testClient, 40000)
	if len(sent) != 3 {
		t.Fatalf("A sent %d frames, want 3", len(sent))
	}
	rs := rsIndex(sent[0])
	recs := viaWire(t, c.wait(t, 1))
	if n := b.d.InstallSynced(recs); n != len(recs) {
		t.Fatalf("InstallSynced = %d, want %d", n, len(recs))
	}
	b.poll(1)
	if n := b.counter(SyncInstalled); n != 1 {
		t.Fatalf("sync_installed = %d, want 1 (counters %v)", n, b.ws[0].stats.local)
	}
	dst := b.dests[rs]
	if dst.ActiveConns() != 1 || dst.InactConns() != 0 {
		t.Errorf("B's real server has %d active, %d inactive; want 1, 0", dst.ActiveConns(), dst.InactConns())
	}
	// B's rr now gives another client's new connection the same server
	// as A did ...
	other := netip.MustParseAddr("198.18.0.77")
	if s := b.send(2, clientTCP(other, 1000, syn)); len(s) != 1 || rsIndex(s[0]) != rs {
		t.Fatalf("B's first new connection went to %d, want %d", rsIndex(s[0]), rs)
	}
	// ... so the next one would go elsewhere; the synced flow's ACK
	// keeps its server.
	s := b.send(3, clientTCP(testClient, 40000, ack))
	if len(s) != 1 || rsIndex(s[0]) != rs {
		t.Fatalf("B sent the synced flow's ACK to %v, want real server %d (counters %v)", s, rs, b.ws[0].stats.local)
	}
	if b.counter(ConnNew) != 1 || b.counter(NotNew) != 0 {
		t.Errorf("B scheduled %d connections, %d not new; want 1 (the other client's), 0", b.counter(ConnNew), b.counter(NotNew))
	}
	if s := b.send(4, clientTCP(other, 1001, syn)); len(s) != 1 || rsIndex(s[0]) == rs {
		t.Errorf("B's rr sent the next new connection to %d too: the test proves nothing", rs)
	}
	// The same record again updates the entry.
	b.d.InstallSynced(recs)
	b.poll(5)
	if n := b.counter(SyncUpdated); n != 1 {
		t.Errorf("sync_updated = %d, want 1", n)
	}
}

// State changes and timeouts travel: the FIN_WAIT record moves B's entry
// to FIN_WAIT and inactive at its destination, with FIN_WAIT's timeout
// (120 s): it is there at 119 s and gone at 121 s.
func TestSyncStateAndTimeout(t *testing.T) {
	a := syncDirector(t, modes.Route, false, 1)
	b := syncDirector(t, modes.Route, false, 1)
	c := a.export(t)
	sent := establish(a, 1, testClient, 40000)
	rs := rsIndex(sent[0])
	b.d.InstallSynced(viaWire(t, c.wait(t, 1)))
	b.poll(10)
	a.send(20, clientTCP(testClient, 40000, ack|packet.TCPFlagFIN))
	fin := viaWire(t, c.wait(t, 1))
	now := int64(100 * time.Second)
	b.d.InstallSynced(fin)
	b.poll(now)
	k := conntrack.KeyFrom(conntrack.ProtoTCP, netip.AddrPortFrom(testClient, 40000), netip.AddrPortFrom(testVIP, 80))
	e, _ := b.ws[0].ct.Lookup(&k, now)
	if e == nil || e.State() != conntrack.StateFinWait || e.Expires() != now+int64(120*time.Second) {
		t.Fatalf("B's entry %v, want FIN_WAIT expiring at now+120s", e)
	}
	if d := b.dests[rs]; d.ActiveConns() != 0 || d.InactConns() != 1 {
		t.Errorf("B's real server has %d active, %d inactive; want 0, 1", d.ActiveConns(), d.InactConns())
	}
	if e, _ := b.ws[0].ct.Lookup(&k, now+int64(119*time.Second)); e == nil {
		t.Error("B's entry gone before its timeout")
	}
	b.ws[0].ct.Expire(now+int64(121*time.Second), 1<<20)
	if e, _ := b.ws[0].ct.Lookup(&k, now+int64(121*time.Second)); e != nil {
		t.Error("B's entry outlived its timeout")
	}
	if d := b.dests[rs]; d.ActiveConns() != 0 || d.InactConns() != 0 {
		t.Errorf("after expiry B's real server has %d active, %d inactive; want 0, 0", d.ActiveConns(), d.InactConns())
	}
}

// Persistence: the template is sent with its connection, and on B a new
// connection of the same client follows it, although B's rr would have
// chosen another server.
func TestSyncTemplate(t *testing.T) {
	a := syncDirector(t, modes.Route, true, 1)
	b := syncDirector(t, modes.Route, true, 1)
	c := a.export(t)
	sent := establish(a, 1, testClient, 40000)
	rs := rsIndex(sent[0])
	recs := c.wait(t, 2)
	var tmpl *ipvssync.Conn
	for i := range recs {
		if recs[i].Template() {
			tmpl = &recs[i]
		}
	}
	want := ipvssync.Conn{Protocol: ipvssync.ProtoTCP, Client: netip.AddrPortFrom(testClient, 0),
		Virtual: netip.AddrPortFrom(testVIP, 80), Dest: netip.AddrPortFrom(syncRS[rs], 8080),
		Flags: ipvssync.FlagDRoute | ipvssync.FlagTemplate, State: ipvssync.TemplateAssured, Timeout: 300}
	if tmpl == nil || !connEqual(*tmpl, want) {
		t.Fatalf("exported %v, want a template %v", recs, &want)
	}
	b.d.InstallSynced(viaWire(t, recs))
	b.poll(2)
	if n := b.counter(SyncInstalled); n != 2 {
		t.Fatalf("sync_installed = %d, want 2", n)
	}
	if p := b.dests[rs].PersistConns(); p != 1 {
		t.Errorf("B's real server has %d templates, want 1", p)
	}
	// Another client takes B's rr's first pick, the synced client's server.
	other := netip.MustParseAddr("198.18.0.77")
	if s := b.send(3, clientTCP(other, 1000, syn)); len(s) != 1 || rsIndex(s[0]) != rs {
		t.Fatalf("B's first new connection went to %d, want %d", rsIndex(s[0]), rs)
	}
	// The synced client's new connection follows its template.
	if s := b.send(4, clientTCP(testClient, 41000, syn)); len(s) != 1 || rsIndex(s[0]) != rs {
		t.Errorf("B sent the synced client's new connection to %v, want its template's %d", s, rs)
	}
	// Without the template rr would not have: a third client moves on.
	if s := b.send(5, clientTCP(netip.MustParseAddr("198.18.0.78"), 1000, syn)); len(s) != 1 || rsIndex(s[0]) == rs {
		t.Errorf("B's rr gave %d again: the test proves nothing", rs)
	}
}

// FULLNAT: the connection keeps its local address and port on B, which
// reserves the port in its pool (a new connection gets another); the
// client's next frame leaves B from that address and port, and the real
// server's reply to it finds the entry and goes back to the client by
// the hop the client's frame came from.
func TestSyncFullNAT(t *testing.T) {
	a := syncDirector(t, modes.FullNAT, false, 1)
	b := syncDirector(t, modes.FullNAT, false, 1)
	c := a.export(t)
	sent := establish(a, 1, testClient, 40000)
	if len(sent) != 3 {
		t.Fatalf("A sent %d frames, want 3", len(sent))
	}
	ip, tcp := decode(t, sent[0])
	lport := uint16(tcp.SrcPort)
	rs := syncRS[rsIndex(sent[0])]
	if got, _ := netip.AddrFromSlice(ip.SrcIP); got != testLaddr {
		t.Fatalf("A's FULLNAT source %v, want %v", got, testLaddr)
	}
	recs := c.wait(t, 1)
	if recs[0].Method() != ipvssync.MethodFullNAT || recs[0].Local != netip.AddrPortFrom(testLaddr, lport) {
		t.Fatalf("exported %v, want FULLNAT with local %v:%d", &recs[0], testLaddr, lport)
	}
	b.d.InstallSynced(viaWire(t, recs))
	b.poll(2)
	if n := b.counter(SyncInstalled); n != 1 {
		t.Fatalf("sync_installed = %d, want 1 (counters %v)", n, b.ws[0].stats.local)
	}
	if st := b.ws[0].pool.Stats(); st.Reserved != 1 {
		t.Errorf("B's pool %+v, want 1 reserved port", st)
	}
	// A reply before any client frame goes to the guessed hop (none
	// known yet); then the client's frame teaches B the hop.
	s := b.send(3, clientTCP(testClient, 40000, ack))
	if len(s) != 1 {
		t.Fatalf("B sent %d frames for the synced flow's ACK, want 1 (counters %v)", len(s), b.ws[0].stats.local)
	}
	ip, tcp = decode(t, s[0])
	if got, _ := netip.AddrFromSlice(ip.SrcIP); got != testLaddr || uint16(tcp.SrcPort) != lport {
		t.Errorf("B's FULLNAT source %v:%d, want %v:%d", got, tcp.SrcPort, testLaddr, lport)
	}
	if got, _ := netip.AddrFromSlice(ip.DstIP); got != rs {
		t.Errorf("B sent to %v, want %v", got, rs)
	}
	reply := pt.Packet{SrcMAC: realMACs[0][:], DstMAC: directorMAC[:], Src: rs, Dst: testLaddr,
		SrcPort: 8080, DstPort: lport, Flags: ack, Payload: []byte("ok")}.Frame()
	s = b.send(4, reply)
	if len(s) != 1 || b.counter(ReplyHit) != 1 {
		t.Fatalf("B sent %d frames for the reply, reply_hit %d; want 1, 1", len(s), b.counter(ReplyHit))
	}
	ip, tcp = decode(t, s[0])
	if got, _ := netip.AddrFromSlice(ip.DstIP); got != testClient || tcp.DstPort != 40000 || string(s[0][:6]) != string(clientMAC) {
		t.Errorf("B sent the reply to %v:%d via %x, want %v:40000 via %x", got, tcp.DstPort, s[0][:6], testClient, clientMAC)
	}
	// A new connection on B does not get the synced port.
	s = b.send(5, clientTCP(netip.MustParseAddr("198.18.0.77"), 1000, syn))
	if len(s) != 1 {
		t.Fatalf("B sent %d frames for a new connection, want 1", len(s))
	}
	if _, tcp = decode(t, s[0]); uint16(tcp.SrcPort) == lport {
		t.Errorf("B gave a new connection the synced local port %d", lport)
	}
	// Expiry gives the reserved port back.
	b.ws[0].ct.Expire(1<<62, 1<<20)
	if st := b.ws[0].pool.Stats(); st.Releases != 2 || st.BadReleases != 0 {
		t.Errorf("after expiry B's pool %+v, want 2 releases, none bad", st)
	}
}

// NAT: the reply key is indexed at once; a reply that comes before any
// client frame goes back by the hop of the latest synced flow's client
// frame.
func TestSyncNATReply(t *testing.T) {
	a := syncDirector(t, modes.Masq, false, 1)
	b := syncDirector(t, modes.Masq, false, 1)
	c := a.export(t)
	sent := establish(a, 1, testClient, 40000)
	establish(a, 1, testClient, 40001)
	rs := syncRS[rsIndex(sent[0])]
	b.d.InstallSynced(viaWire(t, c.wait(t, 2)))
	b.poll(2)
	if n := b.counter(SyncInstalled); n != 2 {
		t.Fatalf("sync_installed = %d, want 2", n)
	}
	if s := b.send(3, clientTCP(testClient, 40001, ack)); len(s) != 1 {
		t.Fatalf("B sent %d frames, want 1", len(s))
	}
	reply := pt.Packet{SrcMAC: realMACs[0][:], DstMAC: directorMAC[:], Src: rs, Dst: testClient,
		SrcPort: 8080, DstPort: 40000, Flags: ack, Payload: []byte("ok")}.Frame()
	s := b.send(4, reply)
	if len(s) != 1 || string(s[0][:6]) != string(clientMAC) {
		t.Fatalf("B sent %v for a reply of a flow it has seen no frame of, want one frame to %x", s, clientMAC)
	}
}

// Records that are malformed, for no service or real server of B's, or
// more than a worker's install ring holds, are counted and dropped, and
// change nothing.
func TestSyncInstallGarbage(t *testing.T) {
	b := syncDirector(t, modes.Route, false, 1)
	good := ipvssync.Conn{Protocol: ipvssync.ProtoTCP, Client: netip.AddrPortFrom(testClient, 40000),
		Virtual: netip.AddrPortFrom(testVIP, 80), Dest: netip.AddrPortFrom(syncRS[0], 8080),
		Flags: ipvssync.FlagDRoute, State: ipvssync.TCPEstablished, Timeout: 900}
	bad := func(f func(c *ipvssync.Conn)) ipvssync.Conn {
		c := good
		f(&c)
		return c
	}
	v6 := netip.MustParseAddr("2001:db8::1")
	garbage := []ipvssync.Conn{
		{},
		bad(func(c *ipvssync.Conn) { c.Client = netip.AddrPortFrom(v6, 1) }),                    // mixed families
		bad(func(c *ipvssync.Conn) { c.Protocol = ipvssync.ProtoSCTP }),                         // not served
		bad(func(c *ipvssync.Conn) { c.Protocol = 99 }),                                         // unknown
		bad(func(c *ipvssync.Conn) { c.State = ipvssync.TCPLast }),                              // state out of range
		bad(func(c *ipvssync.Conn) { c.Protocol, c.State = ipvssync.ProtoUDP, 1 }),              // UDP has one state
		bad(func(c *ipvssync.Conn) { c.PEData, c.PEName = []byte{1}, "sip" }),                   // no PE here
		bad(func(c *ipvssync.Conn) { c.Flags |= ipvssync.FlagTemplate }),                        // template with a client port
		bad(func(c *ipvssync.Conn) { c.Protocol = ipvssync.ProtoIP }),                           // IP without template
		bad(func(c *ipvssync.Conn) { c.Flags = ipvssync.FlagBypass }),                           // no such method
		bad(func(c *ipvssync.Conn) { c.Local = netip.AddrPortFrom(testLaddr, 0); c.Flags = 0 }), // FULLNAT port 0
		bad(func(c *ipvssync.Conn) { c.Flags |= ipvssync.FlagOnePacket }),
		bad(func(c *ipvssync.Conn) {
			c.Client = netip.AddrPortFrom(netip.MustParseAddr("fe80::1%eth0"), 1)
			c.Virtual, c.Dest = netip.AddrPortFrom(v6, 80), netip.AddrPortFrom(v6, 80)
		}),
	}
	noSvc := bad(func(c *ipvssync.Conn) { c.Virtual = netip.AddrPortFrom(testVIP, 81) })
	noDest := bad(func(c *ipvssync.Conn) { c.Dest = netip.AddrPortFrom(netip.MustParseAddr("198.18.0.99"), 8080) })
	if n := b.d.InstallSynced(append(slices.Clone(garbage), noSvc, noDest)); n != 2 {
		t.Errorf("InstallSynced queued %d, want 2 (no service, no dest)", n)
	}
	b.poll(1)
	if got := b.counter(SyncBad); got != uint64(len(garbage)) {
		t.Errorf("sync_bad_record = %d, want %d", got, len(garbage))
	}
	if b.counter(SyncNoService) != 1 || b.counter(SyncNoDest) != 1 {
		t.Errorf("sync_no_service %d, sync_no_dest %d; want 1, 1", b.counter(SyncNoService), b.counter(SyncNoDest))
	}
	if b.ws[0].ct.Len() != 0 || b.dests[0].InactConns()+b.dests[0].ActiveConns() != 0 {
		t.Errorf("B has %d entries after garbage, want 0", b.ws[0].ct.Len())
	}
	// More than the ring holds, between two batch edges.
	many := make([]ipvssync.Conn, installSlots+10)
	for i := range many {
		many[i] = good
		many[i].Client = netip.AddrPortFrom(testClient, uint16(1000+i))
	}
	if n := b.d.InstallSynced(many); n != installSlots {
		t.Errorf("InstallSynced queued %d, want %d", n, installSlots)
	}
	for i := 0; i < installSlots/installBudget+1; i++ {
		b.poll(int64(2 + i))
	}
	if b.counter(SyncInstallFull) != 10 || b.counter(SyncInstalled) != installSlots {
		t.Errorf("sync_install_full %d, sync_installed %d; want 10, %d", b.counter(SyncInstallFull), b.counter(SyncInstalled), installSlots)
	}
	// The counters are in the stats schema.
	found := map[string]bool{}
	st := Stats{Queues: []QueueStats{{}}}
	b.ws[0].publish()
	b.ws[0].stats.snapshot(&st.Queues[0])
	st.Samples(func(s Sample) bool {
		if s.Desc == descSyncDrops && s.Value > 0 {
			found[s.Labels[1]] = true
		}
		return true
	})
	for _, r := range []string{"bad_record", "no_service", "no_dest", "ring_full"} {
		if !found[r] {
			t.Errorf("xlb_sync_install_drops_total{reason=%q} missing or 0", r)
		}
	}
}

// With two workers, each record goes to the worker that owns its flow:
// for a persistent NAT service, the owner of the client.
func TestSyncInstallOwner(t *testing.T) {
	b := syncDirector(t, modes.Masq, true, 2)
	var recs []ipvssync.Conn
	for i := 0; i < 16; i++ {
		recs = append(recs, ipvssync.Conn{Protocol: ipvssync.ProtoTCP, Client: netip.AddrPortFrom(clientAddr(i), 40000),
			Virtual: netip.AddrPortFrom(testVIP, 80), Dest: netip.AddrPortFrom(syncRS[i%3], 8080),
			Flags: ipvssync.FlagMasq, State: ipvssync.TCPEstablished, Timeout: 900})
	}
	b.d.InstallSynced(recs)
	b.poll(1)
	own := b.ws[0].cfg.Load().own
	for i := range recs {
		cl := clientAddr(i).As16()
		o := own.client(&cl)
		k := conntrack.KeyFrom(conntrack.ProtoTCP, recs[i].Client, recs[i].Virtual)
		if e, _ := b.ws[o].ct.Lookup(&k, 1); e == nil {
			t.Errorf("client %v: no entry on its owner, worker %d", clientAddr(i), o)
		}
		if e, _ := b.ws[1-o].ct.Lookup(&k, 1); e != nil {
			t.Errorf("client %v: entry on worker %d, which does not own it", clientAddr(i), 1-o)
		}
	}
	// Frames of a synced flow received on either queue reach it.
	for q := range b.ks {
		b.ks[q].deliver(clientTCP(clientAddr(q), 40000, ack))
	}
	if s := b.poll(2); len(s) != 2 {
		t.Errorf("sent %d frames of synced flows received on both queues, want 2", len(s))
	}
}

// Forwarding with export on allocates nothing, the frames that export
// included.
func TestSyncExportAllocs(t *testing.T) {
	a := syncDirector(t, modes.Masq, true, 1)
	n := 0
	var mu sync.Mutex
	stop := a.d.StartSyncExport(func(c []ipvssync.Conn) { mu.Lock(); n += len(c); mu.Unlock() })
	defer stop()
	a.poll(0)
	a.send(1, clientTCP(testClient, 40000, syn), clientTCP(testClient, 40000, ack))
	f := clientTCP(testClient, 40000, ack)
	a.ks[0].keep = false // the fake kernel's copies of sent frames
	// 100 batches of 5 frames: 500 packets, 10 of them exported.
	if avg := pollAllocs(a.ws[0], a.ks[0], f, f, f, f, f); avg != 0 {
		t.Errorf("%.1f allocations per batch with export on, want 0", avg)
	}
	if a.counter(SyncExported) < 10 {
		t.Errorf("sync_exported = %d, want at least 10", a.counter(SyncExported))
	}
}

// BenchmarkSyncExport is the cost of syncing one connection (with its
// template): the worker's record into the ring, the drainer's conversion
// to ipvssync.Conn, and the backup's InstallSynced and install.
func BenchmarkSyncExport(b *testing.B) {
	a := syncDirector(b, modes.Masq, true, 1)
	bk := syncDirector(b, modes.Masq, true, 1)
	a.d.ipvsSync.on.Store(true)
	w := a.ws[0]
	w.sx.ring = newSyncRing[syncRec](exportSlots)
	w.poll(0)
	a.send(1, clientTCP(testClient, 40000, syn), clientTCP(testClient, 40000, ack))
	k := conntrack.KeyFrom(conntrack.ProtoTCP, netip.AddrPortFrom(testClient, 40000), netip.AddrPortFrom(testVIP, 80))
	e, _ := w.ct.Lookup(&k, 1)
	if e == nil {
		b.Fatal("no connection")
	}
	cfg := w.cfg.Load()
	b.Run("worker", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			w.export(e, 2)
			w.export(w.ct.Control(e), 2)
			w.sx.ring.publish()
			_, n := w.sx.ring.pending()
			w.sx.ring.release(n)
		}
	})
	w.export(e, 2)
	w.export(w.ct.Control(e), 2)
	w.sx.ring.publish()
	start, _ := w.sx.ring.pending()
	buf := make([]ipvssync.Conn, 2)
	b.Run("convert", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			buf[0] = connOf(w.sx.ring.at(start), cfg)
			buf[1] = connOf(w.sx.ring.at(start+1), cfg)
		}
	})
	b.Run("install", func(b *testing.B) {
		b.ReportAllocs()
		now := int64(2)
		for b.Loop() {
			bk.d.InstallSynced(buf)
			bk.ws[0].syncEdge(bk.ws[0].cfg.Load(), now)
			now++
		}
	})
}

// FuzzInstallSynced feeds records built from arbitrary bytes (protocol,
// flags, state, timeout, addresses near and far from the service's,
// FULLNAT local address, PE data) to a backup: it never panics, counts
// every record it does not queue, and its real servers' counts always
// match its entries.
func FuzzInstallSynced(f *testing.F) {
	f.Add([]byte{6, 3, 0, 1, 0, 0, 3, 132, 0, 0, 0, 0})
	f.Add([]byte{6, 0, 0x10, 1, 0, 1, 1, 44, 1, 1, 1, 0})
	f.Add([]byte{17, 0, 0, 0, 0, 0, 1, 44, 2, 0, 0, 2, 17, 3, 0, 0})
	f.Add([]byte{0, 3, 0x10, 1, 0, 1, 1, 44, 0, 0, 0, 0, 6, 0x81, 0, 11})
	f.Fuzz(func(t *testing.T, data []byte) {
		m := []modes.Method{modes.Route, modes.Masq, modes.FullNAT}[len(data)%3]
		b := syncDirector(t, m, len(data)%2 == 0, 1+len(data)%2)
		addr := func(x byte) netip.Addr {
			switch x % 4 {
			case 0:
				return testVIP
			case 1:
				return syncRS[int(x>>2)%3]
			case 2:
				return netip.AddrFrom4([4]byte{198, 18, 1, x})
			}
			return netip.AddrFrom16([16]byte{0x20, 0x01, 0x0d, 0xb8, 15: x})
		}
		var conns []ipvssync.Conn
		for ; len(data) >= 12; data = data[12:] {
			c := ipvssync.Conn{Protocol: data[0],
				Flags: ipvssync.Flags(data[1]) | ipvssync.Flags(data[2])<<8, State: uint16(data[3]),
				Timeout: uint32(data[4])<<8 | uint32(data[5]), Fwmark: uint32(data[11] >> 6)}
			ports := []uint16{0, 80, 53, 8080, uint16(data[7]) << 4}
			c.Client = netip.AddrPortFrom(addr(data[8]|2), ports[int(data[6])%5]+uint16(data[6]))
			c.Virtual = netip.AddrPortFrom(addr(data[9]&^3), ports[int(data[7])%5])
			c.Dest = netip.AddrPortFrom(addr(data[10]|1&^2), ports[int(data[10]>>4)%5])
			if data[11]&1 != 0 {
				c.Local = netip.AddrPortFrom(testLaddr, 1025+uint16(data[6])<<2)
			}
			if data[11]&2 != 0 {
				c.PEData = []byte{1}
			}
			if data[11]&4 != 0 {
				c.Client = netip.AddrPort{}
			}
			conns = append(conns, c)
		}
		n := b.d.InstallSynced(conns)
		for i := 0; i < 3; i++ {
			b.poll(int64(i + 1))
		}
		dropped := b.counter(SyncBad) + b.counter(SyncInstallFull)
		if uint64(n)+dropped != uint64(len(conns)) {
			t.Fatalf("queued %d, dropped %d of %d records", n, dropped, len(conns))
		}
		outcome := b.counter(SyncInstalled) + b.counter(SyncUpdated) + b.counter(SyncNoService) + b.counter(SyncNoDest) +
			b.counter(SyncNoLocal) + b.counter(SyncTableFull) + b.counter(SyncStale)
		if outcome+b.counter(SyncBad) < uint64(n) { // bad states found by the worker count in SyncBad too
			t.Fatalf("%d queued records, %d outcomes", n, outcome)
		}
		var active, inact, persist int32
		for _, d := range b.dests {
			active += d.ActiveConns()
			inact += d.InactConns()
			persist += d.PersistConns()
		}
		entries := 0
		for _, w := range b.ws {
			entries += w.ct.Len()
		}
		if active < 0 || inact < 0 || int(persist+active+inact) > entries {
			t.Fatalf("real servers count %d/%d/%d, tables hold %d entries", active, inact, persist, entries)
		}
	})
}

// BenchmarkSyncForward is the per-frame cost of an established flow's
// frames (batches of 32) with export off and on (1 frame in 50
// exported, with its template; the benchmark drains the ring, as the
// drainer would). The two directors' batches alternate and each is timed
// alone, so that a loaded machine's drift weighs on both alike: the
// difference of off-ns/frame and on-ns/frame is the export's cost.
func BenchmarkSyncForward(b *testing.B) {
	var drs [2]*director
	for i := range drs {
		dr := syncDirector(b, modes.Masq, true, 1)
		if i == 1 {
			dr.d.ipvsSync.on.Store(true)
			dr.ws[0].sx.ring = newSyncRing[syncRec](exportSlots)
		}
		dr.poll(0)
		dr.send(1, clientTCP(testClient, 40000, syn), clientTCP(testClient, 40000, ack))
		dr.ks[0].keep = false
		drs[i] = dr
	}
	f := clientTCP(testClient, 40000, ack)
	var spent [2]time.Duration
	b.ReportAllocs()
	now := int64(2)
	for b.Loop() {
		for i, dr := range drs {
			w, k := dr.ws[0], dr.ks[0]
			for range 32 {
				k.deliver(f)
			}
			t0 := time.Now()
			w.poll(now)
			spent[i] += time.Since(t0)
			if r := w.sx.ring; r != nil {
				_, n := r.pending()
				r.release(n)
			}
		}
		now++
	}
	b.ReportMetric(float64(spent[0].Nanoseconds())/float64(32*b.N), "off-ns/frame")
	b.ReportMetric(float64(spent[1].Nanoseconds())/float64(32*b.N), "on-ns/frame")
	if drs[1].counter(SyncExported) == 0 && b.N > 50 {
		b.Fatal("nothing exported")
	}
}

// A persistent firewall-mark service: the connection's record carries
// the mark and the template is the kernel's fwmark template (protocol
// IP, the mark as virtual address); on B the flow and a new connection
// of the client find them.
func TestSyncFWMark(t *testing.T) {
	mk := func() *director {
		dr := syncDirector(t, modes.Route, true, 1)
		marks, err := packet.NewMarkTable([]packet.MarkRule{{Mark: 7, Proto: packet.ProtoTCP,
			Prefix: netip.PrefixFrom(testVIP, 32), PortLo: 80, PortHi: 80}})
		if err != nil {
			t.Fatal(err)
		}
		cfg := dr.ws[0].cfg.Load()
		old := cfg.services[makeSvcKey(testServices[0])]
		spec := ipvs.Service{Key: ipvs.FWMarkKey(7, false), Sched: "rr", Netmask: 32, Persistent: true, Timeout: 200}
		rr, err := sched.New("rr", sched.DefaultOptions())
		if err != nil {
			t.Fatal(err)
		}
		var list []*sched.Dest
		for _, d := range dr.dests {
			list = append([]*sched.Dest{d}, list...)
		}
		rr.Update(list)
		pol, err := servicePolicy(&spec, rr, nil)
		if err != nil {
			t.Fatal(err)
		}
		nc := &workerConfig{services: map[svcKey]*workerService{}, marks: marks,
			fwmarks: map[fwmKey]*workerService{{7, false}: {id: 9, ct: pol, dests: old.dests}}}
		dr.ws[0].cfg.Store(nc)
		return dr
	}
	a, b := mk(), mk()
	c := a.export(t)
	sent := establish(a, 1, testClient, 40000)
	if len(sent) != 3 {
		t.Fatalf("A sent %d frames, want 3 (counters %v)", len(sent), a.ws[0].stats.local)
	}
	rs := rsIndex(sent[0])
	recs := viaWire(t, c.wait(t, 2))
	for _, r := range recs {
		if r.Fwmark != 7 {
			t.Errorf("record %v: fwmark %d, want 7", &r, r.Fwmark)
		}
		if r.Template() && (r.Protocol != ipvssync.ProtoIP || r.Virtual != netip.MustParseAddrPort("0.0.0.7:0") || r.Timeout != 200) {
			t.Errorf("template %v, want protocol IP, virtual 0.0.0.7:0, timeout 200", &r)
		}
	}
	b.d.InstallSynced(recs)
	b.poll(2)
	if n := b.counter(SyncInstalled); n != 2 {
		t.Fatalf("sync_installed = %d, want 2 (counters %v)", n, b.ws[0].stats.local)
	}
	if s := b.send(3, clientTCP(testClient, 40000, ack)); len(s) != 1 || rsIndex(s[0]) != rs {
		t.Errorf("B sent the synced flow's ACK to %v, want real server %d", s, rs)
	}
	b.send(4, clientTCP(netip.MustParseAddr("198.18.0.77"), 1000, syn)) // takes B's rr's first pick
	if s := b.send(5, clientTCP(testClient, 41000, syn)); len(s) != 1 || rsIndex(s[0]) != rs {
		t.Errorf("B sent the client's new connection to %v, want its template's %d", s, rs)
	}
}

// A running worker with no traffic installs what InstallSynced queues:
// its idle loop reaches the batch edge.
func TestSyncInstallIdleWorker(t *testing.T) {
	b := syncDirector(t, modes.Route, false, 1)
	w := b.ws[0]
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { w.run(ctx); close(done) }()
	defer func() { cancel(); <-done }()
	time.Sleep(10 * time.Millisecond)
	b.d.InstallSynced([]ipvssync.Conn{{Protocol: ipvssync.ProtoTCP, Client: netip.AddrPortFrom(testClient, 40000),
		Virtual: netip.AddrPortFrom(testVIP, 80), Dest: netip.AddrPortFrom(syncRS[1], 8080),
		Flags: ipvssync.FlagDRoute, State: ipvssync.TCPEstablished}})
	deadline := time.Now().Add(2 * time.Second)
	for w.stats.published[SyncInstalled].Load() != 1 {
		if time.Now().After(deadline) {
			t.Fatal("the idle worker did not install the record in 2 s")
		}
		time.Sleep(time.Millisecond)
	}
}

// A full export ring drops the record, counted, and forwarding goes on.
func TestSyncExportRingFull(t *testing.T) {
	a := syncDirector(t, modes.Route, false, 1)
	w := a.ws[0]
	w.sx.ring = newSyncRing[syncRec](4) // never drained
	a.d.ipvsSync.on.Store(true)
	a.poll(0)
	for i := 0; i < 6; i++ {
		if s := establish(a, 1, testClient, uint16(40000+i)); len(s) != 3 {
			t.Fatalf("connection %d: sent %d frames, want 3", i, len(s))
		}
	}
	if a.counter(SyncExported) != 4 || a.counter(SyncExportDropped) != 2 {
		t.Errorf("sync_exported %d, sync_export_dropped %d; want 4, 2", a.counter(SyncExported), a.counter(SyncExportDropped))
	}
	start, n := w.sx.ring.pending()
	if n != 4 || w.sx.ring.at(start).cport != 40000 || w.sx.ring.at(start+3).cport != 40003 {
		t.Errorf("ring holds %d records from port %d, want the first 4 connections", n, w.sx.ring.at(start).cport)
	}
}

// IPv6 records, a fwmark template and a FULLNAT connection with an IPv4
// local address, go from an export record to ipvssync.Conn, through the
// wire, and back to the key, state and addresses a backup installs.
func TestSyncRecordIPv6(t *testing.T) {
	a6 := func(s string) [16]byte { return netip.MustParseAddr(s).As16() }
	cases := []struct {
		name string
		rec  syncRec
		want installRec
	}{
		{"fwmark template", syncRec{client: a6("2001:db8::2"), virtual: markAddr(7, false), dest: a6("2001:db8::11"),
			proto: 0, state: conntrack.StateTemplateAssured, fwd: conntrack.FwdRoute, flags: recTemplate, left: 30},
			installRec{key: conntrack.Key{Src: a6("2001:db8::2"), Dst: markAddr(7, false)}, dest: a6("2001:db8::11"),
				fwmark: 7, template: true, state: conntrack.StateTemplateAssured, timeout: 30 * time.Second}},
		{"fullnat", syncRec{client: a6("2001:db8::2"), virtual: a6("2001:db8::100"), dest: a6("2001:db8::11"),
			local: a6("198.18.0.200"), cport: 40000, vport: 80, dport: 8080, lport: 2000,
			proto: conntrack.ProtoTCP, state: conntrack.StateSynRecv, fwd: conntrack.FwdFullNAT, flags: recInactive, timeout: 30},
			installRec{key: conntrack.Key{Src: a6("2001:db8::2"), Dst: a6("2001:db8::100"), SrcPort: 40000, DstPort: 80, Proto: conntrack.ProtoTCP},
				dest: a6("2001:db8::11"), dport: 8080, local: a6("198.18.0.200"), lport: 2000, fullnat: true, inactive: true,
				state: conntrack.StateSynRecv, timeout: 30 * time.Second}},
		{"udp", syncRec{client: a6("2001:db8::2"), virtual: a6("2001:db8::100"), dest: a6("2001:db8::11"), cport: 5353, vport: 53, dport: 53,
			proto: conntrack.ProtoUDP, state: conntrack.StateUDP, fwd: conntrack.FwdTunnel, timeout: 300},
			installRec{key: conntrack.Key{Src: a6("2001:db8::2"), Dst: a6("2001:db8::100"), SrcPort: 5353, DstPort: 53, Proto: conntrack.ProtoUDP},
				dest: a6("2001:db8::11"), dport: 53, state: conntrack.StateUDP, timeout: 300 * time.Second}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c := connOf(&tc.rec, nil)
			got := viaWire(t, []ipvssync.Conn{c})
			var r installRec
			if !recordOf(&got[0], &r) {
				t.Fatalf("recordOf(%v) refused it", &got[0])
			}
			if r != tc.want {
				t.Errorf("recordOf(%v) = %+v, want %+v", &got[0], r, tc.want)
			}
		})
	}
}

// Records queued just before a synced flow's frame arrive in time: the
// worker installs them at the start of the poll that takes the frame.
func TestSyncInstallBeforeFrames(t *testing.T) {
	b := syncDirector(t, modes.Route, false, 1)
	b.d.InstallSynced([]ipvssync.Conn{{Protocol: ipvssync.ProtoTCP, Client: netip.AddrPortFrom(testClient, 40000),
		Virtual: netip.AddrPortFrom(testVIP, 80), Dest: netip.AddrPortFrom(syncRS[2], 8080),
		Flags: ipvssync.FlagDRoute, State: ipvssync.TCPEstablished}})
	b.ks[0].deliver(clientTCP(testClient, 40000, ack))
	b.ws[0].poll(1)
	if s := b.ks[0].sent; len(s) != 1 || rsIndex(s[0]) != 2 {
		t.Errorf("sent %d frames (counters %v), want the ACK to real server 2", len(s), b.ws[0].stats.local)
	}
}

// With two workers, the drainer takes both rings: every connection of
// clients spread over both queues is exported once, with its template.
func TestSyncExportTwoWorkers(t *testing.T) {
	a := syncDirector(t, modes.Masq, true, 2)
	c := a.export(t)
	for i := 0; i < 8; i++ {
		k := a.ks[i%2]
		cl := clientAddr(i)
		for _, f := range []uint8{syn, ack, ack | packet.TCPFlagPSH} {
			k.deliver(clientTCP(cl, 40000, f))
			a.poll(int64(i + 1))
		}
	}
	a.poll(9) // a worker polls again after a batch: it publishes then
	recs := c.wait(t, 16)
	seen := map[netip.AddrPort]int{}
	for _, r := range recs {
		if !r.Template() {
			seen[r.Client]++
		}
	}
	if len(recs) != 16 || len(seen) != 8 {
		t.Errorf("exported %d records for %d clients, want 16 for 8: %v", len(recs), len(seen), recs)
	}
	if a.ws[0].stats.local[SyncExported] == 0 || a.ws[1].stats.local[SyncExported] == 0 {
		t.Errorf("exported %d and %d by the workers, want both some", a.ws[0].stats.local[SyncExported], a.ws[1].stats.local[SyncExported])
	}
	c.quiet(t)
}

// An export with nothing to send still calls the sink, with no records,
// once a second; stop waits for the drainer and may be called twice.
func TestSyncExportTick(t *testing.T) {
	a := syncDirector(t, modes.Route, false, 1)
	empty := make(chan struct{}, 1)
	stop := a.d.StartSyncExport(func(c []ipvssync.Conn) {
		if len(c) == 0 {
			select {
			case empty <- struct{}{}:
			default:
			}
		}
	})
	select {
	case <-empty:
	case <-time.After(3 * drainTick):
		t.Error("no call of the sink in 3 s")
	}
	stop()
	stop()
	if a.d.ipvsSync.on.Load() {
		t.Error("export still on after stop")
	}
	// Close stops an export the caller left running.
	a.d.StartSyncExport(func([]ipvssync.Conn) {})
	a.d.stopSyncExport()
	if a.d.ipvsSync.on.Load() || a.d.ipvsSync.cur != nil {
		t.Error("export still on after Close's stop")
	}
}
