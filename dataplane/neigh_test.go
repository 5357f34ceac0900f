//go:build linux

package dataplane

import (
	"bytes"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/xlbproject/xlb/bpf"
	"github.com/xlbproject/xlb/conntrack"
	"github.com/xlbproject/xlb/internal/ipvs"
	"github.com/xlbproject/xlb/modes"
	"github.com/xlbproject/xlb/sched"
	"github.com/xlbproject/xlb/testenv"
)

// fakeNet is the kernel's route and neighbour tables in memory. A probe
// of a hop listed in arp resolves it at once, as a live host answering
// ARP would.
type fakeNet struct {
	mu        sync.Mutex
	routes    []fakeRoute
	neigh     map[neighKey]neighbour
	arp       map[netip.Addr][6]byte // hosts that answer a probe
	probes    []netip.Addr
	routeGets int
	dumps     int
	events    chan<- netEvent
}

type fakeRoute struct {
	p       netip.Prefix
	gw      netip.Addr // invalid: on-link
	ifindex int
}

const fakeIfindex = 2

var errUnreachable = errors.New("network is unreachable")

func newFakeNet() *fakeNet {
	return &fakeNet{neigh: map[neighKey]neighbour{}, arp: map[netip.Addr][6]byte{}}
}

func (f *fakeNet) routeGet(dst netip.Addr) (route, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.routeGets++
	best := -1
	for i, r := range f.routes {
		if r.p.Contains(dst) && (best < 0 || r.p.Bits() > f.routes[best].p.Bits()) {
			best = i
		}
	}
	if best < 0 {
		return route{}, errUnreachable
	}
	r := f.routes[best]
	hop := dst
	if r.gw.IsValid() {
		hop = r.gw
	}
	return route{hop: hop, ifindex: r.ifindex}, nil
}

func (f *fakeNet) neighbours() ([]neighbour, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.dumps++
	var out []neighbour
	for _, n := range f.neigh {
		out = append(out, n)
	}
	return out, nil
}

func (f *fakeNet) probe(hop netip.Addr, ifindex int) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.probes = append(f.probes, hop)
	k := neighKey{ifindex, hop}
	if mac, ok := f.arp[hop]; ok {
		f.neigh[k] = neighbour{ifindex: ifindex, addr: hop, mac: mac, hasMAC: true, state: nudReachable}
	} else if _, ok := f.neigh[k]; !ok {
		f.neigh[k] = neighbour{ifindex: ifindex, addr: hop, state: nudIncomplete}
	}
	return nil
}

func (f *fakeNet) subscribe(done <-chan struct{}, ev chan<- netEvent) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.events = ev
	return nil
}

func (f *fakeNet) close() error { return nil }

func (f *fakeNet) addRoute(p string, gw string, ifindex int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	r := fakeRoute{p: netip.MustParsePrefix(p), ifindex: ifindex}
	if gw != "" {
		r.gw = netip.MustParseAddr(gw)
	}
	f.routes = append(f.routes, r)
}

func (f *fakeNet) setNeigh(a netip.Addr, mac [6]byte, state int) neighbour {
	f.mu.Lock()
	defer f.mu.Unlock()
	n := neighbour{ifindex: fakeIfindex, addr: a, mac: mac, hasMAC: true, state: state}
	f.neigh[neighKey{fakeIfindex, a}] = n
	return n
}

func (f *fakeNet) counts() (routeGets, dumps, probes int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.routeGets, f.dumps, len(f.probes)
}

// resolverEnv is a resolver on a fake kernel, with a forwarding table
// for destinations 1..n at 10.0.x.y and a fake clock.
type resolverEnv struct {
	net   *fakeNet
	r     *resolver
	fwd   []destFwd
	dests []destRef
	gen   uint64
	now   time.Time
	logs  *bytes.Buffer
}

func newResolverEnv(t testing.TB, n int) *resolverEnv {
	t.Helper()
	e := &resolverEnv{net: newFakeNet(), fwd: make([]destFwd, n+1), logs: &bytes.Buffer{},
		now: time.Unix(1000, 0), gen: 1}
	log := slog.New(slog.NewTextHandler(e.logs, nil))
	e.r = newResolver(e.net, log, fakeIfindex)
	e.r.polling = false // as with a netlink subscription
	e.r.now = func() time.Time { return e.now }
	for i := 1; i <= n; i++ {
		a := destAddr(i)
		e.fwd[i] = destFwd{method: modes.Route, addr: a, port: 80}
		e.dests = append(e.dests, destRef{uint32(i), a})
	}
	return e
}

func destAddr(i int) netip.Addr { return netip.AddrFrom4([4]byte{10, 0, byte(i >> 8), byte(i)}) }

func mac(i int) [6]byte { return [6]byte{2, 0, 0, 0, byte(i >> 8), byte(i)} }

// apply publishes changes into the env's forwarding table, as
// Dataplane.publishFwd does.
func (e *resolverEnv) apply(changes []fwdChange) {
	for _, c := range changes {
		if e.fwd[c.id].addr == c.addr {
			e.fwd[c.id].mac, e.fwd[c.id].macOK, e.fwd[c.id].slot = c.mac, c.ok, c.slot
		}
	}
}

// round runs a resolver round; the destinations are passed again only
// when their generation changed (newResolverEnv, changeDests).
func (e *resolverEnv) round() []fwdChange {
	var dests []destRef
	if e.r.gen != e.gen {
		dests = e.dests
	}
	c := e.r.round(dests, e.gen, e.fwd)
	e.apply(c)
	return c
}

func (e *resolverEnv) event(ev netEvent) (bool, []fwdChange) {
	c, round := e.r.event(ev, e.fwd)
	e.apply(c)
	return round, c
}

// An unroutable destination is a normal state: it is reported with its
// reason, logged once when it goes and once when it comes back, and the
// others are resolved meanwhile.
func TestResolverUnroutable(t *testing.T) {
	e := newResolverEnv(t, 2)
	e.net.addRoute("10.0.0.1/32", "", fakeIfindex) // only dest 1 is routable
	e.net.setNeigh(destAddr(1), mac(1), nudReachable)
	e.round()
	if !e.fwd[1].macOK || e.fwd[1].mac != mac(1) {
		t.Errorf("routable destination: fwd %+v, want resolved to %x", e.fwd[1], mac(1))
	}
	if e.fwd[2].macOK {
		t.Errorf("unroutable destination resolved: %+v", e.fwd[2])
	}
	st := e.r.snapshot()
	if st.Destinations != 2 || st.Unresolved != 1 || len(st.List) != 1 || st.List[0].Addr != destAddr(2) ||
		!strings.Contains(st.List[0].Reason, "network is unreachable") {
		t.Errorf("stats = %+v, want 2 destinations, 10.0.0.2 unresolved for want of a route", st)
	}
	for range 5 {
		e.now = e.now.Add(time.Second)
		e.round()
	}
	if n := strings.Count(e.logs.String(), "destination unresolved"); n != 1 {
		t.Errorf("logged the unroutable destination %d times in 6 rounds, want once:\n%s", n, e.logs)
	}
	// Its route comes back (the kernel says so) and its neighbour answers.
	e.net.addRoute("10.0.0.0/24", "", fakeIfindex)
	e.net.arp[destAddr(2)] = mac(2)
	if round, _ := e.event(netEvent{kind: evRoute}); !round {
		t.Fatal("a route event asks for no round")
	}
	e.now = e.now.Add(time.Second)
	e.round() // route known now: probed; the fake answers at once
	e.round()
	if !e.fwd[2].macOK || e.fwd[2].mac != mac(2) {
		t.Errorf("after its route returned: fwd %+v, want resolved", e.fwd[2])
	}
	if n := strings.Count(e.logs.String(), "destination resolved"); n != 2 {
		t.Errorf("logged the first resolution and the recovery %d times, want twice:\n%s", n, e.logs)
	}
	if n := strings.Count(e.logs.String(), "msg=\"destination resolved\" dest="+destAddr(2).String()); n != 1 {
		t.Errorf("logged the recovery %d times, want once:\n%s", n, e.logs)
	}
	if st := e.r.snapshot(); st.Unresolved != 0 || len(st.List) != 0 {
		t.Errorf("after recovery: stats %+v, want none unresolved", st)
	}
}

// One neighbour dump per round whatever the number of destinations, and
// route lookups only for routes not known yet or after a route change.
func TestResolverQueriesPerRound(t *testing.T) {
	const n = 5000
	e := newResolverEnv(t, n)
	e.net.addRoute("10.0.0.0/16", "", fakeIfindex)
	for i := 1; i <= n; i++ {
		e.net.arp[destAddr(i)] = mac(i)
	}
	e.round()
	e.round()
	gets, dumps, probes := e.net.counts()
	if gets != n || dumps != 2 || probes != n {
		t.Errorf("two rounds over %d destinations: %d route lookups, %d dumps, %d probes; want %d, 2, %d",
			n, gets, dumps, probes, n, n)
	}
	for i := 1; i <= n; i++ {
		if !e.fwd[i].macOK {
			t.Fatalf("destination %d unresolved after two rounds", i)
		}
	}
	// Nothing changed: a round publishes nothing and asks no route.
	if c := e.round(); len(c) != 0 {
		t.Errorf("a round with nothing changed published %d entries", len(c))
	}
	if gets2, _, _ := e.net.counts(); gets2 != n {
		t.Errorf("a third round looked up %d routes, want 0", gets2-n)
	}
	// A route change: every route is looked up again, once.
	e.event(netEvent{kind: evRoute})
	e.round()
	if gets3, _, _ := e.net.counts(); gets3 != 2*n {
		t.Errorf("after a route event: %d route lookups, want %d", gets3-n, n)
	}
	// A route for 10.0.0.0/30 changes only the lookups of 10.0.0.1-3.
	e.event(netEvent{kind: evRoute, prefix: netip.MustParsePrefix("10.0.0.0/30")})
	e.round()
	if gets4, _, _ := e.net.counts(); gets4 != 2*n+3 {
		t.Errorf("after a route event for a /30: %d route lookups, want 3", gets4-2*n)
	}
	// The served interface goes down (IPv4 drops its routes silently):
	// the routes out of it are looked up again, and it is counted once.
	e.event(netEvent{kind: evLink, link: fakeIfindex, up: true})
	e.event(netEvent{kind: evLink, link: fakeIfindex, up: false})
	e.event(netEvent{kind: evLink, link: fakeIfindex, up: false})
	e.round()
	if gets5, _, _ := e.net.counts(); gets5 != 3*n+3 {
		t.Errorf("after the link went down: %d route lookups, want %d", gets5-(2*n+3), n)
	}
	if st := e.r.snapshot(); st.LinkDowns != 1 {
		t.Errorf("LinkDowns = %d, want 1", st.LinkDowns)
	}
	// Without a subscription every round looks every route up.
	e.r.polling = true
	e.round()
	if gets6, _, _ := e.net.counts(); gets6 != 4*n+3 {
		t.Errorf("polling: %d route lookups in a round, want %d", gets6-(3*n+3), n)
	}
}

// Between full rounds a round costs the dump: it finds a neighbour change
// no event announced, and looks at no other destination.
func TestResolverIncrementalRound(t *testing.T) {
	const n = 5000
	e := newResolverEnv(t, n)
	e.net.addRoute("10.0.0.0/16", "", fakeIfindex)
	for i := 1; i <= n; i++ {
		e.net.setNeigh(destAddr(i), mac(i), nudReachable)
	}
	e.round()
	gets, _, probes := e.net.counts()
	e.net.setNeigh(destAddr(7), mac(70), nudReachable) // no event
	e.now = e.now.Add(time.Second)
	changes := e.round()
	if len(changes) != 1 || e.fwd[7].mac != mac(70) {
		t.Errorf("changes %+v, fwd[7] %+v: want the dump's new MAC for destination 7", changes, e.fwd[7])
	}
	if gets2, _, probes2 := e.net.counts(); gets2 != gets || probes2 != probes {
		t.Errorf("an incremental round made %d route lookups and %d probes, want 0", gets2-gets, probes2-probes)
	}
	// New destinations: the next round is full.
	e.fwd = append(e.fwd, destFwd{method: modes.Route, addr: destAddr(n + 1), port: 80})
	e.dests = append(e.dests, destRef{n + 1, destAddr(n + 1)})
	e.gen++
	e.net.arp[destAddr(n+1)] = mac(n + 1)
	e.round()
	e.round()
	if !e.fwd[n+1].macOK {
		t.Errorf("a destination added later: %+v, want resolved", e.fwd[n+1])
	}
}

// A real server's MAC changes (a gratuitous ARP updates the kernel's
// entry): the event is followed at once and counted.
func TestResolverMACChange(t *testing.T) {
	e := newResolverEnv(t, 2)
	e.net.addRoute("10.0.0.0/24", "", fakeIfindex)
	e.net.setNeigh(destAddr(1), mac(1), nudReachable)
	e.net.setNeigh(destAddr(2), mac(2), nudReachable)
	e.round()
	n := e.net.setNeigh(destAddr(1), mac(99), nudStale)
	_, changes := e.event(netEvent{kind: evNeigh, neigh: n})
	if len(changes) != 1 || e.fwd[1].mac != mac(99) || !e.fwd[1].macOK {
		t.Errorf("after the MAC change: changes %+v, fwd %+v; want dest 1 at %x", changes, e.fwd[1], mac(99))
	}
	if st := e.r.snapshot(); st.MACChanges != 1 {
		t.Errorf("MACChanges = %d, want 1", st.MACChanges)
	}
	// The entry is deleted (ip neigh flush): unresolved at once, probed.
	_, _, before := e.net.counts()
	e.net.mu.Lock()
	delete(e.net.neigh, neighKey{fakeIfindex, destAddr(2)})
	e.net.mu.Unlock()
	e.event(netEvent{kind: evNeighDel, neigh: neighbour{ifindex: fakeIfindex, addr: destAddr(2)}})
	if e.fwd[2].macOK {
		t.Errorf("deleted neighbour still resolved: %+v", e.fwd[2])
	}
	if _, _, after := e.net.counts(); after != before+1 {
		t.Errorf("deleted neighbour probed %d times, want 1", after-before)
	}
}

// A gateway's MAC serves every destination behind it; a destination
// whose route names another interface is reported, not sent to.
func TestResolverGatewayAndInterface(t *testing.T) {
	e := newResolverEnv(t, 3)
	e.net.addRoute("10.0.0.0/24", "192.0.2.1", fakeIfindex)
	e.net.addRoute("10.0.0.3/32", "", 7)
	e.net.setNeigh(netip.MustParseAddr("192.0.2.1"), mac(50), nudReachable)
	e.round()
	if e.fwd[1].mac != mac(50) || e.fwd[2].mac != mac(50) || !e.fwd[1].macOK || !e.fwd[2].macOK {
		t.Errorf("behind the gateway: %+v %+v, want its MAC %x", e.fwd[1], e.fwd[2], mac(50))
	}
	if e.fwd[3].macOK {
		t.Errorf("destination routed out of interface 7 resolved: %+v", e.fwd[3])
	}
	if st := e.r.snapshot(); st.Unresolved != 1 || !strings.Contains(st.List[0].Reason, "interface 7") {
		t.Errorf("stats %+v, want 10.0.0.3 unresolved naming interface 7", st)
	}
}

// Probes back off for a neighbour that does not answer; a worker's want
// probes at once.
func TestResolverProbeBackoff(t *testing.T) {
	e := newResolverEnv(t, 1)
	e.net.addRoute("10.0.0.0/24", "", fakeIfindex)
	var at []int
	for s := 0; s < 40; s++ {
		_, _, before := e.net.counts()
		e.round()
		if _, _, after := e.net.counts(); after > before {
			at = append(at, s)
		}
		e.now = e.now.Add(time.Second)
	}
	want := []int{0, 1, 3, 7, 15, 31}
	if fmt.Sprint(at) != fmt.Sprint(want) {
		t.Errorf("probed at seconds %v, want %v", at, want)
	}
	_, _, before := e.net.counts()
	e.r.want([]netip.Addr{destAddr(1)})
	e.r.want([]netip.Addr{destAddr(1)}) // again at once: paced
	if _, _, after := e.net.counts(); after != before+1 {
		t.Errorf("want probed %d times, want 1", after-before)
	}
	// While frames wait, the kernel giving up (FAILED) is met by a new
	// probe, however far the backoff has gone.
	e.now = e.now.Add(300 * time.Millisecond)
	_, _, before = e.net.counts()
	e.event(netEvent{kind: evNeigh, neigh: neighbour{ifindex: fakeIfindex, addr: destAddr(1), state: nudFailed}})
	if _, _, after := e.net.counts(); after != before+1 {
		t.Errorf("FAILED while wanted: probed %d times, want 1", after-before)
	}
	e.now = e.now.Add(2 * time.Second) // no longer wanted: back to the backoff
	_, _, before = e.net.counts()
	e.event(netEvent{kind: evNeigh, neigh: neighbour{ifindex: fakeIfindex, addr: destAddr(1), state: nudFailed}})
	if _, _, after := e.net.counts(); after != before {
		t.Errorf("FAILED, not wanted, within the backoff: probed %d times, want 0", after-before)
	}
	if !strings.Contains(e.logs.String(), "neighbour incomplete") {
		t.Errorf("no log of the unanswered neighbour after 40 s:\n%s", e.logs)
	}
}

// Thousands of destinations losing their route at once make a bounded
// number of log lines.
func TestResolverLogBurst(t *testing.T) {
	e := newResolverEnv(t, 2000)
	e.round()
	if n := strings.Count(e.logs.String(), "\n"); n > logBurst+1 {
		t.Errorf("2000 unroutable destinations logged %d lines, want at most %d", n, logBurst+1)
	}
	if st := e.r.snapshot(); st.Unresolved != 2000 || len(st.List) != unresolvedListed {
		t.Errorf("stats: %d unresolved, %d listed; want 2000, %d", st.Unresolved, len(st.List), unresolvedListed)
	}
}

// testDataplane is a Dataplane without an interface or running workers: the XDP
// maps (which need root), the control state and the fake kernel.
func testDataplane(t *testing.T, maxDests int) (*Dataplane, *fakeNet) {
	t.Helper()
	testenv.RequireRoot(t)
	objs, err := bpf.Load(bpf.Options{MaxReals: maxDests})
	if err != nil {
		t.Fatalf("load xdp objects: %v", err)
	}
	fn := newFakeNet()
	opts := DefaultOptions("test0")
	opts.MaxDests = maxDests
	opts.Logger = slog.New(slog.NewTextHandler(&bytes.Buffer{}, nil))
	d := &Dataplane{opts: opts, objs: objs, reg: sched.NewRegistry(maxDests),
		ctSettings: conntrack.NewSettings(conntrack.DefaultTimeouts()), state: newControlState(),
		applied: make(chan struct{}, 1), kern: fn, nudge: make(chan struct{}, 1),
		want: make([]atomic.Uint64, (maxDests+64)/64)}
	d.res = newResolver(fn, opts.Logger, fakeIfindex)
	d.workers = []*worker{{dp: d}} // a worker without a socket: Apply only stores its config
	empty := make([]destFwd, maxDests+1)
	d.fwd.Store(&empty)
	t.Cleanup(func() { d.Close() })
	return d, fn
}

func dpConfig(dests ...netip.Addr) *ipvs.Config {
	svc := ipvs.Service{Key: ipvs.ServiceKey{Proto: ipvs.TCP, Addr: testVIP, Port: 80}, Sched: "rr"}
	for _, a := range dests {
		svc.Dests = append(svc.Dests, ipvs.Dest{Addr: a, Port: 80, Weight: 1, Fwd: ipvs.FwdRoute})
	}
	return &ipvs.Config{Services: []ipvs.Service{svc}}
}

// Apply is all or nothing when the destination registry is full: it
// fails with the limit and leaves the running configuration alone.
func TestApplyTooManyDests(t *testing.T) {
	d, _ := testDataplane(t, 4)
	if err := d.Apply(dpConfig(destAddr(1), destAddr(2), destAddr(3))); err != nil {
		t.Fatal(err)
	}
	before := d.Config()
	err := d.Apply(dpConfig(destAddr(1), destAddr(2), destAddr(3), destAddr(4), destAddr(5)))
	if err == nil || !strings.Contains(err.Error(), "too many destinations (limit 4)") {
		t.Fatalf("Apply of 5 destinations with room for 4: %v, want \"too many destinations (limit 4)\"", err)
	}
	after := d.Config()
	if len(after.Services) != 1 || len(after.Services[0].Dests) != len(before.Services[0].Dests) {
		t.Errorf("refused Apply changed the configuration: %+v", after)
	}
	if n := len(d.state.services[before.Services[0].Key].dests); n != 3 {
		t.Errorf("refused Apply left %d destinations registered, want 3", n)
	}
	// Four fit.
	if err := d.Apply(dpConfig(destAddr(1), destAddr(2), destAddr(3), destAddr(4))); err != nil {
		t.Errorf("Apply of 4 destinations with room for 4: %v", err)
	}
}

// The dataplane keeps serving with an unroutable destination: a round
// resolves the others and lists it (this crashed with "assignment to
// entry in nil map"), and a later route brings it in.
func TestDataplaneUnroutableDest(t *testing.T) {
	d, fn := testDataplane(t, 16)
	fn.addRoute("10.0.0.1/32", "", fakeIfindex)
	fn.arp[destAddr(1)] = mac(1)
	fn.arp[destAddr(2)] = mac(2)
	if err := d.Apply(dpConfig(destAddr(1), destAddr(2))); err != nil {
		t.Fatal(err)
	}
	if n := d.WaitResolved(100 * time.Millisecond); n != 1 {
		t.Errorf("WaitResolved = %d unresolved, want 1", n)
	}
	st := d.Stats().Neighbours
	if st.Unresolved != 1 || st.List[0].Addr != destAddr(2) {
		t.Errorf("Stats().Neighbours = %+v, want 10.0.0.2 unresolved", st)
	}
	fwd := *d.fwd.Load()
	for id, f := range fwd {
		if f.addr == destAddr(1) && (!f.macOK || f.mac != mac(1)) {
			t.Errorf("routable destination %d: %+v, want resolved", id, f)
		}
	}
	fn.addRoute("10.0.0.2/32", "", fakeIfindex)
	d.resMu.Lock()
	d.res.event(netEvent{kind: evRoute}, fwd)
	d.resMu.Unlock()
	if n := d.WaitResolved(100 * time.Millisecond); n != 0 {
		t.Errorf("after the route came: %d unresolved, want 0", n)
	}
}

// BenchmarkResolverRound: one round over 50,000 resolved destinations on
// the fake kernel, full (after a change) and incremental (nothing
// changed): the resolver's own CPU per round, besides the kernel's dump.
func BenchmarkResolverRound(b *testing.B) {
	const n = 50000
	for _, full := range []bool{true, false} {
		b.Run(fmt.Sprintf("full=%v", full), func(b *testing.B) {
			e := newResolverEnv(b, n)
			e.net.addRoute("10.0.0.0/16", "", fakeIfindex)
			for i := 1; i <= n; i++ {
				e.net.setNeigh(destAddr(i), mac(i), nudReachable)
			}
			e.round()
			b.ReportAllocs()
			for b.Loop() {
				if full {
					e.gen++
				}
				e.round()
			}
		})
	}
}

// Events handled in one batch publish each destination's latest state,
// also when a later event undid an earlier one.
func TestResolverEventBatch(t *testing.T) {
	e := newResolverEnv(t, 1)
	e.net.addRoute("10.0.0.0/24", "", fakeIfindex)
	e.net.setNeigh(destAddr(1), mac(1), nudReachable)
	e.round()
	var changes []fwdChange
	for _, m := range [][6]byte{mac(2), mac(1)} { // changed, then back
		n := e.net.setNeigh(destAddr(1), m, nudReachable)
		c, _ := e.r.event(netEvent{kind: evNeigh, neigh: n}, e.fwd)
		changes = append(changes, c...)
	}
	e.r.latest(changes)
	e.apply(changes)
	if e.fwd[1].mac != mac(1) || !e.fwd[1].macOK {
		t.Errorf("after a change and its undoing in one batch: %+v, want %x", e.fwd[1], mac(1))
	}
}
