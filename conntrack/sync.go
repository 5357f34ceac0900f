package conntrack

import (
	"time"

	"github.com/xlbproject/xlb/sched"
)

// Synced describes a connection or persistence template a sync master
// sent (IPVS connection synchronization, package ipvssync), as
// InsertSynced installs it.
type Synced struct {
	// Template makes the entry a persistence template; its key is then
	// the template key the master built: the client address already
	// masked, client port 0, and for a firewall-mark service protocol 0
	// and the mark as the virtual address (Service.markAddr's form).
	Template bool
	// State is the entry's protocol state: a TCP state, StateUDP, or for
	// a template StateTemplateNone or StateTemplateAssured.
	State State
	// Inactive is the record's IP_VS_CONN_F_INACTIVE: it says, not the
	// state, whether the connection counts in its destination's
	// ActiveConns or InactConns, as the kernel's backup counts it.
	Inactive bool
	// Timeout restarts the entry's timer (expires = now + Timeout); 0 or
	// less means the table's timeout for State (for a template, which
	// has none, 60 s: give the service's persistence timeout).
	Timeout time.Duration
	// Laddr and Lport are a FullNAT connection's local address and port
	// (ignored for other methods): the entry gets its reply key from
	// them, and Options.LocalReserved reserves them in the caller's pool.
	Laddr [16]byte
	Lport uint16
}

// SyncResult is what InsertSynced did.
type SyncResult uint8

const (
	// SyncCreated: a new entry.
	SyncCreated SyncResult = iota
	// SyncUpdated: the entry existed, on the same destination: its state,
	// activity and timer were updated.
	SyncUpdated
	// SyncIgnored: the entry exists on another destination and the
	// record is inactive: the master's news about a connection the
	// backup has since replaced (ip_vs_proc_conn ignores it too).
	SyncIgnored
	// SyncFull: no free entry and nothing to evict (Stats.Full).
	SyncFull
	// SyncLocalTaken: FullNAT only: the local port could not be
	// reserved, or another entry has the reply key.
	SyncLocalTaken
	// SyncBadState: the state is not one of the key's protocol.
	SyncBadState
)

func (r SyncResult) String() string {
	switch r {
	case SyncCreated:
		return "created"
	case SyncUpdated:
		return "updated"
	case SyncIgnored:
		return "ignored"
	case SyncFull:
		return "full"
	case SyncLocalTaken:
		return "local-taken"
	case SyncBadState:
		return "bad-state"
	}
	return "SyncResult(?)"
}

// ValidSyncedState reports whether s is a state an entry of protocol
// proto (template or not) may have.
func ValidSyncedState(proto uint8, template bool, s State) bool {
	switch {
	case template:
		return s == StateTemplateNone || s == StateTemplateAssured
	case proto == ProtoTCP:
		return s < numTCPStates
	case proto == ProtoUDP, proto == ProtoSCTP:
		return s == StateUDP
	}
	return false
}

// InsertSynced installs a connection or template received from a sync
// master, as the kernel's backup does (ip_vs_proc_conn): the entry of
// forward key k, bound to d (found by the caller from the record's
// destination address and port) with forwarding method fwd (the backup's
// own destination's: connections inherit their method from the
// destination, ip_vs_bind_dest) and destination port dport.
//
// An entry that exists on the same destination and port keeps its
// counters; it takes the record's state, its activity (moving between
// d's ActiveConns and InactConns) and a timer restarted with Timeout.
// One on another destination is replaced when the record is active, and
// left as it is when it is inactive (SyncIgnored). A new entry is bound
// to d, active or inactive as the record says; a Masq or FullNAT one
// gets its reply key, and until NeedsHop is cleared (SetHop), replies
// leave by the hop the caller set. Synced entries are not linked to a
// template: as in the kernel, a backup's template lives by its own
// timer, which records restart. No allocation.
func (t *Table) InsertSynced(k *Key, d *sched.Dest, fwd uint8, dport uint16, s *Synced, now int64) (*Entry, SyncResult) {
	kc := *k
	kc.kind = kindConn
	if s.Template {
		kc.kind = kindTemplate
	}
	if !ValidSyncedState(kc.Proto, s.Template, s.State) {
		return nil, SyncBadState
	}
	timeout := int64(s.Timeout)
	switch {
	case timeout > 0:
	case s.Template:
		timeout = templateGrace // the caller knows the service's; never 0
	default:
		timeout = t.tmo[s.State]
	}
	h32 := uint32(t.seed.hash(&kc))
	if idx, ok := t.findFwd(&kc, h32); ok {
		e := &t.entries[idx]
		same := e.dest == d.ID && e.dport == dport && e.fwd == fwd &&
			(fwd != FwdFullNAT || e.laddr == s.Laddr && e.lport == s.Lport)
		if same {
			t.syncState(e, s, now+timeout)
			return e, SyncUpdated
		}
		if s.Inactive && !s.Template {
			return e, SyncIgnored
		}
		// ip_vs_conn_expire_now: the master moved the connection.
		if e.flags&fTemplate != 0 && e.link != 0 {
			t.invalidate(idx)
		} else {
			t.remove(idx, false)
		}
	}
	idx, ok := t.alloc(now)
	if !ok {
		return nil, SyncFull
	}
	e := t.insert(idx, &kc, h32, d, fwd, dport, now)
	if fwd == FwdFullNAT && !s.Template {
		if t.reserved == nil || !t.reserved(s.Laddr, s.Lport, e.daddr, dport) {
			t.remove(idx, false)
			return nil, SyncLocalTaken
		}
		if !t.SetLocal(e, s.Laddr, s.Lport) {
			// Not indexed, so remove does not give the port back.
			if t.released != nil {
				t.released(s.Laddr, s.Lport, e.daddr, dport)
			}
			t.remove(idx, false)
			return nil, SyncLocalTaken
		}
	}
	if !s.Template && (fwd == FwdMasq || fwd == FwdFullNAT) {
		e.flags |= fNoHop
	}
	t.syncState(e, s, now+timeout)
	return e, SyncCreated
}

// syncState gives e a synced record's state, activity and expiry.
func (t *Table) syncState(e *Entry, s *Synced, expires int64) {
	e.state = s.State
	if e.flags&fTemplate == 0 {
		t.setActive(e, !s.Inactive)
	}
	e.expires = expires
}

// NeedsHop reports whether e was installed from a sync record and has
// not seen a client frame yet: its reply hop (SetHop) is a guess.
func (e *Entry) NeedsHop() bool { return e.flags&fNoHop != 0 }

// GuessHop sets the reply hop of an entry that NeedsHop, keeping
// NeedsHop: the entry's first client frame sets the real one (SetHop).
func (e *Entry) GuessHop(mac [6]byte, iface uint16) { e.hop, e.hopIface = mac, iface }

// Control returns the persistence template that controls connection e,
// or nil.
func (t *Table) Control(e *Entry) *Entry {
	if e.flags&fTemplate != 0 || e.link == 0 {
		return nil
	}
	return &t.entries[e.link-1]
}

// Timeout is the table's current timeout for state s (the kernel's
// cp->timeout of a connection in that state); 0 for template states,
// whose timeout is their service's.
func (t *Table) Timeout(s State) time.Duration {
	if s >= numStates {
		return 0
	}
	return time.Duration(t.tmo[s])
}

// Timeout is the persistence timeout (-p) of the service's templates.
func (s *Service) Timeout() time.Duration { return time.Duration(s.timeout) }

// Persistent reports whether the service is persistent (-p).
func (s *Service) Persistent() bool { return s.persistent }
