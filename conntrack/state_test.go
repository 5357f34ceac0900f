package conntrack

import (
	"testing"
	"time"
)

// step is one packet of a scenario and what the entry must look like
// after it.
type step struct {
	dir     Dir
	flags   uint8
	want    State
	timeout time.Duration // expected time to expiry after the packet
	active  bool
}

const (
	syn    = TCPSyn
	synack = TCPSyn | TCPAck
	ack    = TCPAck
	fin    = TCPFin | TCPAck
	rst    = TCPRst
	rstack = TCPRst | TCPAck
)

func TestTCPScenarios(t *testing.T) {
	for _, tc := range []struct {
		name  string
		fwd   uint8
		steps []step
	}{
		{"nat client closes", FwdMasq, []step{
			{DirInput, syn, StateSynRecv, 60 * time.Second, false},
			{DirOutput, synack, StateSynRecv, 60 * time.Second, false},
			{DirInput, ack, StateEstablished, 900 * time.Second, true},
			{DirInput, ack | TCPPsh, StateEstablished, 900 * time.Second, true},
			{DirOutput, ack, StateEstablished, 900 * time.Second, true},
			{DirInput, fin, StateCloseWait, 60 * time.Second, false},
			{DirOutput, ack, StateCloseWait, 60 * time.Second, false},
			{DirOutput, fin, StateTimeWait, 120 * time.Second, false},
			{DirInput, ack, StateTimeWait, 120 * time.Second, false},
		}},
		{"nat server closes", FwdMasq, []step{
			{DirInput, syn, StateSynRecv, 60 * time.Second, false},
			{DirOutput, synack, StateSynRecv, 60 * time.Second, false},
			{DirInput, ack, StateEstablished, 900 * time.Second, true},
			{DirOutput, fin, StateFinWait, 120 * time.Second, false},
			{DirInput, ack, StateFinWait, 120 * time.Second, false},
			{DirInput, fin, StateTimeWait, 120 * time.Second, false},
			{DirOutput, ack, StateTimeWait, 120 * time.Second, false},
		}},
		{"nat reset by client", FwdMasq, []step{
			{DirInput, syn, StateSynRecv, 60 * time.Second, false},
			{DirOutput, synack, StateSynRecv, 60 * time.Second, false},
			{DirInput, ack, StateEstablished, 900 * time.Second, true},
			{DirInput, rstack, StateClose, 10 * time.Second, false},
			{DirOutput, ack, StateClose, 10 * time.Second, false},
		}},
		{"nat reset by server on syn", FwdMasq, []step{
			{DirInput, syn, StateSynRecv, 60 * time.Second, false},
			{DirOutput, rstack, StateClose, 10 * time.Second, false},
		}},
		{"nat server opens (syn_sent)", FwdMasq, []step{
			{DirOutput, syn, StateSynSent, 120 * time.Second, false},
			{DirInput, synack, StateEstablished, 900 * time.Second, true},
		}},
		{"input rst in syn_recv keeps syn_recv", FwdMasq, []step{
			{DirInput, syn, StateSynRecv, 60 * time.Second, false},
			{DirInput, rst, StateSynRecv, 60 * time.Second, false},
		}},
		{"segment without flags closes", FwdMasq, []step{
			{DirInput, syn, StateSynRecv, 60 * time.Second, false},
			{DirInput, ack, StateEstablished, 900 * time.Second, true},
			{DirInput, TCPPsh, StateClose, 10 * time.Second, false},
		}},
		{"ack picks up a connection in NONE", FwdMasq, []step{
			{DirInput, ack, StateEstablished, 900 * time.Second, true},
		}},
		{"dr: input-only table", FwdRoute, []step{
			{DirInput, syn, StateSynRecv, 60 * time.Second, false},
			{DirInput, ack, StateEstablished, 900 * time.Second, true},
			{DirInput, fin, StateFinWait, 120 * time.Second, false},
			{DirInput, ack, StateFinWait, 120 * time.Second, false},
			{DirInput, rst, StateClose, 10 * time.Second, false},
		}},
		{"dr: fin in syn_recv", FwdTunnel, []step{
			{DirInput, syn, StateSynRecv, 60 * time.Second, false},
			{DirInput, fin, StateTimeWait, 120 * time.Second, false},
			{DirInput, syn, StateSynRecv, 60 * time.Second, false},
		}},
		{"dr: rst in syn_recv keeps it", FwdRoute, []step{
			{DirInput, syn, StateSynRecv, 60 * time.Second, false},
			{DirInput, rst, StateSynRecv, 60 * time.Second, false},
		}},
		{"dr: an output packet leaves input-only", FwdRoute, []step{
			{DirInput, syn, StateSynRecv, 60 * time.Second, false},
			{DirInput, ack, StateEstablished, 900 * time.Second, true},
			{DirOutput, ack, StateEstablished, 900 * time.Second, true},
			// INPUT table now: FIN in ESTABLISHED is CLOSE_WAIT, not FIN_WAIT.
			{DirInput, fin, StateCloseWait, 60 * time.Second, false},
		}},
		{"established syn stays established", FwdMasq, []step{
			{DirInput, syn, StateSynRecv, 60 * time.Second, false},
			{DirInput, ack, StateEstablished, 900 * time.Second, true},
			{DirInput, syn, StateEstablished, 900 * time.Second, true},
			{DirOutput, syn, StateEstablished, 900 * time.Second, true},
		}},
		{"time_wait reopened by syn", FwdMasq, []step{
			{DirInput, syn, StateSynRecv, 60 * time.Second, false},
			{DirInput, ack, StateEstablished, 900 * time.Second, true},
			{DirInput, fin, StateCloseWait, 60 * time.Second, false},
			{DirOutput, fin, StateTimeWait, 120 * time.Second, false},
			{DirInput, syn, StateSynRecv, 60 * time.Second, false},
			{DirOutput, synack, StateSynRecv, 60 * time.Second, false},
			{DirInput, ack, StateEstablished, 900 * time.Second, true},
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newFixture(t, 16, 1, nil)
			k := clientKey(ProtoTCP, 1, 1234)
			e, _ := f.t.Insert(&k, f.dests[0], tc.fwd, 8080, f.clk.now)
			if e.State() != StateNone {
				t.Fatalf("new entry state = %v, want NONE", e.State())
			}
			for i, s := range tc.steps {
				now := f.clk.advance(time.Second)
				f.t.Update(e, s.dir, s.flags, 60, now)
				if e.State() != s.want {
					t.Fatalf("step %d (%v %#x): state = %v, want %v", i, s.dir, s.flags, e.State(), s.want)
				}
				if got := time.Duration(e.Expires() - now); got != s.timeout {
					t.Fatalf("step %d: expires in %v, want %v", i, got, s.timeout)
				}
				if e.Active() != s.active || (f.dests[0].ActiveConns() == 1) != s.active {
					t.Fatalf("step %d: active = %v (dest %d/%d), want %v", i, e.Active(),
						f.dests[0].ActiveConns(), f.dests[0].InactConns(), s.active)
				}
				f.checkCounts(t)
			}
			// The last state's timeout: alive 1 ns before, gone at it.
			last := tc.steps[len(tc.steps)-1].timeout
			now := f.clk.advance(last - 1)
			if got, _ := f.t.Lookup(&k, now); got != e {
				t.Fatalf("entry gone before its %v timeout", last)
			}
			now = f.clk.advance(1)
			if n := f.t.Expire(now, 16); n != 1 {
				t.Fatalf("Expire at the timeout removed %d, want 1", n)
			}
			f.checkCounts(t)
		})
	}
}

// TestTCPAllTransitions drives every state, in every direction, with
// every flag combination that selects a row (and one that selects none),
// and checks the state, the timer and the destination's counts against
// IPVS's rules.
func TestTCPAllTransitions(t *testing.T) {
	flagSets := []uint8{syn, synack, fin, ack, rst, rstack, TCPSyn | TCPFin, TCPPsh, 0}
	for _, secure := range []bool{false, true} {
		for _, preActive := range []bool{false, true} {
			f := newFixture(t, 64, 1, func(o *Options) { o.ActivePreEstablished = preActive })
			f.t.settings.SetSecureTCP(secure)
			f.t.Expire(f.clk.now, 0)
			for s := StateNone; s < numTCPStates; s++ {
				for _, fwd := range []uint8{FwdMasq, FwdRoute} {
					for _, dir := range []Dir{DirInput, DirOutput, DirInputOnly} {
						for _, fl := range flagSets {
							k := clientKey(ProtoTCP, 1, 1)
							e, _ := f.t.Insert(&k, f.dests[0], fwd, 8080, f.clk.now)
							// Put the entry in state s with the counts to match.
							f.t.setActive(e, f.t.active[s])
							e.state = s
							now := f.clk.advance(time.Millisecond)
							f.t.Update(e, dir, fl, 40, now)
							tdir := dir
							if fwd != FwdMasq && dir == DirInput {
								tdir = DirInputOnly
							}
							want := NextTCPState(s, tdir, fl, secure)
							if e.State() != want {
								t.Fatalf("secure=%v %v %v %#x (fwd %d): state %v, want %v", secure, s, dir, fl, fwd, e.State(), want)
							}
							if got, w := e.Expires()-now, int64(DefaultTimeouts().TCP[want]); got != w {
								t.Fatalf("%v → %v: timer %v, want %v", s, want, time.Duration(got), time.Duration(w))
							}
							wantActive := want == StateEstablished ||
								preActive && (want == StateSynSent || want == StateSynRecv || want == StateSynAck)
							if e.Active() != wantActive {
								t.Fatalf("%v → %v (preActive %v): active %v", s, want, preActive, e.Active())
							}
							f.checkCounts(t)
							f.t.Remove(e)
						}
					}
				}
			}
			f.checkCounts(t)
		}
	}
}

// TestNextTCPStateTable spot-checks the transcription of the kernel's
// tables at the cells that differ between them.
func TestNextTCPStateTable(t *testing.T) {
	for _, tc := range []struct {
		s      State
		d      Dir
		flags  uint8
		secure bool
		want   State
	}{
		{StateNone, DirInput, syn, false, StateSynRecv},
		{StateNone, DirInputOnly, syn, true, StateSynAck},
		{StateSynAck, DirInput, syn, false, StateSynRecv},
		{StateSynAck, DirInput, syn, true, StateSynAck},
		{StateSynAck, DirInput, rst, false, StateSynRecv},
		{StateSynAck, DirInputOnly, rst, false, StateClose},
		{StateSynRecv, DirInput, ack, true, StateSynRecv},
		{StateSynRecv, DirOutput, syn, true, StateSynAck},
		{StateEstablished, DirInput, fin, false, StateCloseWait},
		{StateEstablished, DirInputOnly, fin, false, StateFinWait},
		{StateEstablished, DirOutput, fin, false, StateFinWait},
		{StateTimeWait, DirOutput, rst, false, StateTimeWait},
		{StateSynSent, DirOutput, rst, false, StateSynSent},
		{StateLastAck, DirInput, ack, false, StateClose},
		{StateLastAck, DirOutput, ack, false, StateLastAck},
		{StateListen, DirOutput, ack, false, StateEstablished},
		{StateListen, DirInput, ack, false, StateListen},
		{StateCloseWait, DirOutput, fin, false, StateTimeWait},
		{StateEstablished, DirInput, TCPPsh, false, StateClose},
		{StateEstablished, DirInput, rst | syn, false, StateClose},
	} {
		if got := NextTCPState(tc.s, tc.d, tc.flags, tc.secure); got != tc.want {
			t.Errorf("NextTCPState(%v, %v, %#x, secure=%v) = %v, want %v", tc.s, tc.d, tc.flags, tc.secure, got, tc.want)
		}
	}
}

func TestStateTimeouts(t *testing.T) {
	want := map[State]time.Duration{
		StateNone: 2 * time.Second, StateEstablished: 900 * time.Second, StateSynSent: 120 * time.Second,
		StateSynRecv: 60 * time.Second, StateFinWait: 120 * time.Second, StateTimeWait: 120 * time.Second,
		StateClose: 10 * time.Second, StateCloseWait: 60 * time.Second, StateLastAck: 30 * time.Second,
		StateListen: 120 * time.Second, StateSynAck: 120 * time.Second,
	}
	d := DefaultTimeouts()
	for s, w := range want {
		if d.TCP[s] != w {
			t.Errorf("default timeout of %v = %v, want %v", s, d.TCP[s], w)
		}
	}
	if d.UDP != 300*time.Second {
		t.Errorf("UDP timeout = %v", d.UDP)
	}
}

func TestSetTimeoutsAtRunTime(t *testing.T) {
	f := newFixture(t, 16, 1, nil)
	set := f.t.settings
	if err := set.SetTimeouts(100*time.Second, 0, 30*time.Second); err != nil {
		t.Fatal(err)
	}
	got := set.Timeouts()
	if got.TCP[StateEstablished] != 100*time.Second || got.TCP[StateFinWait] != 120*time.Second || got.UDP != 30*time.Second {
		t.Fatalf("after --set 100 0 30: %v %v %v", got.TCP[StateEstablished], got.TCP[StateFinWait], got.UDP)
	}
	if err := set.SetTimeouts(-1, 0, 0); err == nil {
		t.Fatal("negative timeout accepted")
	}
	k := clientKey(ProtoUDP, 1, 1)
	e, _ := f.t.Insert(&k, f.dests[0], FwdRoute, 53, f.clk.now)
	// The table has not reached a batch edge yet: old value.
	f.t.Update(e, DirInput, 0, 1, f.clk.now)
	if d := time.Duration(e.Expires() - f.clk.now); d != 300*time.Second {
		t.Fatalf("before Expire: timer %v, want 300s", d)
	}
	f.t.Expire(f.clk.now, 0)
	f.t.Update(e, DirInput, 0, 1, f.clk.now)
	if d := time.Duration(e.Expires() - f.clk.now); d != 30*time.Second {
		t.Fatalf("after Expire: timer %v, want 30s", d)
	}
	tk := clientKey(ProtoTCP, 2, 2)
	te, _ := f.t.Insert(&tk, f.dests[0], FwdRoute, 80, f.clk.now)
	f.t.Update(te, DirInput, ack, 1, f.clk.now)
	if d := time.Duration(te.Expires() - f.clk.now); d != 100*time.Second {
		t.Fatalf("ESTABLISHED timer %v, want 100s", d)
	}
	f.t.Update(te, DirInput, fin, 1, f.clk.now)
	if d := time.Duration(te.Expires() - f.clk.now); d != 120*time.Second {
		t.Fatalf("FIN_WAIT timer %v, want 120s", d)
	}
}

func TestUDPAndICMPStay(t *testing.T) {
	f := newFixture(t, 16, 1, nil)
	for _, tc := range []struct {
		proto uint8
		state State
		tmo   time.Duration
	}{{ProtoUDP, StateUDP, 300 * time.Second}, {ProtoICMP, StateICMP, 60 * time.Second}} {
		k := clientKey(tc.proto, 1, 7)
		e, _ := f.t.Insert(&k, f.dests[0], FwdMasq, 7, f.clk.now)
		for _, d := range []Dir{DirInput, DirOutput, DirInput} {
			now := f.clk.advance(time.Second)
			f.t.Update(e, d, syn|fin, 64, now)
			if e.State() != tc.state || e.Active() || time.Duration(e.Expires()-now) != tc.tmo {
				t.Fatalf("proto %d: state %v active %v timer %v", tc.proto, e.State(), e.Active(), time.Duration(e.Expires()-now))
			}
		}
		f.checkCounts(t)
	}
}
