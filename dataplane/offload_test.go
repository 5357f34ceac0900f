//go:build linux

package dataplane

import (
	"bytes"
	"encoding/binary"
	"errors"
	"net"
	"net/netip"
	"os"
	"slices"
	"testing"
	"time"
	"unsafe"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"
	"github.com/cilium/ebpf/link"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/xlbproject/xlb/bpf"
	"github.com/xlbproject/xlb/conntrack"
	"github.com/xlbproject/xlb/internal/ipvs"
	"github.com/xlbproject/xlb/internal/packet"
	pt "github.com/xlbproject/xlb/internal/packet/packettest"
	"github.com/xlbproject/xlb/modes"
	"github.com/xlbproject/xlb/testenv"
)

// fakeFlows is the XDP program's flows map in memory.
type fakeFlows struct {
	m          map[bpf.FlowKey]bpf.Flow
	puts, dels int
	batches    int // PutFlows calls
	delBatches int // DeleteFlows calls
	looks      int // LookupFlow calls
	// delFail, if not 0, makes DeleteFlows fail at its keys[delFail-1]
	// with EINVAL, those before it deleted, as the kernel's batch stops
	// at a key it cannot delete; DeleteFlow still works.
	delFail int
	// max, if not 0, is the map's size: a batch stops at the first new
	// flow that does not fit (E2BIG), as the kernel's.
	max   int
	pos   map[*bpf.FlowCursor]int // WalkFlows
	all   []bpf.FlowKey
	walks int
}

func newFakeFlows() *fakeFlows { return &fakeFlows{m: map[bpf.FlowKey]bpf.Flow{}} }

func (f *fakeFlows) PutFlow(k *bpf.FlowKey, v *bpf.Flow) error {
	f.m[*k] = *v
	f.puts++
	return nil
}

func (f *fakeFlows) PutFlows(keys []bpf.FlowKey, vals []bpf.Flow) (int, error) {
	f.batches++
	for j := range keys {
		if _, ok := f.m[keys[j]]; !ok && f.max > 0 && len(f.m) >= f.max {
			return j, unix.E2BIG
		}
		f.PutFlow(&keys[j], &vals[j])
	}
	return len(keys), nil
}

func (f *fakeFlows) LookupFlow(k *bpf.FlowKey, v *bpf.Flow) error {
	f.looks++
	x, ok := f.m[*k]
	if !ok {
		return ebpf.ErrKeyNotExist
	}
	*v = x
	return nil
}

func (f *fakeFlows) DeleteFlow(k *bpf.FlowKey) error {
	delete(f.m, *k)
	f.dels++
	return nil
}

// DeleteFlows deletes keys, an absent one being no error, as
// bpf.Objects.DeleteFlows.
func (f *fakeFlows) DeleteFlows(keys []bpf.FlowKey) (int, error) {
	f.delBatches++
	for j := range keys {
		if f.delFail > 0 && j == f.delFail-1 {
			return j, unix.EINVAL
		}
		delete(f.m, keys[j])
		f.dels++
	}
	return len(keys), nil
}

// WalkFlows reads the map in key order, len(keys) at a time; the walk's
// position is kept by cursor. Keys installed or deleted meanwhile are
// seen or not by their place in the order, as in the kernel's buckets.
func (f *fakeFlows) WalkFlows(cur *bpf.FlowCursor, keys []bpf.FlowKey, vals []bpf.Flow) (int, bool, error) {
	if f.pos == nil {
		f.pos = map[*bpf.FlowCursor]int{}
	}
	all := f.all[:0] // reused: the walk itself must not allocate (TestOffloadAllocs)
	for k := range f.m {
		all = append(all, k)
	}
	f.all = all
	slices.SortFunc(all, func(a, b bpf.FlowKey) int {
		return bytes.Compare((*[unsafe.Sizeof(a)]byte)(unsafe.Pointer(&a))[:], (*[unsafe.Sizeof(b)]byte)(unsafe.Pointer(&b))[:])
	})
	p, n := f.pos[cur], 0
	for ; n < len(keys) && p < len(all); n, p = n+1, p+1 {
		keys[n], vals[n] = all[p], f.m[all[p]]
	}
	f.walks++
	if p >= len(all) {
		delete(f.pos, cur)
		return n, true, nil
	}
	f.pos[cur] = p
	return n, false, nil
}

// noWalk hides fakeFlows' WalkFlows: the worker folds with a lookup per
// flow.
type noWalk struct{ f *fakeFlows }

func (n noWalk) PutFlows(k []bpf.FlowKey, v []bpf.Flow) (int, error) { return n.f.PutFlows(k, v) }
func (n noWalk) LookupFlow(k *bpf.FlowKey, v *bpf.Flow) error        { return n.f.LookupFlow(k, v) }
func (n noWalk) DeleteFlow(k *bpf.FlowKey) error                     { return n.f.DeleteFlow(k) }
func (n noWalk) DeleteFlows(k []bpf.FlowKey) (int, error)            { return n.f.DeleteFlows(k) }

// forward is what the program does for n frames of flow k, of size
// bytes each, the last at ktime at.
func (f *fakeFlows) forward(t *testing.T, k bpf.FlowKey, n, size uint64, at int64) {
	t.Helper()
	v, ok := f.m[k]
	if !ok {
		t.Fatalf("flow %v not installed", k)
	}
	v.Packets += n
	v.Bytes += n * size
	v.LastSeen = uint64(at)
	f.m[k] = v
}

// kt0 is the fake program's clock at the workers' time 0.
const kt0 = int64(1e12)

// offloadWorker is testWorker with the flow offload on, over m.
func offloadWorker(t testing.TB, m flowTable) (*worker, *fakeKernel) {
	t.Helper()
	w, k := testWorker(t)
	withOffload(t, w, m)
	return w, k
}

// withOffload turns the offload on in w, a test worker, over m.
func withOffload(t testing.TB, w *worker, m flowTable) { withOffloadSized(t, w, m, 1<<12) }

// withOffloadSized is withOffload with a conntrack table of capacity
// entries.
func withOffloadSized(t testing.TB, w *worker, m flowTable, capacity int) {
	t.Helper()
	w.off = newOffloader(m, 64, time.Now())
	w.off.quiet = foldEveryNs // the tests below step by foldEveryNs; TestOffloadFoldPeriod: the quiet period
	w.off.kt0 = kt0
	w.off.after, w.off.afterUDP = 1, 1 // at the first frame: the tests below are about what happens then (TestOffloadAfter: the thresholds)
	copts := conntrack.DefaultOptions()
	copts.Capacity = capacity
	copts.Registry = w.dp.reg
	copts.Settings = w.dp.ctSettings
	copts.OffloadRefresh = func(e *conntrack.Entry, _ int64) { w.off.refresh(w, e) }
	copts.OffloadReleased = func(e *conntrack.Entry) { w.off.released(e) }
	ct, err := conntrack.New(copts)
	if err != nil {
		t.Fatal(err)
	}
	w.ct = ct
}

func flowKeyOf(frame []byte) bpf.FlowKey {
	var m packet.Meta
	packet.Parse(frame, &m)
	return bpf.MakeFlowKey(m.Src, m.SrcPort, m.Dst, m.DstPort, m.Proto)
}

// entryOf is the connection entry of a client's frame.
func entryOf(t testing.TB, w *worker, frame []byte, now int64) *conntrack.Entry {
	t.Helper()
	var m packet.Meta
	packet.Parse(frame, &m)
	k := conntrack.Key{Src: m.Src, Dst: m.Dst, SrcPort: m.SrcPort, DstPort: m.DstPort, Proto: m.Proto}
	e, _ := w.ct.Lookup(&k, now)
	return e
}

// A DR connection is installed once ESTABLISHED, not before; a UDP flow
// once forwarded; the installed rewrite is the worker's own.
func TestOffloadInstalls(t *testing.T) {
	ff := newFakeFlows()
	w, k := offloadWorker(t, ff)
	synF, ackF, udpF := tcpTo(40000, 80, syn), tcpTo(40000, 80, ack), udpTo(5353, 53)
	k.deliver(synF)
	w.poll(1)
	if len(ff.m) != 0 {
		t.Fatalf("after the SYN (SYN_RECV) %d flows installed, want 0", len(ff.m))
	}
	k.deliver(ackF)
	k.deliver(udpF)
	w.poll(2)
	if len(k.sent) != 3 {
		t.Fatalf("sent %d frames, want 3", len(k.sent))
	}
	for i, in := range [][]byte{ackF, udpF} {
		v, ok := ff.m[flowKeyOf(in)]
		if !ok {
			t.Fatalf("flow %d not installed (%d flows)", i, len(ff.m))
		}
		out := k.sent[i+1]
		e := entryOf(t, w, in, 2)
		if e == nil || !e.Offloaded() {
			t.Fatalf("flow %d: entry %v not marked offloaded", i, e)
		}
		want := bpf.Flow{DstMAC: [6]byte(out[0:6]), SrcMAC: directorMAC, MTU: 1500, Dest: e.DestID(), Op: bpf.FlowDR}
		if v != want {
			t.Errorf("flow %d installed as %+v, want %+v", i, v, want)
		}
	}
	if w.off.installed != 2 || ff.puts != 2 {
		t.Errorf("installed %d (puts %d), want 2", w.off.installed, ff.puts)
	}
}

// The program's counters and last-seen time reach the entry: its
// counters grow by what the program forwarded, and it does not expire
// while its frames keep coming; once they stop, it expires one timeout
// after the last and leaves the program.
func TestOffloadFoldAndExpiry(t *testing.T) {
	ff := newFakeFlows()
	w, k := offloadWorker(t, ff)
	ackF := tcpTo(40000, 80, ack)
	k.deliver(tcpTo(40000, 80, syn))
	w.poll(1)
	k.deliver(ackF)
	w.poll(2)
	fk := flowKeyOf(ackF)
	e := entryOf(t, w, ackF, 2)
	est := conntrack.DefaultTimeouts().TCP[conntrack.StateEstablished].Nanoseconds()
	if e.Expires() != 2+est {
		t.Fatalf("expires %d, want %d", e.Expires(), 2+est)
	}
	in0, _, b0, _ := e.Counters()
	// 10 frames forwarded by XDP, the last 100 s before the entry's timer.
	last := 2 + est - int64(100*time.Second)
	ff.forward(t, fk, 10, uint64(len(ackF)), kt0+last)
	now := last + 1
	w.off.step(w, now, -1)
	in1, _, b1, _ := e.Counters()
	if in1-in0 != 10 || b1-b0 != uint64(10*len(ackF)) {
		t.Errorf("folded %d packets %d bytes, want 10, %d", in1-in0, b1-b0, 10*len(ackF))
	}
	if e.Expires() != last+est {
		t.Errorf("after the fold expires %d, want last seen + ESTABLISHED timeout %d", e.Expires(), last+est)
	}
	// More frames later, not yet folded: the table finds the entry past
	// its timer and asks the offload first.
	last2 := last + est - 1
	ff.forward(t, fk, 5, uint64(len(ackF)), kt0+last2)
	w.ct.Expire(last+est, 1<<12)
	if e2 := entryOf(t, w, ackF, last+est); e2 != e || !e.Offloaded() {
		t.Fatalf("entry with recent offloaded frames expired (%v)", e2)
	}
	if in2, _, _, _ := e.Counters(); in2-in1 != 5 {
		t.Errorf("refresh folded %d packets, want 5", in2-in1)
	}
	// No more frames: one timeout after the last, the entry and its flow go.
	w.ct.Expire(last2+est, 1<<12)
	if e2 := entryOf(t, w, ackF, last2+est); e2 != nil {
		t.Errorf("entry survived a timeout without frames")
	}
	if len(ff.m) != 1 || len(w.off.flows) != 0 || w.off.dn != 1 {
		t.Errorf("after expiry %d flows in the program, %d offloaded, %d deletes queued; want 1, 0, 1 (the delete waits for the batch edge)", len(ff.m), len(w.off.flows), w.off.dn)
	}
	w.off.step(w, last2+est, 0)
	if len(ff.m) != 0 || w.off.dn != 0 || ff.delBatches != 1 {
		t.Errorf("after the batch edge %d flows in the program, %d deletes queued, %d batches; want 0, 0, 1", len(ff.m), w.off.dn, ff.delBatches)
	}
}

// A FIN or RST comes to the worker (the program never forwards them),
// whose state machine takes the connection out of ESTABLISHED, and out
// of the program, counters folded first.
func TestOffloadFINRemoves(t *testing.T) {
	for _, fl := range []uint8{packet.TCPFlagFIN | ack, packet.TCPFlagRST} {
		ff := newFakeFlows()
		w, k := offloadWorker(t, ff)
		ackF := tcpTo(40000, 80, ack)
		k.deliver(tcpTo(40000, 80, syn))
		k.deliver(ackF)
		w.poll(1)
		e := entryOf(t, w, ackF, 1)
		ff.forward(t, flowKeyOf(ackF), 3, 100, kt0+2)
		k.deliver(tcpTo(40000, 80, fl))
		w.poll(3)
		if len(ff.m) != 0 || e.Offloaded() || e.State() == conntrack.StateEstablished {
			t.Errorf("flags %#x: %d flows left, offloaded %v, state %v; want 0, false, not ESTABLISHED", fl, len(ff.m), e.Offloaded(), e.State())
		}
		if in, _, _, _ := e.Counters(); in != 3+3 {
			t.Errorf("flags %#x: entry counted %d packets in, want 6 (3 by the worker, 3 offloaded)", fl, in)
		}
	}
}

// A flow leaves the program when its destination leaves its service
// (its frames come back to the worker, which applies expire_nodest_conn
// or forwards them itself, as IPVS does) and when its next hop's MAC
// changes (the next frame installs it again with the new MAC).
func TestOffloadDestAndMACChanges(t *testing.T) {
	ff := newFakeFlows()
	w, k := offloadWorker(t, ff)
	ackF := tcpTo(40000, 80, ack)
	k.deliver(tcpTo(40000, 80, syn))
	k.deliver(ackF)
	w.poll(1)
	w.off.step(w, 1, -1)
	fk := flowKeyOf(ackF)
	e := entryOf(t, w, ackF, 1)
	id := e.DestID()

	fwd := append([]destFwd(nil), *w.dp.fwd.Load()...)
	fwd[id].mac = [6]byte{0x02, 0x18, 0, 0, 0, 0x99}
	w.dp.fwd.Store(&fwd)
	w.off.step(w, 2, -1)
	if _, ok := ff.m[fk]; ok || e.Offloaded() {
		t.Fatal("flow still offloaded after its next hop's MAC changed")
	}
	k.deliver(ackF)
	w.poll(3)
	if v, ok := ff.m[fk]; !ok || v.DstMAC != fwd[id].mac {
		t.Fatalf("flow reinstalled as %+v (%v), want the new MAC %x", v, ok, fwd[id].mac)
	}

	w.dp.reg.Get(id).SetAvailable(false)
	cfg := *w.cfg.Load()
	w.cfg.Store(&cfg) // Apply publishes a new configuration
	w.poll(4)         // adopt
	w.off.step(w, 4, -1)
	if _, ok := ff.m[fk]; ok || e.Offloaded() {
		t.Fatal("flow still offloaded after its destination left the service")
	}
	k.deliver(ackF)
	w.poll(5)
	if _, ok := ff.m[fk]; ok {
		t.Error("flow of an unavailable destination installed again")
	}
	if len(k.sent) != 4 {
		t.Errorf("sent %d frames, want 4 (expire_nodest_conn off: the worker forwards)", len(k.sent))
	}
}

// With the offload on, the per-packet path still allocates nothing, and
// neither do the batch-edge folds.
func TestOffloadAllocs(t *testing.T) {
	for _, walk := range []bool{true, false} {
		ff := newFakeFlows()
		var m flowTable = ff
		if !walk {
			m = noWalk{ff}
		}
		testOffloadAllocs(t, ff, m)
	}
}

func testOffloadAllocs(t *testing.T, ff *fakeFlows, m flowTable) {
	w, k := offloadWorker(t, m)
	k.keep = false
	var known [][]byte
	for i := 0; i < 32; i++ {
		k.deliver(tcpTo(uint16(20000+i), 80, syn))
		known = append(known, tcpTo(uint16(20000+i), 80, ack))
	}
	w.poll(1)
	for _, f := range known {
		k.deliver(f)
	}
	w.poll(2) // installs all 32
	if len(ff.m) != 32 {
		t.Fatalf("%d flows installed, want 32", len(ff.m))
	}
	now := int64(3)
	allocs := testing.AllocsPerRun(200, func() {
		// Frames still reaching the worker (queued before the install).
		for _, f := range known {
			k.deliver(f)
		}
		now += foldEveryNs
		w.poll(now)
		w.off.step(w, now, -1)
	})
	if allocs != 0 {
		t.Errorf("poll and fold of 32 offloaded flows (%T): %v allocations, want 0", m, allocs)
	}
	if _, walk := m.(flowWalker); walk && ff.walks == 0 {
		t.Error("the fold pass never walked the map")
	}

	// Installs, queued and written at the batch edge, and deletes: the
	// next hop's MAC flips at each round, so each edge takes every flow
	// out (check) and the next round's frames queue them again.
	fwdA := append([]destFwd(nil), *w.dp.fwd.Load()...)
	fwdB := append([]destFwd(nil), fwdA...)
	for i := range fwdB {
		fwdB[i].mac[5] ^= 0x40
	}
	installed, batches, round := w.off.installed, ff.batches, 0
	allocs = testing.AllocsPerRun(200, func() {
		for _, f := range known {
			k.deliver(f)
		}
		now++
		w.poll(now) // queues and flushes 32 installs
		if round++; round%2 == 0 {
			w.dp.fwd.Store(&fwdA)
		} else {
			w.dp.fwd.Store(&fwdB)
		}
		w.off.step(w, now, 0) // takes them out
	})
	if allocs != 0 {
		t.Errorf("queue, flush and delete of 32 flows (%T): %v allocations, want 0", m, allocs)
	}
	if n := w.off.installed - installed; n < 200*32 || ff.batches-batches < 200 {
		t.Errorf("%d installs in %d batches over 201 rounds, want 32 in one per round", n, ff.batches-batches)
	}
}

// udpFlows are n UDP flows the worker has seen once each (entries, not
// offloaded), and their first frames.
func udpFlows(t *testing.T, w *worker, k *fakeKernel, n int) ([]*conntrack.Entry, [][]byte) {
	t.Helper()
	after, afterUDP := w.off.after, w.off.afterUDP
	w.off.after, w.off.afterUDP = 1<<62, 1<<62 // none offloaded yet
	k.keep = false
	var es []*conntrack.Entry
	var frames [][]byte
	for i := 0; i < n; {
		for j := 0; j < maxBatch && i < n; i, j = i+1, j+1 {
			f := udpTo(uint16(10000+i), 53)
			frames = append(frames, f)
			k.deliver(f)
		}
		w.poll(1)
	}
	for _, f := range frames {
		e := entryOf(t, w, f, 1)
		if e == nil {
			t.Fatalf("no entry for %v", flowKeyOf(f))
		}
		es = append(es, e)
	}
	w.off.after, w.off.afterUDP = after, afterUDP
	return es, frames
}

// queuedFlows is an offloading worker on fake flows with n established
// UDP flows, each queued for its install (client to real server) and not
// yet written.
func queuedFlows(t *testing.T, n int) (*fakeFlows, *worker, []*conntrack.Entry, [][]byte) {
	t.Helper()
	ff, w, _, es, frames := queuedFlowsKernel(t, n)
	return ff, w, es, frames
}

// queuedFlowsKernel is queuedFlows with the worker's fake kernel.
func queuedFlowsKernel(t *testing.T, n int) (*fakeFlows, *worker, *fakeKernel, []*conntrack.Entry, [][]byte) {
	t.Helper()
	ff := newFakeFlows()
	w, k := offloadWorker(t, ff)
	es, frames := udpFlows(t, w, k, n)
	fwd := *w.dp.fwd.Load()
	for _, e := range es {
		w.offload(e, conntrack.DirInput, modes.Route, true, fwd)
	}
	return ff, w, k, es, frames
}

// Installs are queued during a batch and written at its edge, in one
// batch: nothing is in the map before the edge, every flow after it, and
// a flow counts as installed only then.
func TestOffloadQueueFlush(t *testing.T) {
	ff, w, es, frames := queuedFlows(t, 40)
	fwd := *w.dp.fwd.Load()
	for _, e := range es {
		w.offload(e, conntrack.DirInput, modes.Route, true, fwd) // queued once
	}
	if len(ff.m) != 0 || w.off.installed != 0 || w.off.keys != 0 || w.off.qlen != 40 {
		t.Fatalf("before the edge: %d flows in the map, %d installed, %d keys, %d queued; want 0, 0, 0, 40",
			len(ff.m), w.off.installed, w.off.keys, w.off.qlen)
	}
	batches := ff.batches
	w.off.step(w, 2, 0)
	if ff.batches != batches+1 || len(ff.m) != 40 || w.off.installed != 40 || w.off.keys != 40 || w.off.qlen != 0 || w.off.qn != 0 {
		t.Fatalf("after the edge: %d batches, %d flows in the map, %d installed, %d keys, %d queued; want 1, 40, 40, 40, 0",
			ff.batches-batches, len(ff.m), w.off.installed, w.off.keys, w.off.qlen)
	}
	for i, f := range frames {
		if !es[i].Offloaded() || w.off.byKey[flowKeyOf(f)]>>1 != w.off.at[es[i]] {
			t.Fatalf("flow %d: offloaded %v, byKey %d, at %d", i, es[i].Offloaded(), w.off.byKey[flowKeyOf(f)], w.off.at[es[i]])
		}
	}
	w.off.step(w, 3, 0)
	if ff.batches != batches+1 {
		t.Errorf("an empty queue made a batch")
	}
}

// A flow queued and then taken out before the batch edge (its entry
// removed, its connection reset, its destination gone) is never written,
// and the others queued with it are, each under its own key.
func TestOffloadQueueCancelled(t *testing.T) {
	ff, w, es, frames := queuedFlows(t, 6)
	w.ct.Remove(es[0]) // the first: moves the last flow into its place
	w.ct.Remove(es[3])
	w.off.step(w, 2, 0)
	if len(ff.m) != 4 || w.off.installed != 4 || w.off.keys != 4 || len(w.off.flows) != 4 || w.off.removed != 0 {
		t.Fatalf("%d flows in the map, %d installed, %d keys, %d offloaded, %d removed; want 4, 4, 4, 4, 0",
			len(ff.m), w.off.installed, w.off.keys, len(w.off.flows), w.off.removed)
	}
	for i, f := range frames {
		_, in := ff.m[flowKeyOf(f)]
		if want := i != 0 && i != 3; in != want {
			t.Errorf("flow %d in the map: %v, want %v", i, in, want)
		}
	}
	for _, x := range w.off.byKey {
		f := &w.off.flows[x>>1]
		if _, ok := ff.m[f.key[x&1]]; !ok || !f.on[x&1] || f.queued[x&1] != 0 {
			t.Errorf("flow %d: key %v in the map %v, on %v, queued %d", x>>1, f.key[x&1], ok, f.on[x&1], f.queued[x&1])
		}
	}

	// A TCP connection reset in the batch that queued it.
	ff2 := newFakeFlows()
	w2, k2 := offloadWorker(t, ff2)
	k2.deliver(tcpTo(40000, 80, syn))
	w2.poll(1)
	k2.deliver(tcpTo(40000, 80, ack))
	k2.deliver(tcpTo(40000, 80, packet.TCPFlagRST))
	w2.poll(2)
	if len(ff2.m) != 0 || ff2.puts != 0 || len(w2.off.flows) != 0 || w2.off.qlen != 0 {
		t.Errorf("reset in the batch that queued it: %d flows in the map (%d puts), %d offloaded, %d queued; want 0",
			len(ff2.m), ff2.puts, len(w2.off.flows), w2.off.qlen)
	}

	// A destination that left its service before the edge.
	ff3 := newFakeFlows()
	w3, k3 := offloadWorker(t, ff3)
	es3, _ := udpFlows(t, w3, k3, 2)
	w3.off.step(w3, 1, 0) // the configuration seen
	fwd3 := *w3.dp.fwd.Load()
	for _, e := range es3 {
		w3.offload(e, conntrack.DirInput, modes.Route, true, fwd3)
	}
	w3.dp.reg.Get(es3[0].DestID()).SetAvailable(false)
	cfg := *w3.cfg.Load()
	w3.seen = &cfg // as adopt does
	w3.off.step(w3, 2, 0)
	for i, e := range es3 {
		gone := e.DestID() == es3[0].DestID()
		if _, in := ff3.m[flowKeyOf(udpTo(uint16(10000+i), 53))]; in == gone || e.Offloaded() == gone {
			t.Errorf("flow %d (destination gone %v): in the map %v, offloaded %v", i, gone, in, e.Offloaded())
		}
	}
}

// A batch the map refuses part of (full): the flows it wrote are
// installed; the one refused and those after it are not, counted in
// errs, not offloaded, and installed by a later frame once there is room.
func TestOffloadQueuePartialFailure(t *testing.T) {
	ff := newFakeFlows()
	w, k := offloadWorker(t, ff)
	es, frames := udpFlows(t, w, k, 10)
	ff.max = 6
	fwd := *w.dp.fwd.Load()
	for _, e := range es {
		w.offload(e, conntrack.DirInput, modes.Route, true, fwd)
	}
	w.off.step(w, 2, 0)
	if len(ff.m) != 6 || w.off.installed != 6 || w.off.keys != 6 || w.off.errs != 4 || len(w.off.flows) != 6 || w.off.qlen != 0 {
		t.Fatalf("%d in the map, %d installed, %d keys, %d errs, %d offloaded, %d queued; want 6, 6, 6, 4, 6, 0",
			len(ff.m), w.off.installed, w.off.keys, w.off.errs, len(w.off.flows), w.off.qlen)
	}
	w.publish()
	if got := [2]uint64{w.stats.local[OffloadInstalled], w.stats.local[OffloadErrors]}; got != [2]uint64{6, 4} {
		t.Errorf("counters offload_installed, offload_errors = %v, want [6 4]", got)
	}
	for i, e := range es {
		_, in := ff.m[flowKeyOf(frames[i])]
		if want := i < 6; in != want || e.Offloaded() != want {
			t.Errorf("flow %d: in the map %v, offloaded %v; want %v", i, in, e.Offloaded(), want)
		}
	}
	// Room again: their next frames install them.
	ff.max = 0
	for _, f := range frames[6:] {
		k.deliver(f)
	}
	w.poll(3)
	if len(ff.m) != 10 || w.off.keys != 10 || w.off.installed != 10 {
		t.Errorf("after the next frames: %d in the map, %d keys, %d installed; want 10", len(ff.m), w.off.keys, w.off.installed)
	}
}

// The queue holds installQueue installs: one more is left to a later
// frame; the worker's share of the map (max) counts the queued ones.
func TestOffloadQueueCapacity(t *testing.T) {
	ff := newFakeFlows()
	w, k := offloadWorker(t, ff)
	w.off.max = 1 << 12
	const n = installQueue + 10
	es, _ := udpFlows(t, w, k, n)
	fwd := *w.dp.fwd.Load()
	for _, e := range es {
		w.offload(e, conntrack.DirInput, modes.Route, true, fwd)
	}
	if w.off.qn != installQueue || w.off.qlen != installQueue {
		t.Fatalf("queued %d (%d live), want %d", w.off.qn, w.off.qlen, installQueue)
	}
	for _, e := range es[installQueue:] {
		if e.Offloaded() {
			t.Fatal("a flow beyond the queue's capacity is marked offloaded")
		}
	}
	w.off.step(w, 2, 0)
	for _, e := range es[installQueue:] {
		w.offload(e, conntrack.DirInput, modes.Route, true, fwd)
	}
	w.off.step(w, 3, 0)
	if len(ff.m) != n || w.off.keys != n || ff.batches != 2 {
		t.Errorf("%d flows in the map, %d keys, in %d batches; want %d in 2", len(ff.m), w.off.keys, ff.batches, n)
	}

	// The share: installed and queued together.
	ff2 := newFakeFlows()
	w2, k2 := offloadWorker(t, ff2)
	w2.off.max = 5
	es2, _ := udpFlows(t, w2, k2, 8)
	fwd2 := *w2.dp.fwd.Load()
	for _, e := range es2[:3] {
		w2.offload(e, conntrack.DirInput, modes.Route, true, fwd2)
	}
	w2.off.step(w2, 2, 0)
	for _, e := range es2[3:] {
		w2.offload(e, conntrack.DirInput, modes.Route, true, fwd2)
	}
	w2.off.step(w2, 3, 0)
	if len(ff2.m) != 5 || w2.off.keys != 5 {
		t.Errorf("a share of 5: %d flows in the map, %d keys", len(ff2.m), w2.off.keys)
	}
}

// installedFlows is an offloading worker on fake flows with n UDP flows
// installed (client to real server), in the map.
func installedFlows(t *testing.T, n int) (*fakeFlows, *worker, *fakeKernel, []*conntrack.Entry, [][]byte) {
	t.Helper()
	ff, w, k, es, frames := queuedFlowsKernel(t, n)
	w.off.step(w, 2, 0)
	if len(ff.m) != n || w.off.keys != n {
		t.Fatalf("%d flows in the map, %d keys; want %d", len(ff.m), w.off.keys, n)
	}
	return ff, w, k, es, frames
}

// Deletes are queued and written at the batch edge, in one batch: the
// flows stay in the map (the program forwards their frames, counted in
// dest_stats) until the edge, and are gone after it.
func TestOffloadDeleteQueued(t *testing.T) {
	ff, w, _, es, frames := installedFlows(t, 10)
	for _, e := range es[:4] {
		w.ct.Remove(e)
	}
	if len(ff.m) != 10 || ff.dels != 0 || w.off.dn != 4 || w.off.keys != 6 || w.off.removed != 4 {
		t.Fatalf("before the edge: %d flows in the map, %d deleted, %d queued, %d keys, %d removed; want 10, 0, 4, 6, 4",
			len(ff.m), ff.dels, w.off.dn, w.off.keys, w.off.removed)
	}
	w.off.step(w, 3, 0)
	if len(ff.m) != 6 || ff.delBatches != 1 || ff.dels != 4 || w.off.dn != 0 || w.off.errs != 0 {
		t.Fatalf("after the edge: %d flows in the map, %d delete batches of %d, %d queued, %d errs; want 6, 1 of 4, 0, 0",
			len(ff.m), ff.delBatches, ff.dels, w.off.dn, w.off.errs)
	}
	for i, f := range frames {
		if _, in := ff.m[flowKeyOf(f)]; in != (i >= 4) {
			t.Errorf("flow %d in the map: %v, want %v", i, in, i >= 4)
		}
	}
	w.off.step(w, 4, 0)
	if ff.delBatches != 1 {
		t.Errorf("an empty delete queue made a batch")
	}

	// A reset connection, through a poll: its delete is written at the
	// edge of the batch that brought the RST.
	ff2 := newFakeFlows()
	w2, k2 := offloadWorker(t, ff2)
	k2.deliver(tcpTo(40000, 80, syn))
	k2.deliver(tcpTo(40000, 80, ack))
	w2.poll(1)
	k2.deliver(tcpTo(40000, 80, packet.TCPFlagRST))
	w2.poll(2)
	if len(ff2.m) != 0 || ff2.delBatches != 1 || w2.off.dn != 0 {
		t.Errorf("after the RST's batch: %d flows in the map, %d delete batches, %d queued; want 0, 1, 0", len(ff2.m), ff2.delBatches, w2.off.dn)
	}

	// A delete queued outside a batch (a sync record's eviction, before
	// it) is written by a poll that finds no frames: no step follows.
	w.ct.Remove(es[4])
	if w.poll(5); len(ff.m) != 5 || w.off.dn != 0 {
		t.Errorf("after a poll without frames: %d flows in the map, %d deletes queued; want 5, 0", len(ff.m), w.off.dn)
	}

	// A worker that stops writes its deletes before it returns.
	ff3, w3, _, _, _ := installedFlows(t, 5)
	w3.off.flushAll(w3)
	if len(ff3.m) != 0 || w3.off.dn != 0 || len(w3.off.flows) != 0 {
		t.Errorf("after flushAll: %d flows in the map, %d deletes queued, %d offloaded; want 0", len(ff3.m), w3.off.dn, len(w3.off.flows))
	}
}

// A flow taken out and installed again under the same key before the
// batch edge (a UDP entry removed and a new frame on the same tuple; a
// TCP connection reset and a new one) ends installed, for the new
// entry: the deletes are written before the installs.
func TestOffloadDeleteReinstall(t *testing.T) {
	ff, w, k, es, frames := installedFlows(t, 3)
	fk := flowKeyOf(frames[1])
	w.ct.Remove(es[1]) // the delete queued
	k.deliver(frames[1])
	w.poll(3) // a new entry, its install queued; both written at the edge
	e := entryOf(t, w, frames[1], 3)
	if e == nil || !e.Offloaded() || w.off.removed != 1 || w.off.installed != 4 {
		t.Fatalf("the new entry %v: offloaded %v; %d removed, %d installed; want true, 1, 4", e, e != nil && e.Offloaded(), w.off.removed, w.off.installed)
	}
	if _, in := ff.m[fk]; !in || len(ff.m) != 3 || w.off.keys != 3 || w.off.dn != 0 || w.off.qn != 0 {
		t.Fatalf("after the edge: flow in the map %v, %d flows in the map, %d keys, %d deletes and %d installs queued; want true, 3, 3, 0, 0",
			in, len(ff.m), w.off.keys, w.off.dn, w.off.qn)
	}
	if x, ok := w.off.byKey[fk]; !ok || w.off.flows[x>>1].e != e {
		t.Errorf("byKey of the reinstalled flow: %d, %v; want the new entry's", x, ok)
	}
	// The new flow is folded and deleted as any other.
	ff.forward(t, fk, 2, 100, kt0+4)
	w.ct.Remove(e)
	w.off.step(w, 5, 0)
	if _, in := ff.m[fk]; in || w.off.keys != 2 {
		t.Errorf("the reinstalled flow removed: in the map %v, %d keys; want false, 2", in, w.off.keys)
	}
}

// A full delete queue is written at once, in one batch, and the queue
// goes on: no delete is lost, however many flows go in a batch (a
// destination with thousands of flows removed).
func TestOffloadDeleteQueueFull(t *testing.T) {
	const n = deleteQueue + 10
	ff := newFakeFlows()
	w, k := offloadWorker(t, ff)
	w.off.max = 1 << 12
	es, _ := udpFlows(t, w, k, n)
	installAll(t, w, ff, es)
	for _, e := range es {
		w.ct.Remove(e)
	}
	if len(ff.m) != 10 || ff.delBatches != 1 || w.off.dn != 10 {
		t.Fatalf("before the edge: %d flows in the map, %d delete batches, %d queued; want 10, 1, 10", len(ff.m), ff.delBatches, w.off.dn)
	}
	w.off.step(w, 2, 0)
	if len(ff.m) != 0 || ff.delBatches != 2 || ff.dels != n || w.off.keys != 0 || w.off.errs != 0 {
		t.Errorf("after the edge: %d flows in the map, %d delete batches, %d deleted, %d keys, %d errs; want 0, 2, %d, 0, 0",
			len(ff.m), ff.delBatches, ff.dels, w.off.keys, w.off.errs, n)
	}
}

// A delete batch that fails part of the way: the keys it did not go
// through are deleted one at a time, and the failure is counted once.
func TestOffloadDeleteBatchFails(t *testing.T) {
	ff, w, _, es, _ := installedFlows(t, 8)
	ff.delFail = 3 // keys 0 and 1 deleted, then EINVAL
	for _, e := range es {
		w.ct.Remove(e)
	}
	w.off.step(w, 3, 0)
	if len(ff.m) != 0 || ff.dels != 8 || w.off.errs != 1 || w.off.dn != 0 {
		t.Errorf("%d flows left, %d deleted, %d errs, %d queued; want 0, 8, 1, 0", len(ff.m), ff.dels, w.off.errs, w.off.dn)
	}
}

// On the real map, a batch of deletes with a flow already gone (deleted
// by someone else) deletes the others: the kernel's batch stops at the
// absent key, DeleteFlows goes on after it; no error is counted.
func TestOffloadDeleteMissingKey(t *testing.T) {
	o := loadOffloadFlows(t, 1024)
	w, k := offloadWorker(t, o)
	es, frames := udpFlows(t, w, k, 12)
	fwd := *w.dp.fwd.Load()
	for _, e := range es {
		w.offload(e, conntrack.DirInput, modes.Route, true, fwd)
	}
	w.off.step(w, 2, 0)
	var v bpf.Flow
	for i, f := range frames {
		if fk := flowKeyOf(f); o.LookupFlow(&fk, &v) != nil {
			t.Fatalf("flow %d not installed", i)
		}
	}
	for _, i := range []int{0, 5, 6, 11} { // the first, two in a row, the last
		fk := flowKeyOf(frames[i])
		if err := o.DeleteFlow(&fk); err != nil {
			t.Fatal(err)
		}
	}
	for _, e := range es {
		w.ct.Remove(e)
	}
	w.off.step(w, 3, 0)
	for i, f := range frames {
		if fk := flowKeyOf(f); !errors.Is(o.LookupFlow(&fk, &v), ebpf.ErrKeyNotExist) {
			t.Errorf("flow %d still in the map", i)
		}
	}
	if w.off.errs != 0 || w.off.keys != 0 || w.off.removed != 12 {
		t.Errorf("%d errs, %d keys, %d removed; want 0, 0, 12", w.off.errs, w.off.keys, w.off.removed)
	}
}

// The fold pass is spread: a busy batch walks one chunk of the map; an
// idle worker walks on, idleFold flows at a time, until frames arrive or
// the pass ends, never the whole map of a large table at once.
func TestOffloadFoldChunks(t *testing.T) {
	ff := newFakeFlows()
	w, k := offloadWorker(t, ff)
	w.off.max = 1 << 12
	const n = 20 * walkChunk
	es, _ := udpFlows(t, w, k, n)
	installAll(t, w, ff, es)
	now := foldEveryNs + 2 // a pass is due
	walks := ff.walks
	w.off.step(w, now, foldBatch)
	if got := ff.walks - walks; got != 1 {
		t.Errorf("a busy batch walked %d chunks, want 1", got)
	}
	// Idle, with a frame waiting: one piece, then back to the frames.
	k.deliver(udpTo(40000, 53))
	walks = ff.walks
	w.idle(now)
	if got, want := ff.walks-walks, idleFold/walkChunk; got != want || w.off.pass >= now {
		t.Errorf("idle with a frame waiting walked %d chunks (pass done: %v), want %d", got, w.off.pass >= now, want)
	}
	w.poll(now)
	// Idle, nothing waiting: the rest of the pass.
	w.idle(now)
	if w.off.pass != now {
		t.Errorf("idle without frames left the pass unfinished")
	}
	walks = ff.walks
	w.idle(now)
	if ff.walks != walks {
		t.Errorf("idle walked again before the next pass was due")
	}
}

// A worker with few of its flows in a map that holds many (other
// workers') looks them up for a fold pass instead of walking the whole
// map, once a walk has measured the map; it walks again every
// lookupPasses passes; the folds are the same either way. A worker with
// no flows ends its passes at once, without a syscall.
func TestOffloadFoldFewFlows(t *testing.T) {
	ff, w, _, es, frames := installedFlows(t, 5)
	const others = 1000
	for i := range others {
		var a, b [16]byte
		a[10], a[11], a[12], a[13], a[14], a[15], b[15] = 0xff, 0xff, 10, 99, byte(i>>8), byte(i), 100
		ff.m[bpf.MakeFlowKey(a, 1024, b, 80, 17)] = bpf.Flow{Dest: 1}
	}
	now := int64(foldEveryNs)
	pass := func() {
		t.Helper()
		now += foldEveryNs
		w.off.idleStep(w, now)
		if w.off.pass != now {
			t.Fatalf("the pass at %d did not end", now)
		}
	}
	walks, looks := ff.walks, ff.looks
	pass() // the first walks: the map's size is not known yet
	if ff.walks == walks || ff.looks != looks || w.off.mapSeen != others+5 {
		t.Fatalf("first pass: %d walks, %d lookups, map seen %d; want walks, no lookup, %d", ff.walks-walks, ff.looks-looks, w.off.mapSeen, others+5)
	}
	for p := range lookupPasses {
		ff.forward(t, flowKeyOf(frames[2]), 3, 100, kt0+now)
		in, _, _, _ := es[2].Counters()
		walks, looks, folds := ff.walks, ff.looks, w.off.folds
		pass()
		if ff.walks != walks || ff.looks-looks != 5 || w.off.folds-folds != 5 {
			t.Fatalf("pass %d: %d walks, %d lookups, %d folds; want 0, 5, 5", p, ff.walks-walks, ff.looks-looks, w.off.folds-folds)
		}
		if in2, _, _, _ := es[2].Counters(); in2-in != 3 {
			t.Fatalf("pass %d folded %d packets of flow 2, want 3", p, in2-in)
		}
	}
	walks = ff.walks
	pass()
	if ff.walks == walks || w.off.looked != 0 {
		t.Errorf("after %d passes by lookups: no walk (looked %d)", lookupPasses, w.off.looked)
	}

	// No flow: no syscall.
	for _, e := range es {
		w.ct.Remove(e)
	}
	w.off.step(w, now, 0)
	walks, looks = ff.walks, ff.looks
	pass()
	pass()
	if ff.walks != walks || ff.looks != looks {
		t.Errorf("a worker with no flows: %d walks, %d lookups; want 0", ff.walks-walks, ff.looks-looks)
	}
}

// loadOffload loads the XDP program with the offload on and testWorker's
// services, closed at the end of the test.
func loadOffload(t testing.TB) *bpf.Objects {
	t.Helper()
	return loadOffloadFlows(t, 1024)
}

// loadOffloadFlows is loadOffload with a flows map of maxFlows entries.
func loadOffloadFlows(t testing.TB, maxFlows int) *bpf.Objects {
	t.Helper()
	o, err := bpf.Load(bpf.Options{MAC: directorMAC, Offload: true, MaxFlows: maxFlows, MaxReals: 16})
	if errors.Is(err, os.ErrPermission) || errors.Is(err, ebpf.ErrNotSupported) {
		testenv.SkipUnlessRequired(t, "cannot load BPF: %v", err)
	} else if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { o.Close() })
	for i, s := range testServices {
		if err := o.AddService(bpf.ServiceKey{Addr: s.Addr, Port: s.Port, Proto: uint8(s.Proto)}, uint32(i+1)); err != nil {
			t.Fatal(err)
		}
	}
	return o
}

// runXDP runs the program on frame and returns its action and the frame
// it leaves.
// addFULLNAT steers FULLNAT service k (ID id) to the workers in o, with
// its real server rs:8080's replies and local address la.
func addFULLNAT(tb testing.TB, o *bpf.Objects, k ipvs.ServiceKey, id uint32, rs, la netip.Addr) {
	tb.Helper()
	if err := o.AddService(bpf.ServiceKey{Addr: k.Addr, Port: k.Port, Proto: uint8(k.Proto)}, id); err != nil {
		tb.Fatal(err)
	}
	if err := o.AddReal(bpf.ServiceKey{Addr: rs, Port: 8080, Proto: uint8(k.Proto)}); err != nil {
		tb.Fatal(err)
	}
	if err := o.SetLocal(la, true); err != nil {
		tb.Fatal(err)
	}
}

// sameDestCounters holds destination id's counters with the offload on
// (on's own plus after, the program's) to off's, a worker's without.
func sameDestCounters(t *testing.T, on, off *worker, id uint32, after bpf.DestCounters) {
	t.Helper()
	var con, coff destCounters
	on.ds.publish()
	off.ds.publish()
	on.ds.read(id, &con)
	off.ds.read(id, &coff)
	con.add(&destCounters{InPkts: after.InPkts, InBytes: after.InBytes, OutPkts: after.OutPkts, OutBytes: after.OutBytes})
	if con != coff {
		t.Errorf("destination counters: offload %+v, userspace %+v", con, coff)
	}
}

// methodPair is two workers for method to rs (FULLNAT: from local
// address la) for service k: on with the offload on over o, its flows
// sent with XDP_TX under BPF_PROG_RUN, and off without.
func methodPair(t *testing.T, o *bpf.Objects, method modes.Method, k ipvs.ServiceKey, rs, la netip.Addr) (on *worker, kon *fakeKernel, off *worker, koff *fakeKernel) {
	t.Helper()
	on, kon = methodWorkerAt(t, method, k, rs, la)
	withOffload(t, on, o)
	on.off.kt0 = 0
	on.ports()
	on.ifs[0].index = 1 // BPF_PROG_RUN runs as if on loopback: XDP_TX
	off, koff = methodWorkerAt(t, method, k, rs, la)
	return on, kon, off, koff
}

// equivalentBothWays holds the program to a worker without offload for
// the data frames of a connection that on offloaded in both directions
// (NAT, FULLNAT): each frame through the program (BPF_PROG_RUN) and
// through off comes out byte for byte the same, and the program counts
// two packets each way for the connection's destination. It returns the
// destination, the program's counters for it after, and the frames.
func equivalentBothWays(t *testing.T, o *bpf.Objects, on, off *worker, koff *fakeKernel, in, out func(uint8, string) []byte, udp bool, now int64) (uint32, bpf.DestCounters, [][]byte) {
	t.Helper()
	if len(on.off.flows) != 1 || !on.off.flows[0].on[0] || !on.off.flows[0].on[1] {
		t.Fatalf("offloaded %+v, want one connection in both directions", on.off.flows)
	}
	id := on.off.flows[0].dest
	var before bpf.DestCounters
	if err := o.DestCounters(id, &before); err != nil {
		t.Fatal(err)
	}
	frames := [][]byte{in(ack|packet.TCPFlagPSH, "GET / HTTP/1.1\r\n\r\n"), out(ack|packet.TCPFlagPSH, "HTTP/1.1 200 OK\r\n\r\n"), in(ack, ""), out(ack, "x")}
	if udp {
		frames = [][]byte{in(0, "query"), out(0, "answer"), in(0, ""), out(0, "")}
	}
	for i, f := range frames {
		act, got := runXDP(t, o, f)
		koff.deliver(f)
		off.poll(now)
		want := koff.sent[len(koff.sent)-1]
		if act != xdpTX || !bytes.Equal(got, want) {
			t.Fatalf("frame %d: xdp action %d sent\n%x\nworker without offload sent\n%x", i, act, got, want)
		}
	}
	var after bpf.DestCounters
	if err := o.DestCounters(id, &after); err != nil {
		t.Fatal(err)
	}
	if after.InPkts-before.InPkts != 2 || after.OutPkts-before.OutPkts != 2 {
		t.Errorf("program counted %+v since %+v, want 2 packets each way", after, before)
	}
	return id, after, frames
}

func runXDP(t testing.TB, o *bpf.Objects, frame []byte) (uint32, []byte) {
	t.Helper()
	out := make([]byte, len(frame)+256)
	opts := ebpf.RunOptions{Data: frame, DataOut: out}
	act, err := o.Program().Run(&opts)
	if err != nil {
		t.Fatal(err)
	}
	return act, opts.DataOut
}

// XDP actions (enum xdp_action).
const (
	xdpPass     = 2
	xdpTX       = 3
	xdpRedirect = 4
)

// The offloaded and the userspace paths agree: for the same frames of
// the same connections, the XDP program, with the flows the worker's
// install code put in the real map, sends byte for byte what a worker
// without offload sends (modes' DR rewrite), and the destination's
// counters (worker + program) and the entry's (after the fold) are the
// same. Frames the program must not forward (SYN, FIN, RST, TTL 1, too
// big for the MTU) go on to the worker.
func TestOffloadXDPEquivalence(t *testing.T) {
	o := loadOffload(t)
	on, kon := offloadWorker(t, o)
	on.off.kt0 = 0 // the program's clock is not the test's
	// BPF_PROG_RUN runs the program as if on loopback (ifindex 1): the
	// flows leave where they came in, by XDP_TX.
	on.ports()
	on.ifs[0].index = 1
	off, koff := testWorker(t)

	type flow struct {
		name       string
		handshake  [][]byte
		data       []byte
		punts      [][]byte // frames of the flow the program leaves to the worker
		wantPuntTx int      // of which the worker sends at least (forwards or answers)
	}
	big := pt.Packet{SrcMAC: clientMAC, DstMAC: directorMAC[:], Src: testClient, Dst: testVIP,
		SrcPort: 40000, DstPort: 80, Flags: ack, Payload: make([]byte, 1500)}.Frame()
	ttl1 := pt.Packet{SrcMAC: clientMAC, DstMAC: directorMAC[:], Src: testClient, Dst: testVIP,
		SrcPort: 40000, DstPort: 80, Flags: ack, TTL: 1, Payload: []byte("xlb")}.Frame()
	udpBig := pt.Packet{SrcMAC: clientMAC, DstMAC: directorMAC[:], Src: testClient, Dst: testVIP,
		SrcPort: 5353, DstPort: 53, UDP: true, Payload: make([]byte, 1500)}.Frame()
	flows := []flow{
		{"tcp", [][]byte{tcpTo(40000, 80, syn), tcpTo(40000, 80, ack)},
			pt.Packet{SrcMAC: clientMAC, DstMAC: directorMAC[:], Src: testClient, Dst: testVIP,
				SrcPort: 40000, DstPort: 80, Flags: ack | packet.TCPFlagPSH, Payload: []byte("GET / HTTP/1.1\r\n\r\n")}.Frame(),
			[][]byte{big, ttl1, tcpTo(40000, 80, syn|ack), tcpTo(40000, 80, packet.TCPFlagRST)}, 3},
		{"udp", [][]byte{udpTo(5353, 53)}, udpTo(5353, 53), [][]byte{udpBig}, 1},
	}
	const n = 7 // data frames per flow
	for _, f := range flows {
		t.Run(f.name, func(t *testing.T) {
			now := int64(10)
			for _, h := range f.handshake {
				kon.deliver(h)
				koff.deliver(h)
				on.poll(now)
				off.poll(now)
				now++
			}
			if !bytes.Equal(kon.sent[len(kon.sent)-1], koff.sent[len(koff.sent)-1]) {
				t.Fatal("the two workers sent the handshake differently")
			}
			e := entryOf(t, on, f.data, now)
			if e == nil || !e.Offloaded() {
				t.Fatalf("flow not offloaded after its handshake (%v)", e)
			}
			id := e.DestID()
			var before bpf.DestCounters
			if err := o.DestCounters(id, &before); err != nil {
				t.Fatal(err)
			}
			for i := 0; i < n; i++ {
				act, got := runXDP(t, o, f.data)
				koff.deliver(f.data)
				off.poll(now)
				want := koff.sent[len(koff.sent)-1]
				if act != xdpTX || !bytes.Equal(got, want) {
					t.Fatalf("frame %d: xdp action %d sent\n%x\nworker without offload sent\n%x", i, act, got, want)
				}
			}
			sentOn := len(kon.sent)
			for _, p := range f.punts {
				if act, _ := runXDP(t, o, p); act != xdpPass { // no socket bound: the redirect's fallback
					t.Errorf("frame the worker must handle: xdp action %d, want %d (to the worker)", act, xdpPass)
				}
			}
			var after bpf.DestCounters
			if err := o.DestCounters(id, &after); err != nil {
				t.Fatal(err)
			}
			if dp, db := after.InPkts-before.InPkts, after.InBytes-before.InBytes; dp != n {
				t.Errorf("program counted %d packets (%d bytes) for the destination, want %d", dp, db, n)
			}
			// Counters: the worker's own plus the program's, against the
			// worker that saw every frame.
			var con, coff destCounters
			on.ds.publish()
			off.ds.publish()
			on.ds.read(id, &con)
			off.ds.read(id, &coff)
			con.InPkts += after.InPkts
			con.InBytes += after.InBytes
			if con != coff {
				t.Errorf("destination counters: offload %+v, userspace %+v", con, coff)
			}
			on.off.pass = -foldEveryNs // a fold pass is due
			on.off.step(on, now+foldEveryNs, -1)
			eoff := entryOf(t, off, f.data, now)
			if ip, op, ib, ob := e.Counters(); true {
				wp, wop, wb, wob := eoff.Counters()
				if ip != wp || op != wop || ib != wb || ob != wob {
					t.Errorf("entry counters after the fold: %d %d %d %d, userspace %d %d %d %d", ip, op, ib, ob, wp, wop, wb, wob)
				}
			}
			// The punted frames through the worker: handled as without
			// offload (forwarded, answered too big or time exceeded).
			sentOff := len(koff.sent)
			for _, p := range f.punts {
				kon.deliver(p)
				koff.deliver(p)
			}
			on.poll(now + foldEveryNs)
			off.poll(now + foldEveryNs)
			gotOn, gotOff := kon.sent[sentOn:], koff.sent[sentOff:]
			if len(gotOn) != len(gotOff) || len(gotOn) < f.wantPuntTx {
				t.Fatalf("worker sent %d of the punted frames, without offload %d, want at least %d", len(gotOn), len(gotOff), f.wantPuntTx)
			}
			for i := range gotOn {
				if !bytes.Equal(gotOn[i], gotOff[i]) {
					t.Errorf("punted frame %d: sent\n%x\nwithout offload\n%x", i, gotOn[i], gotOff[i])
				}
			}
		})
	}
	c, err := o.Counters()
	if err != nil {
		t.Fatal(err)
	}
	if c[bpf.RedirectOffload] != 2*n {
		t.Errorf("redirect_offload = %d, want %d", c[bpf.RedirectOffload], 2*n)
	}
}

// offloadPair is a worker with the offload on over the loaded program
// and a worker without, over the same services, fed the same frames.
type offloadPair struct {
	on, off   *worker
	kon, koff *fakeKernel
}

// step gives both workers frame f.
func (p *offloadPair) step(f []byte, now int64) {
	p.kon.deliver(f)
	p.koff.deliver(f)
	p.on.poll(now)
	p.off.poll(now)
}

// pairOn turns the offload on in on, over o, as BPF_PROG_RUN runs it.
func pairOn(t testing.TB, o *bpf.Objects, on, off *worker, kon, koff *fakeKernel) *offloadPair {
	t.Helper()
	withOffload(t, on, o)
	on.off.kt0 = 0
	on.ports()
	on.ifs[0].index = 1 // BPF_PROG_RUN's ingress: loopback, so XDP_TX
	return &offloadPair{on: on, off: off, kon: kon, koff: koff}
}

// FuzzOffloadXDP holds the XDP program to the worker on arbitrary frames
// of offloaded flows (mutations of their data frames): a DR, a TUN
// (ipip, IPv4 and IPv6) and a FULLNAT connection (both directions), each
// installed by its own worker in the one program. Whatever the program
// forwards itself, a worker without offload forwards too, byte for byte;
// everything else the program leaves to the worker.
func FuzzOffloadXDP(f *testing.F) {
	data := pt.Packet{SrcMAC: clientMAC, DstMAC: directorMAC[:], Src: testClient, Dst: testVIP,
		SrcPort: 40000, DstPort: 80, Flags: ack | packet.TCPFlagPSH, Payload: []byte("GET / HTTP/1.1\r\n\r\n")}.Frame()
	f.Add(data)
	f.Add(pt.Packet{SrcMAC: clientMAC, DstMAC: directorMAC[:], Src: testClient, Dst: testVIP,
		SrcPort: 40000, DstPort: 80, Flags: ack, TTL: 2, Options: true}.Frame())
	f.Add(data[:40])
	o := loadOffload(f)
	var pairs []*offloadPair
	on, kon := offloadWorker(f, o)
	on.ports()
	on.ifs[0].index = 1
	off, koff := testWorker(f)
	dr := &offloadPair{on: on, off: off, kon: kon, koff: koff}
	dr.step(tcpTo(40000, 80, syn), 1)
	dr.step(tcpTo(40000, 80, ack), 1)
	pairs = append(pairs, dr)
	var seeds [][]byte

	// TUN, IPv4 in IPv4 and IPv6 in IPv6, on VIPs of their own.
	rs4, dir4 := netip.MustParseAddr("198.18.0.11"), netip.MustParseAddr("198.18.0.254")
	for _, c := range []struct{ vip, client, rs, src netip.Addr }{
		{netip.MustParseAddr("198.18.0.101"), testClient, rs4, dir4},
		{testVIP6, testClient6, testRS6, testDirIP6},
	} {
		k := ipvs.ServiceKey{Proto: ipvs.TCP, Addr: c.vip, Port: 80}
		if err := o.AddService(bpf.ServiceKey{Addr: k.Addr, Port: k.Port, Proto: uint8(k.Proto)}, 9); err != nil {
			f.Fatal(err)
		}
		on, kon := tunWorker(f, k, c.rs, c.src)
		off, koff := tunWorker(f, k, c.rs, c.src)
		p := pairOn(f, o, on, off, kon, koff)
		pkt := func(flags uint8, payload string) []byte {
			return pt.Packet{SrcMAC: clientMAC, DstMAC: directorMAC[:], Src: c.client, Dst: c.vip,
				SrcPort: 40000, DstPort: 80, Flags: flags, TOS: 0x03, Payload: []byte(payload)}.Frame()
		}
		p.step(pkt(syn, ""), 1)
		p.step(pkt(ack, ""), 1)
		seeds = append(seeds, pkt(ack|packet.TCPFlagPSH, "GET / HTTP/1.1\r\n\r\n"))
		pairs = append(pairs, p)
	}

	// FULLNAT: client → VIP and real server → local address.
	fvip := netip.MustParseAddr("198.18.0.102")
	fk := ipvs.ServiceKey{Proto: ipvs.TCP, Addr: fvip, Port: 80}
	addFULLNAT(f, o, fk, 10, rs4, testLaddr)
	fon, fkon := methodWorkerAt(f, modes.FullNAT, fk, rs4, testLaddr)
	foff, fkoff := methodWorkerAt(f, modes.FullNAT, fk, rs4, testLaddr)
	fn := pairOn(f, o, fon, foff, fkon, fkoff)
	in := func(flags uint8, payload string) []byte {
		return pt.Packet{SrcMAC: clientMAC, DstMAC: directorMAC[:], Src: testClient, Dst: fvip,
			SrcPort: 40000, DstPort: 80, Flags: flags, Payload: []byte(payload)}.Frame()
	}
	fn.step(in(syn, ""), 1)
	var lport uint16
	if e := entryOf(f, fon, in(syn, ""), 1); e != nil {
		lport = e.LocalPort()
	}
	out := func(flags uint8, payload string) []byte {
		return pt.Packet{SrcMAC: realMACs[0][:], DstMAC: directorMAC[:], Src: rs4, Dst: testLaddr,
			SrcPort: 8080, DstPort: lport, Flags: flags, Payload: []byte(payload)}.Frame()
	}
	fn.step(out(syn|ack, ""), 1)
	fn.step(in(ack, ""), 1)
	fn.step(out(ack, "hello"), 1)
	seeds = append(seeds, in(ack|packet.TCPFlagPSH, "GET / HTTP/1.1\r\n\r\n"), out(ack|packet.TCPFlagPSH, "HTTP/1.1 200 OK\r\n\r\n"))
	pairs = append(pairs, fn)
	// The new paths' seeds are forwarded by the program, not left to
	// the worker: the fuzzer starts from frames that reach the rewrites.
	for _, s := range seeds {
		if act, _ := runXDP(f, o, s); act != xdpTX {
			f.Fatalf("seed %x: xdp action %d, want XDP_TX", s, act)
		}
		f.Add(s)
	}

	// Which pair's worker a frame the program forwarded goes to: the one
	// that installed its flow.
	owner := map[bpf.FlowKey]*offloadPair{}
	for _, p := range pairs {
		n := 0
		for _, fl := range p.on.off.flows {
			for dir := range fl.on {
				if fl.on[dir] {
					owner[fl.key[dir]] = p
					n++
				}
			}
		}
		if n == 0 {
			f.Fatalf("a worker offloaded nothing (counters %v)", p.on.stats.local)
		}
	}
	if len(owner) != 5 {
		f.Fatalf("%d flows offloaded, want 5 (DR, TUN 4 and 6, FULLNAT both ways)", len(owner))
	}
	f.Fuzz(func(t *testing.T, frame []byte) {
		if len(frame) > 1600 {
			frame = frame[:1600]
		}
		if len(frame) < 14 {
			return // BPF_PROG_RUN wants an Ethernet header
		}
		act, got := runXDP(t, o, bytes.Clone(frame))
		if act != xdpTX {
			return
		}
		p := owner[flowKeyOf(frame)]
		if p == nil {
			t.Fatalf("xdp forwarded %x, of no offloaded flow", frame)
		}
		sent := len(p.koff.sent)
		p.koff.deliver(frame)
		p.off.poll(2)
		if len(p.koff.sent) != sent+1 {
			t.Fatalf("xdp forwarded %x, the worker did not (counters %v)", frame, p.off.stats.local)
		}
		if want := p.koff.sent[sent]; !bytes.Equal(got, want) {
			t.Fatalf("xdp sent\n%x\nthe worker\n%x\nfor\n%x", got, want, frame)
		}
		p.koff.sent = p.koff.sent[:0]
	})
}

// The offload's map operations on the real map allocate nothing either:
// a batch of installs, a fold and a batch of deletes, from the worker,
// and the single delete it falls back to.
func TestOffloadMapAllocs(t *testing.T) {
	o := loadOffload(t)
	k := bpf.MakeFlowKey(testClient.As16(), 40000, testVIP.As16(), 80, 6)
	f := bpf.Flow{DstMAC: realMACs[0], SrcMAC: directorMAC, MTU: 1500, Dest: 1, Op: bpf.FlowDR}
	var v bpf.Flow
	keys, vals := []bpf.FlowKey{k}, []bpf.Flow{f}
	allocs := testing.AllocsPerRun(100, func() {
		if n, err := o.PutFlows(keys, vals); n != 1 || err != nil {
			t.Fatal(n, err)
		}
		if err := o.LookupFlow(&k, &v); err != nil {
			t.Fatal(err)
		}
		if n, err := o.DeleteFlows(keys); n != 1 || err != nil {
			t.Fatal(n, err)
		}
		if n, err := o.PutFlows(keys, vals); n != 1 || err != nil {
			t.Fatal(n, err)
		}
		if err := o.DeleteFlow(&k); err != nil { // the fallback
			t.Fatal(err)
		}
	})
	if allocs != 0 {
		t.Errorf("install, fold and delete on the flows map: %v allocations, want 0", allocs)
	}
}

// NAT, both directions: with the flows the worker installs (the client's
// at the handshake's last ACK, the real server's at its first reply
// after it), the program sends byte for byte what a worker without
// offload sends (modes.natIn and natOut: addresses, ports, TTL and the
// incremental checksums), counted in and out for the destination.
func TestOffloadNATXDPEquivalence(t *testing.T) {
	rs := netip.MustParseAddr("198.18.0.11")
	for _, udp := range []bool{false, true} {
		name, k := "tcp", testServices[0]
		if udp {
			name, k = "udp", testServices[1]
		}
		t.Run(name, func(t *testing.T) {
			o := loadOffload(t)
			if err := o.AddReal(bpf.ServiceKey{Addr: rs, Port: 8080, Proto: uint8(k.Proto)}); err != nil {
				t.Fatal(err)
			}
			on, kon, off, koff := methodPair(t, o, modes.Masq, k, rs, testLaddr)
			in := func(flags uint8, payload string) []byte {
				return pt.Packet{SrcMAC: clientMAC, DstMAC: directorMAC[:], Src: testClient, Dst: testVIP,
					SrcPort: 40000, DstPort: k.Port, Flags: flags, UDP: udp, Payload: []byte(payload)}.Frame()
			}
			out := func(flags uint8, payload string) []byte {
				return pt.Packet{SrcMAC: realMACs[0][:], DstMAC: directorMAC[:], Src: rs, Dst: testClient,
					SrcPort: 8080, DstPort: 40000, Flags: flags, UDP: udp, Payload: []byte(payload)}.Frame()
			}
			hs := [][]byte{in(syn, ""), out(syn|ack, ""), in(ack, ""), out(ack, "hello")}
			if udp {
				hs = [][]byte{in(0, "q"), out(0, "a")}
			}
			now := int64(10)
			for _, h := range hs {
				kon.deliver(h)
				koff.deliver(h)
				on.poll(now)
				off.poll(now)
				now++
			}
			if len(kon.sent) != len(hs) || len(koff.sent) != len(hs) {
				t.Fatalf("handshake: sent %d and %d, want %d", len(kon.sent), len(koff.sent), len(hs))
			}
			id, after, frames := equivalentBothWays(t, o, on, off, koff, in, out, udp, now)
			sameDestCounters(t, on, off, id, after)
			on.off.pass = -foldEveryNs
			on.off.step(on, now+foldEveryNs, -1)
			e, eoff := on.off.flows[0].e, entryOf(t, off, frames[0], now)
			a, b, c, d := e.Counters()
			wa, wb, wc, wd := eoff.Counters()
			if a != wa || b != wb || c != wc || d != wd {
				t.Errorf("entry counters after the fold: %d %d %d %d, userspace %d %d %d %d", a, b, c, d, wa, wb, wc, wd)
			}
		})
	}
}

// crossesSyncPoint finds the packet counts syncNeeded sends on (3, 53,
// 103, ...) within a fold, as a packet-by-packet count would.
func TestCrossesSyncPoint(t *testing.T) {
	for before := uint64(0); before < 160; before++ {
		for n := uint64(1); n < 120; n++ {
			want := false
			for p := before + 1; p <= before+n; p++ {
				if p%syncPeriod == syncThreshold {
					want = true
				}
			}
			if got := crossesSyncPoint(before, n); got != want {
				t.Fatalf("crossesSyncPoint(%d, %d) = %v, want %v", before, n, got, want)
			}
		}
	}
}

// With sync on, the frames XDP forwards count towards the sync points:
// a fold that passes the 53rd input packet exports the connection, one
// that passes none does not.
func TestOffloadFoldSyncs(t *testing.T) {
	ff := newFakeFlows()
	w, k := offloadWorker(t, ff)
	w.sx.ring = newSyncRing[syncRec](exportSlots)
	w.dp.ipvsSync.on.Store(true)
	ackF := tcpTo(40000, 80, ack)
	k.deliver(tcpTo(40000, 80, syn))
	w.poll(1)
	k.deliver(ackF)
	w.poll(2)
	exported := func() uint64 { return w.stats.local[SyncExported] }
	base := exported() // the worker's own sends (none before the 3rd packet)
	fk := flowKeyOf(ackF)
	sec := int64(time.Second)
	ff.forward(t, fk, 10, uint64(len(ackF)), kt0+2*sec) // input packets 3..12: the 3rd is a sync point
	w.off.step(w, 2*sec, -1)
	if got := exported() - base; got != 1 {
		t.Fatalf("fold over the 3rd packet exported %d records, want 1", got)
	}
	ff.forward(t, fk, 20, uint64(len(ackF)), kt0+4*sec) // 13..32: none
	w.off.step(w, 4*sec, -1)
	if got := exported() - base; got != 1 {
		t.Fatalf("fold over packets 13..32 exported %d records in all, want 1", got)
	}
	ff.forward(t, fk, 30, uint64(len(ackF)), kt0+6*sec) // 33..62: the 53rd
	w.off.step(w, 6*sec, -1)
	if got := exported() - base; got != 2 {
		t.Fatalf("fold over the 53rd packet: %d records in all, want 2", got)
	}
}

// A connection is offloaded only after offloadAfter frames: a short one
// (one HTTP request) never costs a map update.
func TestOffloadAfter(t *testing.T) {
	ff := newFakeFlows()
	w, k := offloadWorker(t, ff)
	w.off.after = offloadAfter
	k.deliver(tcpTo(40000, 80, syn))
	w.poll(1)
	ackF := tcpTo(40000, 80, ack)
	for i := 2; i < offloadAfter; i++ {
		k.deliver(ackF)
		w.poll(int64(i))
	}
	if len(ff.m) != 0 || ff.puts != 0 {
		t.Fatalf("after %d frames %d flows installed, want 0", offloadAfter-1, len(ff.m))
	}
	k.deliver(ackF)
	w.poll(offloadAfter)
	if _, ok := ff.m[flowKeyOf(ackF)]; !ok || ff.puts != 1 {
		t.Fatalf("after %d frames: installed %v (puts %d), want the flow", offloadAfter, ok, ff.puts)
	}

	// UDP: a one-datagram exchange (a DNS query) is not offloaded; a
	// flow's second datagram installs it.
	w.off.afterUDP = offloadAfterUDP
	udpF := udpTo(5353, 53)
	for i := 1; i < offloadAfterUDP; i++ {
		k.deliver(udpF)
		w.poll(offloadAfter + int64(i))
	}
	if _, ok := ff.m[flowKeyOf(udpF)]; ok {
		t.Fatalf("UDP flow installed after %d datagrams", offloadAfterUDP-1)
	}
	k.deliver(udpF)
	w.poll(2 * offloadAfter)
	if _, ok := ff.m[flowKeyOf(udpF)]; !ok {
		t.Fatalf("UDP flow not installed after %d datagrams", offloadAfterUDP)
	}
}

// FULLNAT, both directions, IPv4 and IPv6: with the flows the worker
// installs (client → VIP, and the real server's replies to the local
// address and port), the program sends byte for byte what a worker
// without offload sends (modes.fullnatIn and fullnatOut: both addresses,
// both ports, TTL, one incremental update per checksum), counted in and
// out for the destination, and the entry's counters after the fold are
// the userspace worker's.
func TestOffloadFULLNATXDPEquivalence(t *testing.T) {
	for _, v6 := range []bool{false, true} {
		for _, udp := range []bool{false, true} {
			vip, client, rs, la := testVIP, testClient, netip.MustParseAddr("198.18.0.11"), testLaddr
			name := "ipv4"
			if v6 {
				vip, client, rs, la, name = testVIP6, testClient6, testRS6, testLaddr6, "ipv6"
			}
			k := ipvs.ServiceKey{Proto: ipvs.TCP, Addr: vip, Port: 80}
			if udp {
				k.Proto, k.Port, name = ipvs.UDP, 53, name+"/udp"
			} else {
				name += "/tcp"
			}
			t.Run(name, func(t *testing.T) {
				o := loadOffload(t)
				addFULLNAT(t, o, k, 9, rs, la)
				on, kon, off, koff := methodPair(t, o, modes.FullNAT, k, rs, la)
				in := func(flags uint8, payload string) []byte {
					return pt.Packet{SrcMAC: clientMAC, DstMAC: directorMAC[:], Src: client, Dst: vip,
						SrcPort: 40000, DstPort: k.Port, Flags: flags, UDP: udp, Payload: []byte(payload)}.Frame()
				}
				var lport uint16 // the connection's, once the first frame bound it
				out := func(flags uint8, payload string) []byte {
					return pt.Packet{SrcMAC: realMACs[0][:], DstMAC: directorMAC[:], Src: rs, Dst: la,
						SrcPort: 8080, DstPort: lport, Flags: flags, UDP: udp, Payload: []byte(payload)}.Frame()
				}
				now := int64(10)
				step := func(f []byte) {
					kon.deliver(f)
					koff.deliver(f)
					on.poll(now)
					off.poll(now)
					now++
				}
				first := in(syn, "")
				if udp {
					first = in(0, "q")
				}
				step(first)
				eon, eoff := entryOf(t, on, first, now), entryOf(t, off, first, now)
				if eon == nil || eoff == nil || eon.LocalPort() != eoff.LocalPort() {
					t.Fatalf("entries %v and %v: want one each, with the same local port", eon, eoff)
				}
				lport = eon.LocalPort()
				hs := [][]byte{out(syn|ack, ""), in(ack, ""), out(ack, "hello")}
				if udp {
					hs = [][]byte{out(0, "a")}
				}
				for _, h := range hs {
					step(h)
				}
				if n := 1 + len(hs); len(kon.sent) != n || len(koff.sent) != n {
					t.Fatalf("handshake: sent %d and %d, want %d", len(kon.sent), len(koff.sent), n)
				}
				id, after, _ := equivalentBothWays(t, o, on, off, koff, in, out, udp, now)
				// Frames the program leaves to the worker: TTL 1 each way,
				// and a SYN or FIN (TCP).
				punts := [][]byte{pt.Packet{SrcMAC: clientMAC, DstMAC: directorMAC[:], Src: client, Dst: vip,
					SrcPort: 40000, DstPort: k.Port, Flags: ack, UDP: udp, TTL: 1, Payload: []byte("x")}.Frame(),
					pt.Packet{SrcMAC: realMACs[0][:], DstMAC: directorMAC[:], Src: rs, Dst: la,
						SrcPort: 8080, DstPort: lport, Flags: ack, UDP: udp, TTL: 1, Payload: []byte("x")}.Frame()}
				if !udp {
					punts = append(punts, in(ack|packet.TCPFlagFIN, ""))
				}
				for i, p := range punts {
					if act, _ := runXDP(t, o, p); act != xdpPass {
						t.Errorf("punt %d: xdp action %d, want %d (to the worker)", i, act, xdpPass)
					}
				}
				sameDestCounters(t, on, off, id, after)
				on.off.pass = -foldEveryNs
				on.off.step(on, now+foldEveryNs, -1)
				a, b, c, d := eon.Counters()
				wa, wb, wc, wd := eoff.Counters()
				if a != wa || b != wb || c != wc || d != wd {
					t.Errorf("entry counters after the fold: %d %d %d %d, userspace %d %d %d %d", a, b, c, d, wa, wb, wc, wd)
				}
			})
		}
	}
}

// tunWorker is methodWorkerAt for TUN with ipip encapsulation from the
// director's address src.
func tunWorker(t testing.TB, k ipvs.ServiceKey, rs, src netip.Addr) (*worker, *fakeKernel) {
	t.Helper()
	w, kern := methodWorkerAt(t, modes.Tunnel, k, rs, testLaddr)
	fwd := *w.dp.fwd.Load()
	for i := range fwd {
		fwd[i].encap = modes.Encap{Type: modes.IPIP, Src: src.As16()}
	}
	// The director's own addresses, the sources of its ICMP errors.
	w.addr4, w.addr6 = netip.MustParseAddr("198.18.0.254").As16(), testDirIP6.As16()
	return w, kern
}

// TUN (ipip), IPv4 in IPv4, IPv6 in IPv6 and IPv4 in IPv6: the program
// encapsulates an offloaded flow's frames byte for byte as a worker
// without offload does (modes.tunIn: the outer header, its checksum, TTL,
// DS field with CE turned to ECT(0), ID and DF; Ethernet padding cut),
// and counts them as it does (IP bytes before encapsulation). Frames too
// big once encapsulated (the worker's frag-needed or packet too big),
// with a TTL of 1, or a FIN, go to the worker; IPv6 in IPv4 is never
// installed.
func TestOffloadTUNXDPEquivalence(t *testing.T) {
	rs4 := netip.MustParseAddr("198.18.0.11")
	dir4 := netip.MustParseAddr("198.18.0.254")
	for _, c := range []struct {
		name                 string
		vip, client, rs, src netip.Addr
		offloaded            bool
	}{
		{"4in4", testVIP, testClient, rs4, dir4, true},
		{"6in6", testVIP6, testClient6, testRS6, testDirIP6, true},
		{"4in6", testVIP, testClient, testRS6, testDirIP6, true},
		{"6in4", testVIP6, testClient6, rs4, dir4, false},
	} {
		for _, udp := range []bool{false, true} {
			k := ipvs.ServiceKey{Proto: ipvs.TCP, Addr: c.vip, Port: 80}
			name := c.name + "/tcp"
			if udp {
				k.Proto, k.Port, name = ipvs.UDP, 53, c.name+"/udp"
			}
			t.Run(name, func(t *testing.T) {
				o := loadOffload(t)
				if err := o.AddService(bpf.ServiceKey{Addr: k.Addr, Port: k.Port, Proto: uint8(k.Proto)}, 9); err != nil {
					t.Fatal(err)
				}
				on, kon := tunWorker(t, k, c.rs, c.src)
				withOffload(t, on, o)
				on.off.kt0 = 0
				on.ports()
				on.ifs[0].index = 1
				off, koff := tunWorker(t, k, c.rs, c.src)
				pkt := func(flags uint8, payload []byte) pt.Packet {
					return pt.Packet{SrcMAC: clientMAC, DstMAC: directorMAC[:], Src: c.client, Dst: c.vip,
						SrcPort: 40000, DstPort: k.Port, Flags: flags, UDP: udp, Payload: payload}
				}
				now := int64(10)
				hs := [][]byte{pkt(syn, nil).Frame(), pkt(ack, nil).Frame()}
				if udp {
					hs = [][]byte{pkt(0, []byte("q")).Frame()}
				}
				for _, h := range hs {
					kon.deliver(h)
					koff.deliver(h)
					on.poll(now)
					off.poll(now)
					now++
				}
				if len(kon.sent) != len(hs) || len(koff.sent) != len(hs) || !bytes.Equal(kon.sent[len(hs)-1], koff.sent[len(hs)-1]) {
					t.Fatalf("handshake: sent %d and %d, want %d, the same", len(kon.sent), len(koff.sent), len(hs))
				}
				if !c.offloaded {
					if len(on.off.flows) != 0 || on.off.keys != 0 {
						t.Fatalf("offloaded %+v, want nothing", on.off.flows)
					}
					return
				}
				if len(on.off.flows) != 1 || !on.off.flows[0].on[0] {
					t.Fatalf("offloaded %+v, want the connection's client side", on.off.flows)
				}
				id := on.off.flows[0].dest
				var before bpf.DestCounters
				if err := o.DestCounters(id, &before); err != nil {
					t.Fatal(err)
				}
				ce := pkt(ack|packet.TCPFlagPSH, []byte("GET / HTTP/1.1\r\n\r\n"))
				ce.TOS = 0xb8 | 3 // EF, CE
				nodf := pkt(ack, []byte("x"))
				nodf.NoDF, nodf.ID, nodf.TOS, nodf.TTL = true, 0xbeef, 0x01, 2 // ECT(1), the last hop
				padded := append(pkt(ack, nil).Frame(), make([]byte, 12)...)
				// 1500 bytes of IP before the outer header: the most the
				// MTU lets through unencapsulated.
				hdr := 20 + 20
				if c.vip.Is6() {
					hdr = 40 + 20
				}
				if udp {
					hdr -= 12
				}
				full := pkt(ack, make([]byte, 1500-hdr))
				frames := [][]byte{ce.Frame(), nodf.Frame(), padded, pkt(ack, make([]byte, 1400)).Frame()}
				for i, f := range frames {
					act, got := runXDP(t, o, f)
					koff.deliver(f)
					off.poll(now)
					want := koff.sent[len(koff.sent)-1]
					if act != xdpTX || !bytes.Equal(got, want) {
						t.Fatalf("frame %d: xdp action %d sent\n%x\nworker without offload sent\n%x", i, act, got, want)
					}
				}
				ttl1 := pkt(ack, []byte("x"))
				ttl1.TTL = 1
				punts := [][]byte{full.Frame(), ttl1.Frame()}
				if !udp {
					punts = append(punts, pkt(ack|packet.TCPFlagFIN, nil).Frame())
				}
				for i, p := range punts {
					if act, _ := runXDP(t, o, p); act != xdpPass {
						t.Errorf("punt %d: xdp action %d, want %d (to the worker)", i, act, xdpPass)
					}
				}
				var after bpf.DestCounters
				if err := o.DestCounters(id, &after); err != nil {
					t.Fatal(err)
				}
				if after.InPkts-before.InPkts != uint64(len(frames)) || after.OutPkts != before.OutPkts {
					t.Errorf("program counted %+v since %+v, want %d packets in", after, before, len(frames))
				}
				var con, coff destCounters
				on.ds.publish()
				off.ds.publish()
				on.ds.read(id, &con)
				off.ds.read(id, &coff)
				con.add(&destCounters{InPkts: after.InPkts, InBytes: after.InBytes})
				if con != coff {
					t.Errorf("destination counters: offload %+v, userspace %+v", con, coff)
				}
				on.off.pass = -foldEveryNs
				on.off.step(on, now+foldEveryNs, -1)
				eon, eoff := on.off.flows[0].e, entryOf(t, off, hs[0], now)
				a, b, c2, d := eon.Counters()
				wa, wb, wc, wd := eoff.Counters()
				if a != wa || b != wb || c2 != wc || d != wd {
					t.Errorf("entry counters after the fold: %d %d %d %d, userspace %d %d %d %d", a, b, c2, d, wa, wb, wc, wd)
				}
				// The punted frames through both workers: the same answers
				// (too big, time exceeded) or forwarding.
				sentOn, sentOff := len(kon.sent), len(koff.sent)
				for _, p := range punts {
					kon.deliver(p)
					koff.deliver(p)
				}
				on.poll(now + foldEveryNs)
				off.poll(now + foldEveryNs)
				gotOn, gotOff := kon.sent[sentOn:], koff.sent[sentOff:]
				if len(gotOn) != len(gotOff) || len(gotOn) < 2 {
					t.Fatalf("worker sent %d of the punted frames, without offload %d, want at least 2 (%v %v)", len(gotOn), len(gotOff), off.stats.local, off.verdicts)
				}
				for i := range gotOn {
					if !bytes.Equal(gotOn[i], gotOff[i]) {
						t.Errorf("punted frame %d: sent\n%x\nwithout offload\n%x", i, gotOn[i], gotOff[i])
					}
				}
			})
		}
	}
}

// A TUN flow leaves the program when its destination's encapsulation
// changes (the next frames go to the worker, which tunnels them as now
// configured), and a GUE one is never installed: the program builds
// ipip only.
func TestOffloadTUNEncapChange(t *testing.T) {
	ff := newFakeFlows()
	k := testServices[0]
	w, kern := tunWorker(t, k, netip.MustParseAddr("198.18.0.11"), netip.MustParseAddr("198.18.0.254"))
	withOffload(t, w, ff)
	kern.deliver(tcpTo(40000, 80, syn))
	w.poll(1)
	kern.deliver(tcpTo(40000, 80, ack))
	w.poll(2)
	fk := flowKeyOf(tcpTo(40000, 80, ack))
	if v, ok := ff.m[fk]; !ok || v.Op != bpf.FlowTun4 {
		t.Fatalf("flow %+v installed %v, want a FlowTun4", v, ok)
	}
	fwd := append([]destFwd(nil), *w.dp.fwd.Load()...)
	for i := range fwd {
		fwd[i].encap.Type, fwd[i].encap.Port = modes.GUE, 6080
	}
	w.dp.fwd.Store(&fwd)
	w.off.step(w, 3, 0)
	if _, ok := ff.m[fk]; ok || len(w.off.flows) != 0 {
		t.Fatalf("after the change to GUE the flow is still installed (%d offloaded)", len(w.off.flows))
	}
	kern.deliver(tcpTo(40000, 80, ack))
	w.poll(4)
	if len(ff.m) != 0 {
		t.Errorf("a GUE flow was installed: %+v", ff.m)
	}
	if n := len(kern.sent); n != 3 {
		t.Errorf("sent %d frames, want 3 (the worker tunnels them all)", n)
	}
}

// Installing and removing TUN and FULLNAT flows allocates nothing: a
// connection's handshake, its install (FULLNAT: both directions, the
// reply's at the real server's ACK) and its FIN, which takes it out
// again, on the per-packet path.
func TestOffloadMethodsAllocs(t *testing.T) {
	rs := netip.MustParseAddr("198.18.0.11")
	for _, m := range []modes.Method{modes.Tunnel, modes.FullNAT} {
		t.Run(m.String(), func(t *testing.T) {
			ff := newFakeFlows()
			var w *worker
			var kern *fakeKernel
			if m == modes.Tunnel {
				w, kern = tunWorker(t, testServices[0], rs, netip.MustParseAddr("198.18.0.254"))
			} else {
				w, kern = methodWorkerAt(t, m, testServices[0], rs, testLaddr)
			}
			withOffload(t, w, ff)
			kern.keep = false
			const runs = 60 // AllocsPerRun's 50 and its warm-up
			var syns, acks, fins [][]byte
			for i := range runs {
				p := uint16(20000 + i)
				syns, acks, fins = append(syns, tcpTo(p, 80, syn)), append(acks, tcpTo(p, 80, ack)), append(fins, tcpTo(p, 80, ack|packet.TCPFlagFIN))
			}
			// The real server's ACK to the connection's local port,
			// patched into a copy of one frame (its TCP destination port
			// and checksum): building frames allocates.
			tmpl := pt.Packet{SrcMAC: realMACs[0][:], DstMAC: directorMAC[:], Src: rs, Dst: testLaddr,
				SrcPort: 8080, DstPort: 1, Flags: ack}.Frame()
			reply := make([]byte, len(tmpl))
			i, now := 0, int64(1)
			allocs := testing.AllocsPerRun(50, func() {
				kern.deliver(syns[i])
				w.poll(now)
				kern.deliver(acks[i])
				w.poll(now)
				if m == modes.FullNAT {
					var lport uint16
					if f := w.off.flows; len(f) > 0 {
						lport = f[len(f)-1].e.LocalPort()
					}
					copy(reply, tmpl)
					const l4 = 14 + 20
					binary.BigEndian.PutUint16(reply[l4+2:], lport)
					binary.BigEndian.PutUint16(reply[l4+16:], packet.ChecksumUpdate16(binary.BigEndian.Uint16(reply[l4+16:]), 1, lport))
					kern.deliver(reply)
					w.poll(now)
				}
				kern.deliver(fins[i])
				w.poll(now)
				i++
				now++
			})
			if allocs != 0 {
				t.Errorf("%v connection install and removal: %v allocations, want 0", m, allocs)
			}
			want := runs - 9 // every run installs (the warm-up too)
			if m == modes.FullNAT {
				want *= 2
			}
			if ff.puts < want || len(ff.m) != 0 {
				t.Errorf("%d installs, %d flows left, want %d+ and none", ff.puts, len(ff.m), want)
			}
		})
	}
}

// The TUN and FULLNAT rewrites run the same on a live interface, native
// and generic XDP, as under BPF_PROG_RUN (which the equivalence tests
// hold to the worker): a frame of each flow (TUN with an outer IPv4 and
// IPv6 header, IPv4 and IPv6 inside; FULLNAT) sent into a veth comes
// back out of it, XDP_TX, byte for byte as BPF_PROG_RUN leaves it. Generic
// XDP works on the skb (bpf_xdp_adjust_head and _tail included), native
// on the veth's xdp_buff.
func TestOffloadXDPModes(t *testing.T) {
	testenv.RequireRoot(t)
	for _, mode := range []struct {
		name  string
		flags link.XDPAttachFlags
	}{{"native", link.XDPDriverMode}, {"generic", link.XDPGenericMode}} {
		t.Run(mode.name, func(t *testing.T) { checkOffloadLive(t, mode.flags) })
	}
}

func checkOffloadLive(t *testing.T, flags link.XDPAttachFlags) {
	testenv.InNewNetNS(t, func(h *netlink.Handle) {
		if err := h.LinkAdd(&netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: "off0", NumTxQueues: 1, NumRxQueues: 1}, PeerName: "off1"}); err != nil {
			t.Fatal(err)
		}
		l0, err := h.LinkByName("off0")
		if err != nil {
			t.Fatal(err)
		}
		l1, err := h.LinkByName("off1")
		if err != nil {
			t.Fatal(err)
		}
		for _, l := range []netlink.Link{l0, l1} {
			if err := h.LinkSetUp(l); err != nil {
				t.Fatal(err)
			}
		}
		mac0, mac1 := [6]byte(l0.Attrs().HardwareAddr), [6]byte(l1.Attrs().HardwareAddr)
		o, err := bpf.Load(bpf.Options{MAC: mac0, Offload: true, MaxFlows: 16, MaxReals: 16})
		if err != nil {
			t.Fatal(err)
		}
		defer o.Close()
		vip, rs := testVIP, netip.MustParseAddr("198.18.0.11")
		for _, p := range []uint16{80, 81, 82} {
			if err := o.AddService(bpf.ServiceKey{Addr: vip, Port: p, Proto: 6}, 1); err != nil {
				t.Fatal(err)
			}
		}
		if err := o.AddService(bpf.ServiceKey{Addr: testVIP6, Port: 80, Proto: 6}, 1); err != nil {
			t.Fatal(err)
		}
		// Port 80: TUN to rs, ipip from 198.18.0.254; port 81: FULLNAT
		// from the local address to rs:8080; port 82 and the IPv6 VIP's
		// 80: TUN in an outer IPv6 header. Out of off0 (XDP_TX) to
		// off1's MAC.
		la := testLaddr.As16()
		base := bpf.Flow{DstMAC: mac1, SrcMAC: mac0, Ifindex: uint32(l0.Attrs().Index), MTU: 1500, Dest: 1}
		tun, fnat := base, base
		tun.Op, tun.Addr, tun.SrcAddr = bpf.FlowTun4, rs.As16(), netip.MustParseAddr("198.18.0.254").As16()
		fnat.Op, fnat.Addr, fnat.SrcAddr = bpf.FlowFNATIn, rs.As16(), la
		binary.BigEndian.PutUint16(fnat.Port[:], 8080)
		binary.BigEndian.PutUint16(fnat.SrcPort[:], 5000)
		c, v := testClient.As16(), vip.As16()
		fnat.IPDelta, fnat.L4Delta = fullnatDeltas(&c, &la, 40000, 5000, &v, &tun.Addr, 81, 8080)
		frames := map[uint16][]byte{}
		tun6 := base
		tun6.Op, tun6.Addr, tun6.SrcAddr = bpf.FlowTun6, testRS6.As16(), testDirIP6.As16()
		for port, f := range map[uint16]*bpf.Flow{80: &tun, 81: &fnat, 82: &tun6} {
			k := bpf.MakeFlowKey(c, 40000, v, port, 6)
			if err := o.PutFlow(&k, f); err != nil {
				t.Fatal(err)
			}
			frames[port] = pt.Packet{DstMAC: net.HardwareAddr(mac0[:]), SrcMAC: net.HardwareAddr(mac1[:]), Src: testClient, Dst: vip,
				SrcPort: 40000, DstPort: port, Flags: ack | packet.TCPFlagPSH, Payload: []byte("GET / HTTP/1.1\r\n\r\n")}.Frame()
		}
		k6 := bpf.MakeFlowKey(testClient6.As16(), 40000, testVIP6.As16(), 80, 6)
		if err := o.PutFlow(&k6, &tun6); err != nil {
			t.Fatal(err)
		}
		frame6 := pt.Packet{DstMAC: net.HardwareAddr(mac0[:]), SrcMAC: net.HardwareAddr(mac1[:]), Src: testClient6, Dst: testVIP6,
			SrcPort: 40000, DstPort: 80, Flags: ack | packet.TCPFlagPSH, TOS: 0x03, Payload: []byte("GET / HTTP/1.1\r\n\r\n")}.Frame()
		if flags == link.XDPDriverMode {
			// veth delivers XDP_TX frames to a peer that runs XDP itself.
			pass, err := ebpf.NewProgram(&ebpf.ProgramSpec{Type: ebpf.XDP, License: "GPL",
				Instructions: asm.Instructions{asm.Mov.Imm(asm.R0, 2), asm.Return()}})
			if err != nil {
				t.Fatal(err)
			}
			defer pass.Close()
			pl, err := link.AttachXDP(link.XDPOptions{Program: pass, Interface: l1.Attrs().Index, Flags: link.XDPDriverMode})
			if err != nil {
				t.Fatal(err)
			}
			defer pl.Close()
		}
		lk, err := link.AttachXDP(link.XDPOptions{Program: o.Program(), Interface: l0.Attrs().Index, Flags: flags})
		if err != nil {
			t.Fatal(err)
		}
		defer lk.Close()
		fd, err := unix.Socket(unix.AF_PACKET, unix.SOCK_RAW, int(htons(unix.ETH_P_ALL)))
		if err != nil {
			t.Fatal(err)
		}
		defer unix.Close(fd)
		if err := unix.Bind(fd, &unix.SockaddrLinklayer{Protocol: htons(unix.ETH_P_ALL), Ifindex: l1.Attrs().Index}); err != nil {
			t.Fatal(err)
		}
		tv := unix.NsecToTimeval(int64(100 * time.Millisecond))
		if err := unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &tv); err != nil {
			t.Fatal(err)
		}
		// A bare ACK padded to Ethernet's 60 bytes: TUN cuts the padding
		// (bpf_xdp_adjust_tail).
		padded := append(pt.Packet{DstMAC: net.HardwareAddr(mac0[:]), SrcMAC: net.HardwareAddr(mac1[:]), Src: testClient, Dst: vip,
			SrcPort: 40000, DstPort: 80, Flags: ack}.Frame(), 0, 0, 0, 0, 0, 0)
		for i, f := range [][]byte{frames[80], frames[81], padded, frames[82], frame6} {
			port := []uint16{80, 81, 80, 82, 80}[i]
			// BPF_PROG_RUN's ingress is loopback, not off0: a redirect.
			act, want := runXDP(t, o, bytes.Clone(f))
			if act != xdpRedirect {
				t.Fatalf("port %d: BPF_PROG_RUN action %d, want XDP_REDIRECT", port, act)
			}
			if err := unix.Sendto(fd, f, 0, &unix.SockaddrLinklayer{Ifindex: l1.Attrs().Index, Halen: 6}); err != nil {
				t.Fatal(err)
			}
			buf := make([]byte, 2048)
			got := false
			for deadline := time.Now().Add(2 * time.Second); !got && time.Now().Before(deadline); {
				n, from, err := unix.Recvfrom(fd, buf, 0)
				if err != nil {
					continue // the timeout: try again until the deadline
				}
				if ll, ok := from.(*unix.SockaddrLinklayer); ok && ll.Pkttype == unix.PACKET_OUTGOING {
					continue // the frame this test sent
				}
				if bytes.Equal(buf[:n], want) {
					got = true
				}
			}
			if !got {
				c, _ := o.Counters()
				t.Errorf("port %d: no frame equal to BPF_PROG_RUN's\n%x\ncame back in 2 s (redirect_offload %d)", port, want, c[bpf.RedirectOffload])
			}
		}
		if c, err := o.Counters(); err != nil || c[bpf.RedirectOffload] != 10 {
			t.Errorf("redirect_offload = %d (%v), want 10: five frames under BPF_PROG_RUN, five live", c[bpf.RedirectOffload], err)
		}
	})
}

func htons(v uint16) uint16 { return v<<8 | v>>8 }

// singleFlows writes a batch one PutFlow at a time: the installs as they
// were before the queue, a syscall each (BenchmarkOffloadInstalls).
type singleFlows struct{ *bpf.Objects }

func (m singleFlows) PutFlows(keys []bpf.FlowKey, vals []bpf.Flow) (int, error) {
	for j := range keys {
		if err := m.PutFlow(&keys[j], &vals[j]); err != nil {
			return j, err
		}
	}
	return len(keys), nil
}

// The worker's cost per frame when every frame's flow crosses the install
// threshold (as at 100k flows in the bench's lossless search, sent round
// robin): UDP flows through the worker, each frame queueing its flow's
// install, written at the batch edge in one batch (batch) or a syscall
// per flow (single), on the real flows map; none: the same frames with
// no install, the worker's own cost. The deletes between rounds are not
// timed.
//
// Root, Linux 6.18, 2 vCPUs shared with other work (load 9-10), DR, 64
// frames per batch, three runs each: batch 1118-1444 ns/frame, single
// 5521-11511, none 112-234. An install costs the worker about 1 µs
// batched against 5-6 µs alone.
func BenchmarkOffloadInstalls(b *testing.B) {
	for _, variant := range []string{"batch", "single", "none"} {
		b.Run(variant, func(b *testing.B) {
			const n = 2048
			_, w, k := offloadBenchVariant(b, variant, func(o *bpf.Objects) flowTable { return singleFlows{o} }, n)
			frames := make([][]byte, n)
			for i := range frames {
				frames[i] = benchFlowFrame(i)
			}
			round := func(now int64) {
				for i := 0; i < n; i += maxBatch {
					for _, f := range frames[i:min(i+maxBatch, n)] {
						k.deliver(f)
					}
					w.poll(now)
				}
			}
			round(1) // the entries
			want := 0
			if variant != "none" {
				w.off.afterUDP, want = 1, n
			}
			fwdA := append([]destFwd(nil), *w.dp.fwd.Load()...)
			fwdB := append([]destFwd(nil), fwdA...)
			for i := range fwdB {
				fwdB[i].mac[5] ^= 0x40
			}
			b.ReportAllocs()
			b.ResetTimer()
			for r := 0; r < b.N; r++ {
				round(int64(2 + r))
				b.StopTimer()
				if w.off.keys != want {
					b.Fatalf("round %d: %d flows installed, want %d", r, w.off.keys, want)
				}
				if r%2 == 0 { // the next hop's MAC flips: every flow comes out
					w.dp.fwd.Store(&fwdB)
				} else {
					w.dp.fwd.Store(&fwdA)
				}
				w.off.step(w, int64(2+r), 0)
				if w.off.keys != 0 {
					b.Fatalf("round %d: %d flows left after the MAC changed", r, w.off.keys)
				}
				b.StartTimer()
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*n), "ns/frame")
		})
	}
}

// singleDeletes writes a delete batch one DeleteFlow at a time: the
// deletes as they were before the queue, a syscall each
// (BenchmarkOffloadDeletes).
type singleDeletes struct{ *bpf.Objects }

func (m singleDeletes) DeleteFlows(keys []bpf.FlowKey) (int, error) {
	for j := range keys {
		if err := m.DeleteFlow(&keys[j]); err != nil {
			return j, err
		}
	}
	return len(keys), nil
}

// The worker's cost per flow taken out of the program (conntrack's
// released hook: an entry expired or removed, its counters folded
// before), the deletes queued and written at the batch edge in batches
// (batch) or a syscall per flow (single), on the real flows map. The
// installs between rounds are not timed.
//
// Root, Linux 6.18, 2 vCPUs shared with other work (load 5-6), DR, 64
// flows per batch edge, 2048 a round, four runs: batch 232-284 ns/flow,
// single 2772-8844. A flow taken out costs the worker about 0.25 µs
// batched against 3-9 µs alone.
func BenchmarkOffloadDeletes(b *testing.B) {
	for _, variant := range []string{"batch", "single"} {
		b.Run(variant, func(b *testing.B) {
			const n = 2048
			o, w, k := offloadBenchVariant(b, variant, func(o *bpf.Objects) flowTable { return singleDeletes{o} }, n)
			es := make([]*conntrack.Entry, 0, n)
			for i := 0; i < n; i += maxBatch {
				var frames [][]byte
				for j := i; j < min(i+maxBatch, n); j++ {
					f := benchFlowFrame(j)
					frames = append(frames, f)
					k.deliver(f)
				}
				w.poll(1)
				for _, f := range frames {
					es = append(es, entryOf(b, w, f, 1))
				}
			}
			w.off.afterUDP = 1
			fwd := *w.dp.fwd.Load()
			w.off.step(w, 1, 0) // the configuration seen
			b.ReportAllocs()
			b.ResetTimer()
			for r := 0; r < b.N; r++ {
				b.StopTimer()
				for j, e := range es {
					w.offload(e, conntrack.DirInput, modes.Route, true, fwd)
					if j%installQueue == installQueue-1 {
						w.off.flush(w)
					}
				}
				w.off.flush(w)
				if w.off.keys != n {
					b.Fatalf("round %d: %d flows installed, want %d", r, w.off.keys, n)
				}
				b.StartTimer()
				for i := 0; i < n; i += maxBatch {
					for _, e := range es[i:min(i+maxBatch, n)] {
						w.off.released(e)
					}
					w.off.step(w, 1, 0) // the batch edge
				}
				b.StopTimer()
				if w.off.keys != 0 || w.off.dn != 0 || w.off.errs != 0 {
					b.Fatalf("round %d: %d flows, %d deletes queued, %d errs left", r, w.off.keys, w.off.dn, w.off.errs)
				}
				var v bpf.Flow
				for _, e := range []*conntrack.Entry{es[0], es[n/2], es[n-1]} {
					ek := e.Key()
					if fk := bpf.MakeFlowKey(ek.Src, ek.SrcPort, ek.Dst, ek.DstPort, ek.Proto); o.LookupFlow(&fk, &v) == nil {
						b.Fatalf("round %d: flow %v left in the map", r, fk)
					}
				}
				b.StartTimer()
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*n), "ns/flow")
		})
	}
}

// foldWorker is an offloading worker on the real flows map with n UDP
// flows installed (client to real server), the clients 10.64.0.0/10,
// its conntrack table large enough for them.
func foldWorker(b *testing.B, n int) (*worker, *bpf.Objects, []bpf.FlowKey) {
	o := loadOffloadFlows(b, 1<<17)
	w, k := offloadBenchWorker(b, o, n, 1<<17)
	keys := make([]bpf.FlowKey, 0, n)
	for i := 0; i < n; i += maxBatch {
		for j := i; j < min(i+maxBatch, n); j++ {
			src := netip.AddrFrom4([4]byte{10, 64 | byte(j>>16), byte(j >> 8), byte(j)})
			f := pt.Packet{SrcMAC: clientMAC, DstMAC: directorMAC[:], Src: src, Dst: testVIP,
				SrcPort: 10000, DstPort: 53, UDP: true, Payload: []byte("xlb")}.Frame()
			k.deliver(f)
			keys = append(keys, flowKeyOf(f))
		}
		w.poll(1) // the flows' installs are written at its edge
	}
	if w.off.keys != n {
		b.Fatalf("%d flows installed, want %d", w.off.keys, n)
	}
	return w, o, keys
}

// The fold pass of an idle worker with 100,000 offloaded flows (idleStep
// with no frames arriving: the whole pass), on the real map: quiet, no
// flow forwarded anything since the last pass (a walk, a byKey lookup
// per flow); active, every flow forwarded a frame (and a conntrack Fold
// each). A pass is due every foldEveryNs (1 s): its time per op is the
// worker's CPU time per second on it. The map updates that make the
// flows active are not timed.
func BenchmarkOffloadFoldPass(b *testing.B) {
	const n = 100000
	w, o, keys := foldWorker(b, n)
	vals := make([]bpf.Flow, 4096)
	now := int64(2 * foldEveryNs)
	for _, variant := range []string{"quiet", "active"} {
		b.Run(variant, func(b *testing.B) {
			b.ReportAllocs()
			startThreadCPU(b) // locks the goroutine to its thread
			cpu := int64(0)
			for b.Loop() {
				if variant == "active" {
					b.StopTimer()
					for i := 0; i < n; i += len(vals) {
						m := min(len(vals), n-i)
						for j := range m {
							if err := o.LookupFlow(&keys[i+j], &vals[j]); err != nil {
								b.Fatal(err)
							}
							vals[j].Packets++
							vals[j].Bytes += 60
							vals[j].LastSeen = uint64(kt0 + now - 1)
						}
						if c, err := o.PutFlows(keys[i:i+m], vals[:m]); c != m || err != nil {
							b.Fatal(c, err)
						}
					}
					b.StartTimer()
				}
				folds := w.off.folds
				t0 := threadNow(b)
				w.off.idleStep(w, now)
				cpu += threadNow(b) - t0
				if w.off.pass != now || w.off.folds-folds != n {
					b.Fatalf("a pass folded %d flows (pass at %d, now %d), want %d", w.off.folds-folds, w.off.pass, now, n)
				}
				if w.off.walk == nil {
					b.Fatal("the walk failed: the pass looked every flow up")
				}
				now += foldEveryNs
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/1e6, "ms/pass")
			b.ReportMetric(float64(cpu)/float64(b.N)/1e6, "cpu-ms/pass")
		})
	}
}

// The fold pass of an idle worker with 1,000 offloaded flows in a map of
// 100,000, the others another worker's (the workers share the map):
// walk, the whole map walked (as every pass was before fewFlows);
// lookups, its 1,000 flows looked up. Quiet flows; thread CPU time per
// pass, as BenchmarkOffloadFoldPass.
func BenchmarkOffloadFoldShared(b *testing.B) {
	const own, n = 1000, 100000
	w, o, _ := foldWorker(b, own)
	keys, vals := make([]bpf.FlowKey, 0, 1024), make([]bpf.Flow, 1024)
	for i := own; i < n; i++ {
		var a, c [16]byte
		a[10], a[11], a[12], a[13], a[14], a[15], c[15] = 0xff, 0xff, 10, 32|byte(i>>16), byte(i>>8), byte(i), 100
		keys = append(keys, bpf.MakeFlowKey(a, 1024, c, 80, 17))
		if len(keys) == cap(keys) || i == n-1 {
			if m, err := o.PutFlows(keys, vals[:len(keys)]); m != len(keys) || err != nil {
				b.Fatal(m, err)
			}
			keys = keys[:0]
		}
	}
	now := int64(2 * foldEveryNs)
	w.off.idleStep(w, now) // a walk: the map's size
	if w.off.mapSeen != n {
		b.Fatalf("the walk saw %d flows, want %d", w.off.mapSeen, n)
	}
	for _, variant := range []string{"walk", "lookups"} {
		b.Run(variant, func(b *testing.B) {
			b.ReportAllocs()
			startThreadCPU(b)
			cpu := int64(0)
			for b.Loop() {
				now += foldEveryNs
				w.off.looked = 0
				if variant == "walk" {
					w.off.mapSeen = 0 // unknown: walk
				}
				folds := w.off.folds
				t0 := threadNow(b)
				w.off.idleStep(w, now)
				cpu += threadNow(b) - t0
				if w.off.pass != now || w.off.folds-folds != own {
					b.Fatalf("a pass folded %d flows, want %d", w.off.folds-folds, own)
				}
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/1e6, "ms/pass")
			b.ReportMetric(float64(cpu)/float64(b.N)/1e6, "cpu-ms/pass")
		})
	}
}

// offloadBenchWorker is a DR worker offloading into m, a map of size
// entries, with a conntrack table as large and room for n flows; the
// fake kernel keeps no frame.
func offloadBenchWorker(b *testing.B, m flowTable, n, size int) (*worker, *fakeKernel) {
	w, k := testWorker(b)
	withOffloadSized(b, w, m, size)
	w.off.max = size
	w.off.flows, w.off.at, w.off.byKey = make([]offFlow, 0, n), make(map[*conntrack.Entry]int32, n), make(map[bpf.FlowKey]int32, n)
	k.keep = false
	return w, k
}

// benchFlowFrame is flow i's UDP query to the VIP (source port 10000+i).
func benchFlowFrame(i int) []byte {
	return pt.Packet{SrcMAC: clientMAC, DstMAC: directorMAC[:], Src: testClient, Dst: testVIP,
		SrcPort: uint16(10000 + i), DstPort: 53, UDP: true, Payload: []byte("xlb")}.Frame()
}

// installAll offloads es, DR flows of w, writing the installs a queue
// at a time, and checks that ff holds them all.
func installAll(t *testing.T, w *worker, ff *fakeFlows, es []*conntrack.Entry) {
	t.Helper()
	fwd := *w.dp.fwd.Load()
	for i, e := range es {
		w.offload(e, conntrack.DirInput, modes.Route, true, fwd)
		if i%installQueue == installQueue-1 || i == len(es)-1 {
			w.off.step(w, 1, 0)
		}
	}
	if len(ff.m) != len(es) {
		t.Fatalf("%d flows installed, want %d", len(ff.m), len(es))
	}
}

// offloadBenchVariant is the worker of a benchmark's variant: over the
// real map (2^13 entries), or for "single" over single(map), with room
// for n flows and no UDP flow offloaded until the benchmark says.
func offloadBenchVariant(b *testing.B, variant string, single func(*bpf.Objects) flowTable, n int) (*bpf.Objects, *worker, *fakeKernel) {
	o := loadOffloadFlows(b, 1<<13)
	var m flowTable = o
	if variant == "single" {
		m = single(o)
	}
	w, k := offloadBenchWorker(b, m, n, 1<<13)
	w.off.afterUDP = 1 << 62 // not yet
	return o, w, k
}
