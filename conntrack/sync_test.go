package conntrack

import (
	"net/netip"
	"testing"
	"time"
)

// InsertSynced creates an entry with the record's state, activity and
// timeout, updates it in place from a record for the same destination,
// replaces it when an active record names another destination and
// ignores an inactive one; destination counts stay right throughout.
func TestInsertSynced(t *testing.T) {
	f := newFixture(t, 64, 2, nil)
	now := f.clk.now
	k := clientKey(ProtoTCP, 1, 40000)
	s := Synced{State: StateEstablished, Timeout: 900 * time.Second}
	e, r := f.t.InsertSynced(&k, f.dests[0], FwdRoute, 8080, &s, now)
	if r != SyncCreated || e == nil || e.State() != StateEstablished || !e.Active() || e.Expires() != now+int64(900*time.Second) {
		t.Fatalf("InsertSynced = %v, %v; want created, ESTABLISHED, active, expiring in 900 s", e, r)
	}
	if e.NeedsHop() {
		t.Error("a DR entry needs no reply hop")
	}
	f.checkCounts(t)
	if f.dests[0].ActiveConns() != 1 {
		t.Fatalf("active %d, want 1", f.dests[0].ActiveConns())
	}

	// FIN_WAIT, inactive, the state's timeout (Timeout 0).
	now = f.clk.advance(time.Second)
	s = Synced{State: StateFinWait, Inactive: true}
	if e2, r := f.t.InsertSynced(&k, f.dests[0], FwdRoute, 8080, &s, now); r != SyncUpdated || e2 != e {
		t.Fatalf("update = %v, %v; want the same entry, updated", e2, r)
	}
	if e.State() != StateFinWait || e.Active() || e.Expires() != now+int64(DefaultTimeouts().TCP[StateFinWait]) {
		t.Errorf("updated entry %v %v expires %d, want FIN_WAIT, inactive, default timeout", e.State(), e.Active(), e.Expires()-now)
	}
	f.checkCounts(t)

	// An inactive record on another destination is stale.
	if _, r := f.t.InsertSynced(&k, f.dests[1], FwdRoute, 8080, &s, now); r != SyncIgnored {
		t.Errorf("inactive record for another destination: %v, want ignored", r)
	}
	// An active one moves the connection.
	s = Synced{State: StateEstablished}
	e, r = f.t.InsertSynced(&k, f.dests[1], FwdRoute, 8080, &s, now)
	if r != SyncCreated || e.DestID() != f.dests[1].ID || f.t.Len() != 1 {
		t.Errorf("active record for another destination: %v on %d, %d entries; want created on %d, 1 entry", r, e.DestID(), f.t.Len(), f.dests[1].ID)
	}
	f.checkCounts(t)

	// Bad states are refused.
	for _, c := range []struct {
		proto uint8
		tmpl  bool
		s     State
	}{{ProtoTCP, false, StateUDP}, {ProtoUDP, false, StateEstablished}, {ProtoTCP, true, StateEstablished}, {ProtoICMP, false, StateICMP}} {
		k := clientKey(c.proto, 2, 1)
		s := Synced{State: c.s, Template: c.tmpl}
		if _, r := f.t.InsertSynced(&k, f.dests[0], FwdRoute, 8080, &s, now); r != SyncBadState {
			t.Errorf("proto %d template %v state %v: %v, want bad state", c.proto, c.tmpl, c.s, r)
		}
	}
	f.checkCounts(t)
}

// A synced template is found by NewConn: the client's new connection
// follows it without asking the scheduler.
func TestInsertSyncedTemplate(t *testing.T) {
	f := newFixture(t, 64, 3, nil)
	svc := f.service(t, func(o *ServiceOptions) { o.Persistent = true; o.Timeout = 300 * time.Second })
	now := f.clk.now
	k := clientKey(ProtoTCP, 1, 0)
	s := Synced{Template: true, State: StateTemplateAssured, Timeout: 300 * time.Second}
	e, r := f.t.InsertSynced(&k, f.dests[2], FwdRoute, 8080, &s, now)
	if r != SyncCreated || !e.Template() || e.State() != StateTemplateAssured {
		t.Fatalf("InsertSynced = %v, %v; want an assured template", e, r)
	}
	ck := clientKey(ProtoTCP, 1, 40000)
	c, v := f.t.NewConn(svc, &ck, TCPSyn, now)
	if v != VerdictNew || c.Dest != f.dests[2] || f.rr.calls != 0 {
		t.Errorf("NewConn = %v on %v after %d scheduler calls, want new on the template's %v, none", v, c.Dest, f.rr.calls, f.dests[2].Addr)
	}
	f.checkCounts(t)
	// Templates without a timeout get 60 s, never 0.
	k2 := clientKey(ProtoTCP, 2, 0)
	s = Synced{Template: true, State: StateTemplateNone}
	if e, _ := f.t.InsertSynced(&k2, f.dests[0], FwdRoute, 8080, &s, now); e.Expires() != now+templateGrace {
		t.Errorf("template without timeout expires in %d, want %d", e.Expires()-now, templateGrace)
	}
}

// FullNAT entries reserve their local port through LocalReserved, index
// their reply key and release the port when they go; a port that cannot
// be reserved, or a reply key another entry has, drops the record.
func TestInsertSyncedFullNAT(t *testing.T) {
	reserved := map[uint16]bool{}
	var releases int
	f := newFixture(t, 64, 1, func(o *Options) {
		o.LocalReserved = func(_ [16]byte, lport uint16, _ [16]byte, _ uint16) bool {
			if reserved[lport] || lport == 9999 {
				return false
			}
			reserved[lport] = true
			return true
		}
		o.LocalReleased = func(_ [16]byte, lport uint16, _ [16]byte, _ uint16) { delete(reserved, lport); releases++ }
	})
	now := f.clk.now
	la := netip.MustParseAddr("192.168.1.200").As16()
	k := clientKey(ProtoTCP, 1, 40000)
	s := Synced{State: StateEstablished, Laddr: la, Lport: 2000}
	e, r := f.t.InsertSynced(&k, f.dests[0], FwdFullNAT, 8080, &s, now)
	if r != SyncCreated || e.LocalPort() != 2000 || !reserved[2000] || !e.NeedsHop() {
		t.Fatalf("InsertSynced = %v, %v, reserved %v; want created with local port 2000, reserved, needing its hop", e, r, reserved)
	}
	rk := Key{Src: f.dests[0].Addr.As16(), SrcPort: 8080, Dst: la, DstPort: 2000, Proto: ProtoTCP}
	if got, dir := f.t.Lookup(&rk, now); got != e || dir != DirOutput {
		t.Errorf("reply lookup = %v, %v; want the entry, output", got, dir)
	}
	e.SetHop([6]byte{1})
	if e.NeedsHop() {
		t.Error("SetHop left NeedsHop")
	}
	// The same record updates, reserving nothing more.
	if _, r := f.t.InsertSynced(&k, f.dests[0], FwdFullNAT, 8080, &s, now); r != SyncUpdated || len(reserved) != 1 {
		t.Errorf("update = %v with %d reserved, want updated, 1", r, len(reserved))
	}
	// Another connection on a port the pool refuses.
	k2 := clientKey(ProtoTCP, 2, 40000)
	s2 := Synced{State: StateEstablished, Laddr: la, Lport: 9999}
	if _, r := f.t.InsertSynced(&k2, f.dests[0], FwdFullNAT, 8080, &s2, now); r != SyncLocalTaken || f.t.Len() != 1 {
		t.Errorf("refused port: %v, %d entries; want local taken, 1", r, f.t.Len())
	}
	f.checkCounts(t)
	f.t.Expire(now+int64(time.Hour), 1<<10)
	if releases != 1 || len(reserved) != 0 || f.t.Len() != 0 {
		t.Errorf("after expiry %d releases, %v reserved, %d entries; want 1, none, 0", releases, reserved, f.t.Len())
	}
	f.checkCounts(t)
}
