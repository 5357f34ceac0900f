package conntrack

import (
	"net/netip"
	"testing"
	"time"
)

func TestNewServiceValidates(t *testing.T) {
	f := newFixture(t, 8, 1, nil)
	for _, tc := range []struct {
		name string
		mod  func(*ServiceOptions)
	}{
		{"no scheduler", func(o *ServiceOptions) { o.Scheduler = nil }},
		{"port zero without persistence", func(o *ServiceOptions) { o.Port = 0 }},
		{"one-packet on TCP", func(o *ServiceOptions) { o.OnePacket = true }},
		{"persistent without timeout", func(o *ServiceOptions) { o.Persistent, o.Timeout = true, 0 }},
		{"IPv4 netmask /33", func(o *ServiceOptions) { o.Netmask = 33 }},
		{"IPv6 netmask /129", func(o *ServiceOptions) { o.IPv6, o.Netmask = true, 129 }},
		{"bad fwd", func(o *ServiceOptions) { o.Fwd = []uint8{0, 9} }},
	} {
		o := DefaultServiceOptions()
		o.Scheduler, o.Port = f.rr, 80
		tc.mod(&o)
		if _, err := NewService(o); err == nil {
			t.Errorf("%s: NewService succeeded, want an error", tc.name)
		}
	}
	o := DefaultServiceOptions()
	o.Scheduler, o.Proto, o.OnePacket, o.Port = f.rr, ProtoUDP, true, 53
	if _, err := NewService(o); err != nil {
		t.Errorf("UDP one-packet service: %v", err)
	}
}

func TestNewConnNonPersistent(t *testing.T) {
	f := newFixture(t, 64, 2, nil)
	svc := f.service(t, func(o *ServiceOptions) { o.Fwd = []uint8{0, FwdMasq, FwdRoute} })
	now := f.clk.now

	k := clientKey(ProtoTCP, 1, 1000)
	if c, v := f.t.NewConn(svc, &k, ack, now); v != VerdictNotNew || c.Dest != nil {
		t.Fatalf("ACK without entry: %v %+v, want not-new", v, c)
	}
	if _, v := f.t.NewConn(svc, &k, syn|rst, now); v != VerdictNotNew {
		t.Fatalf("SYN+RST: %v, want not-new", v)
	}
	c, v := f.t.NewConn(svc, &k, syn, now)
	if v != VerdictNew || c.Entry == nil || c.Dest != f.dests[0] || c.Port != 8080 || c.Fwd != FwdMasq {
		t.Fatalf("SYN: %v %+v", v, c)
	}
	if c.Entry.Fwd() != FwdMasq || c.Entry.DestPort() != 8080 || c.Entry.State() != StateNone {
		t.Fatalf("entry: fwd %d port %d state %v", c.Entry.Fwd(), c.Entry.DestPort(), c.Entry.State())
	}
	if c2, v := f.t.NewConn(svc, &k, syn, now); v != VerdictExisting || c2.Entry != c.Entry {
		t.Fatalf("repeated SYN: %v, entry %p want %p", v, c2.Entry, c.Entry)
	}
	k2 := clientKey(ProtoTCP, 1, 1001)
	if c, v := f.t.NewConn(svc, &k2, syn, now); v != VerdictNew || c.Dest != f.dests[1] || c.Fwd != FwdRoute {
		t.Fatalf("second SYN: %v → %v fwd %d, want dest 2, Route", v, c.Dest.Addr, c.Fwd)
	}
	// Wrong port on a non-fwmark service.
	k3 := KeyFrom(ProtoTCP, netip.MustParseAddrPort("1.1.1.1:1"), netip.MustParseAddrPort("192.168.1.10:81"))
	if _, v := f.t.NewConn(svc, &k3, syn, now); v != VerdictNoDest {
		t.Fatalf("other port: %v, want no-dest", v)
	}
	// All destinations quiesced.
	f.dests[0].SetWeight(0)
	f.dests[1].SetWeight(0)
	k4 := clientKey(ProtoTCP, 9, 9)
	if _, v := f.t.NewConn(svc, &k4, syn, now); v != VerdictNoDest {
		t.Fatalf("no weight: %v, want no-dest", v)
	}
	// sloppy_tcp schedules an ACK.
	f.dests[0].SetWeight(1)
	f.t.settings.SetSloppyTCP(true)
	f.t.Expire(now, 0)
	if _, v := f.t.NewConn(svc, &k4, ack, now); v != VerdictNew {
		t.Fatalf("sloppy ACK: %v, want new", v)
	}
	f.checkCounts(t)
	f.t.Expire(now, 0) // publishes
	st := f.t.Stats()
	if st.NotNew != 2 || st.NoDest != 2 || st.Created != 3 {
		t.Errorf("Stats = %+v", st)
	}
}

func TestNewConnDestPort(t *testing.T) {
	f := newFixture(t, 16, 1, nil)
	svc := f.service(t, func(o *ServiceOptions) { o.Port = 0; o.Persistent = true })
	k := KeyFrom(ProtoTCP, netip.MustParseAddrPort("1.1.1.1:1"), netip.MustParseAddrPort("192.168.1.10:443"))
	c, v := f.t.NewConn(svc, &k, syn, f.clk.now)
	// Port-zero service: the connection keeps the port the client used.
	if v != VerdictNew || c.Port != 443 {
		t.Fatalf("port-zero service: %v port %d, want new, 443", v, c.Port)
	}
}

// persistFixture: 3 destinations, a persistent TCP service on :80.
func persistFixture(t *testing.T, mod func(*ServiceOptions)) (*fixture, *Service) {
	f := newFixture(t, 256, 3, nil)
	svc := f.service(t, func(o *ServiceOptions) {
		o.Persistent = true
		o.Timeout = 300 * time.Second
		if mod != nil {
			mod(o)
		}
	})
	return f, svc
}

func keyFrom(client string, cport uint16, vaddr string, vport uint16) Key {
	return KeyFrom(ProtoTCP, netip.AddrPortFrom(netip.MustParseAddr(client), cport),
		netip.AddrPortFrom(netip.MustParseAddr(vaddr), vport))
}

func TestPersistenceNetmask(t *testing.T) {
	f, svc := persistFixture(t, func(o *ServiceOptions) { o.Netmask = 24 })
	now := f.clk.now
	open := func(client string, port uint16) *Conn {
		k := keyFrom(client, port, "192.168.1.10", 80)
		c, v := f.t.NewConn(svc, &k, syn, now)
		if v != VerdictNew {
			t.Fatalf("%s:%d: %v", client, port, v)
		}
		f.t.Update(c.Entry, DirInput, syn, 60, now)
		return &c
	}
	a := open("172.16.5.1", 1000)
	if f.rr.calls != 1 {
		t.Fatalf("scheduler calls = %d, want 1", f.rr.calls)
	}
	// Same /24, other host and port: same destination, no scheduling.
	for i, cl := range []string{"172.16.5.1", "172.16.5.200", "172.16.5.77"} {
		if c := open(cl, uint16(2000+i)); c.Dest != a.Dest {
			t.Fatalf("%s went to %v, want %v", cl, c.Dest.Addr, a.Dest.Addr)
		}
	}
	if f.rr.calls != 1 {
		t.Fatalf("scheduler calls = %d, want 1 (templates should decide)", f.rr.calls)
	}
	// Another /24 is scheduled anew.
	b := open("172.16.6.1", 1000)
	if b.Dest == a.Dest || f.rr.calls != 2 {
		t.Fatalf("other /24: dest %v, calls %d", b.Dest.Addr, f.rr.calls)
	}
	if a.Dest.PersistConns() != 1 || b.Dest.PersistConns() != 1 {
		t.Fatalf("PersistConns = %d, %d; want 1, 1", a.Dest.PersistConns(), b.Dest.PersistConns())
	}
	if got := f.t.Stats(); got.Templates != 0 { // not yet published
		t.Fatalf("stats published before Expire: %+v", got)
	}
	f.t.Expire(now, 0)
	if got := f.t.Stats(); got.Templates != 2 || got.Entries != 7 || got.TemplatesCreated != 2 {
		t.Fatalf("Stats = %+v", got)
	}
	f.checkCounts(t)
}

func TestPersistenceIPv6Netmask(t *testing.T) {
	f := newFixture(t, 64, 3, nil)
	svc := f.service(t, func(o *ServiceOptions) {
		o.IPv6, o.Persistent, o.Timeout, o.Netmask = true, true, time.Minute, 64
	})
	open := func(client string) *Conn {
		k := keyFrom(client, 1234, "2001:db8::80", 80)
		c, v := f.t.NewConn(svc, &k, syn, f.clk.now)
		if v != VerdictNew {
			t.Fatalf("%s: %v", client, v)
		}
		return &c
	}
	a := open("2001:db8:1:2::1")
	if b := open("2001:db8:1:2:ffff::9"); b.Dest != a.Dest {
		t.Fatal("same /64 went elsewhere")
	}
	if c := open("2001:db8:1:3::1"); c.Dest == a.Dest {
		t.Fatal("other /64 shares the template")
	}
	if f.rr.calls != 2 {
		t.Fatalf("scheduler calls = %d, want 2", f.rr.calls)
	}
}

func TestPersistenceTemplateLifetime(t *testing.T) {
	f, svc := persistFixture(t, nil)
	k := keyFrom("172.16.0.1", 1000, "192.168.1.10", 80)
	c, _ := f.t.NewConn(svc, &k, syn, f.clk.now)
	a := c.Dest
	f.t.Update(c.Entry, DirInput, syn, 60, f.clk.now)
	f.t.Update(c.Entry, DirInput, ack, 60, f.clk.now) // ESTABLISHED: 900 s

	// At 400 s the template (300 s) has timed out but still controls an
	// established connection: IPVS postpones it, so persistence holds.
	now := f.clk.advance(400 * time.Second)
	f.t.Expire(now, 1000)
	k2 := keyFrom("172.16.0.1", 1001, "192.168.1.10", 80)
	c2, v := f.t.NewConn(svc, &k2, syn, now)
	if v != VerdictNew || c2.Dest != a || f.rr.calls != 1 {
		t.Fatalf("at 400 s: %v dest %v calls %d, want the template's %v", v, c2.Dest.Addr, f.rr.calls, a.Addr)
	}
	// The new connection restarted the template's timer: 300 s from now.
	tk := f.templateOf(t, c2.Entry)
	if got := time.Duration(tk.Expires() - now); got != 300*time.Second || tk.Controlled() != 2 {
		t.Fatalf("template timer %v, controls %d; want 300s, 2", got, tk.Controlled())
	}
	// Close both connections: RST → CLOSE (10 s), then they expire.
	f.t.Update(c.Entry, DirInput, rst, 40, now)
	f.t.Update(c2.Entry, DirInput, rst, 40, now)
	now = f.clk.advance(11 * time.Second)
	f.t.Expire(now, 1000)
	f.checkCounts(t)
	if a.PersistConns() != 1 || a.ActiveConns()+a.InactConns() != 0 {
		t.Fatalf("after close: persist %d active %d inactive %d", a.PersistConns(), a.ActiveConns(), a.InactConns())
	}
	// The template outlives its connections until its own timeout.
	now = f.clk.advance(280 * time.Second)
	k3 := keyFrom("172.16.0.1", 1002, "192.168.1.10", 80)
	c3, _ := f.t.NewConn(svc, &k3, syn, now)
	if c3.Dest != a || f.rr.calls != 1 {
		t.Fatalf("template gone early: dest %v calls %d", c3.Dest.Addr, f.rr.calls)
	}
	f.t.Remove(c3.Entry)
	// 300 s after the last new connection, the template is gone and the
	// next connection is scheduled.
	now = f.clk.advance(300 * time.Second)
	f.t.Expire(now, 1000)
	if a.PersistConns() != 0 {
		t.Fatalf("template not expired: PersistConns %d", a.PersistConns())
	}
	k4 := keyFrom("172.16.0.1", 1003, "192.168.1.10", 80)
	f.t.NewConn(svc, &k4, syn, now)
	if f.rr.calls != 2 {
		t.Fatalf("scheduler calls = %d, want 2", f.rr.calls)
	}
	f.checkCounts(t)
}

// templateOf returns the template controlling e.
func (f *fixture) templateOf(t *testing.T, e *Entry) *Entry {
	t.Helper()
	if e.link == 0 {
		t.Fatal("entry has no template")
	}
	return &f.t.entries[e.link-1]
}

func TestExpireQuiescentTemplate(t *testing.T) {
	for _, expire := range []bool{false, true} {
		f, svc := persistFixture(t, nil)
		f.t.settings.SetExpireQuiescentTemplate(expire)
		f.t.Expire(f.clk.now, 0)
		k := keyFrom("172.16.0.1", 1000, "192.168.1.10", 80)
		c, _ := f.t.NewConn(svc, &k, syn, f.clk.now)
		a := c.Dest
		a.SetWeight(0) // ipvsadm -e ... -w 0
		k2 := keyFrom("172.16.0.1", 1001, "192.168.1.10", 80)
		c2, v := f.t.NewConn(svc, &k2, syn, f.clk.now)
		if v != VerdictNew {
			t.Fatalf("expire=%v: %v", expire, v)
		}
		if expire {
			if c2.Dest == a {
				t.Fatal("expire_quiescent_template on: new connection still went to the quiesced destination")
			}
			// The old template is invalidated but kept (counted) while
			// its connection lives.
			if a.PersistConns() != 1 || c2.Dest.PersistConns() != 1 || f.t.c.TemplatesInvalidated != 1 {
				t.Fatalf("persist counts %d %d, invalidated %d", a.PersistConns(), c2.Dest.PersistConns(), f.t.c.TemplatesInvalidated)
			}
			f.t.Update(c.Entry, DirInput, rst, 40, f.clk.now)
			now := f.clk.advance(11 * time.Second)
			f.t.Expire(now, 1000)
			if a.PersistConns() != 1 {
				t.Fatal("invalidated template freed before its timeout")
			}
			now = f.clk.advance(300 * time.Second)
			f.t.Expire(now, 1000)
			if a.PersistConns() != 0 {
				t.Fatalf("invalidated template not freed: PersistConns %d", a.PersistConns())
			}
		} else if c2.Dest != a {
			t.Fatalf("expire_quiescent_template off: went to %v, want the quiesced %v (IPVS keeps persistence)", c2.Dest.Addr, a.Addr)
		}
		f.checkCounts(t)
	}
}

func TestTemplateUnavailableDest(t *testing.T) {
	f, svc := persistFixture(t, nil)
	k := keyFrom("172.16.0.1", 1000, "192.168.1.10", 80)
	c, _ := f.t.NewConn(svc, &k, syn, f.clk.now)
	c.Dest.SetAvailable(false) // deleted from the service
	k2 := keyFrom("172.16.0.1", 1001, "192.168.1.10", 80)
	if c2, _ := f.t.NewConn(svc, &k2, syn, f.clk.now); c2.Dest == c.Dest {
		t.Fatal("template kept an unavailable destination")
	}
	f.checkCounts(t)
}

func TestPersistencePortZeroAndFWMark(t *testing.T) {
	t.Run("port zero", func(t *testing.T) {
		f, svc := persistFixture(t, func(o *ServiceOptions) { o.Port = 0 })
		c1, _ := f.t.NewConn(svc, ptr(keyFrom("172.16.0.1", 1000, "192.168.1.10", 80)), syn, f.clk.now)
		c2, _ := f.t.NewConn(svc, ptr(keyFrom("172.16.0.1", 1001, "192.168.1.10", 443)), syn, f.clk.now)
		if c1.Dest != c2.Dest || f.rr.calls != 1 {
			t.Fatalf("ports 80 and 443: %v and %v, calls %d", c1.Dest.Addr, c2.Dest.Addr, f.rr.calls)
		}
		tk := f.templateOf(t, c1.Entry)
		if tk.Virtual().Port() != 0 || tk.Client().Port() != 0 || tk.Proto() != ProtoTCP || tk.DestPort() != 0 {
			t.Fatalf("template %v → %v proto %d dport %d", tk.Client(), tk.Virtual(), tk.Proto(), tk.DestPort())
		}
	})
	t.Run("fwmark", func(t *testing.T) {
		f, svc := persistFixture(t, func(o *ServiceOptions) { o.Port, o.FWMark = 0, 7 })
		c1, _ := f.t.NewConn(svc, ptr(keyFrom("172.16.0.1", 1000, "192.168.1.10", 80)), syn, f.clk.now)
		c2, _ := f.t.NewConn(svc, ptr(keyFrom("172.16.0.1", 1001, "192.168.1.11", 443)), syn, f.clk.now)
		if c1.Dest != c2.Dest || f.rr.calls != 1 {
			t.Fatalf("two VIPs of one mark: %v and %v, calls %d", c1.Dest.Addr, c2.Dest.Addr, f.rr.calls)
		}
		tk := f.templateOf(t, c1.Entry)
		if tk.Proto() != 0 || tk.Virtual() != netip.MustParseAddrPort("0.0.0.7:0") {
			t.Fatalf("fwmark template: proto %d virtual %v; want 0, 0.0.0.7:0", tk.Proto(), tk.Virtual())
		}
	})
	t.Run("ftp", func(t *testing.T) {
		f, svc := persistFixture(t, func(o *ServiceOptions) { o.Port = 21 })
		c, _ := f.t.NewConn(svc, ptr(keyFrom("172.16.0.1", 1000, "192.168.1.10", 21)), syn, f.clk.now)
		if tk := f.templateOf(t, c.Entry); tk.Virtual().Port() != 0 || tk.DestPort() != 0 {
			t.Fatalf("FTP template ports %d/%d, want 0/0", tk.Virtual().Port(), tk.DestPort())
		}
	})
	t.Run("service port", func(t *testing.T) {
		f, svc := persistFixture(t, nil)
		c, _ := f.t.NewConn(svc, ptr(keyFrom("172.16.0.1", 1000, "192.168.1.10", 80)), syn, f.clk.now)
		if tk := f.templateOf(t, c.Entry); tk.Virtual().Port() != 80 || tk.DestPort() != 8080 {
			t.Fatalf("template ports %d/%d, want 80/8080", tk.Virtual().Port(), tk.DestPort())
		}
	})
}

func ptr(k Key) *Key { return &k }

func TestOnePacketScheduling(t *testing.T) {
	f := newFixture(t, 64, 3, nil)
	svc := f.service(t, func(o *ServiceOptions) { o.Proto, o.Port, o.OnePacket = ProtoUDP, 53, true })
	k := KeyFrom(ProtoUDP, netip.MustParseAddrPort("172.16.0.1:5353"), netip.MustParseAddrPort("192.168.1.10:53"))
	seen := map[*Conn]bool{}
	dests := map[uint32]int{}
	for i := 0; i < 6; i++ {
		c, v := f.t.NewConn(svc, &k, 0, f.clk.now)
		if v != VerdictOnePacket || c.Entry != nil || c.Dest == nil || c.Port != 8080 {
			t.Fatalf("datagram %d: %v %+v", i, v, c)
		}
		seen[&c] = true
		dests[c.Dest.ID]++
		if got, _ := f.t.Lookup(&k, f.clk.now); got != nil {
			t.Fatal("one-packet datagram left an entry")
		}
	}
	// Each datagram is scheduled on its own: round robin spreads them.
	if len(dests) != 3 || f.rr.calls != 6 {
		t.Fatalf("datagrams went to %v, scheduler calls %d", dests, f.rr.calls)
	}
	if f.t.Len() != 0 {
		t.Fatalf("Len = %d", f.t.Len())
	}
	for _, d := range f.dests {
		if d.InactConns() != 0 || d.ActiveConns() != 0 {
			t.Fatalf("%v counts %d/%d after one-packet", d.Addr, d.ActiveConns(), d.InactConns())
		}
	}
	// One-packet does not apply to TCP on a fwmark service.
	fsvc := f.service(t, func(o *ServiceOptions) { o.Port, o.FWMark, o.OnePacket = 0, 3, true })
	tk := clientKey(ProtoTCP, 1, 1)
	if _, v := f.t.NewConn(fsvc, &tk, syn, f.clk.now); v != VerdictNew {
		t.Fatalf("TCP on a -o fwmark service: %v, want new", v)
	}
	f.t.Expire(f.clk.now, 0)
	if st := f.t.Stats(); st.OnePacket != 6 {
		t.Fatalf("Stats.OnePacket = %d", st.OnePacket)
	}
}

func TestOnePacketPersistent(t *testing.T) {
	f := newFixture(t, 64, 3, nil)
	svc := f.service(t, func(o *ServiceOptions) {
		o.Proto, o.Port, o.OnePacket, o.Persistent, o.Timeout = ProtoUDP, 53, true, true, time.Minute
	})
	var first *Conn
	for i := 0; i < 5; i++ {
		k := KeyFrom(ProtoUDP, netip.AddrPortFrom(netip.MustParseAddr("172.16.0.1"), uint16(5000+i)), netip.MustParseAddrPort("192.168.1.10:53"))
		c, v := f.t.NewConn(svc, &k, 0, f.clk.advance(time.Second))
		if v != VerdictOnePacket || c.Entry != nil {
			t.Fatalf("datagram %d: %v", i, v)
		}
		if first == nil {
			first = &c
		} else if c.Dest != first.Dest {
			t.Fatal("persistent one-packet datagrams split across destinations")
		}
	}
	if f.t.Len() != 1 || f.rr.calls != 1 || first.Dest.PersistConns() != 1 {
		t.Fatalf("Len %d (want 1 template), calls %d, persist %d", f.t.Len(), f.rr.calls, first.Dest.PersistConns())
	}
	f.checkCounts(t)
}

// expire_nodest_conn: off, a connection whose destination was removed
// keeps it; on, its next client packet expires it (the caller drops the
// packet) and the next lookup finds nothing, while connections to
// available destinations and weight-0 (drained) ones continue.
func TestExpireNodestConn(t *testing.T) {
	for _, expire := range []bool{false, true} {
		f := newFixture(t, 64, 3, nil)
		svc := f.service(t, nil)
		f.t.settings.SetExpireNodestConn(expire)
		f.t.Expire(f.clk.now, 0)
		var keys [3]Key
		var conns [3]Conn
		for i := range keys {
			keys[i] = keyFrom("172.16.0.1", uint16(1000+i), "192.168.1.10", 80)
			conns[i], _ = f.t.NewConn(svc, &keys[i], syn, f.clk.now)
		}
		conns[0].Dest.SetAvailable(false) // ipvsadm -d
		conns[1].Dest.SetWeight(0)        // ipvsadm -e -w 0: drains
		now := f.clk.advance(time.Millisecond)
		for i, k := range keys {
			e, _ := f.t.Lookup(&k, now)
			if e == nil {
				t.Fatalf("expire=%v: conn %d lost", expire, i)
			}
			got := f.t.ExpireNodest(e, now)
			if want := expire && i == 0; got != want {
				t.Errorf("expire=%v: ExpireNodest(conn %d) = %v, want %v", expire, i, got, want)
			}
			if got && !f.t.ExpireNodest(e, now) {
				t.Errorf("expire=%v: a second packet of the batch was not dropped", expire)
			}
		}
		now = f.clk.advance(time.Millisecond)
		for i, k := range keys {
			e, _ := f.t.Lookup(&k, now)
			if gone := e == nil; gone != (expire && i == 0) {
				t.Errorf("expire=%v: conn %d gone = %v", expire, i, gone)
			}
		}
		f.checkCounts(t)
		if n := conns[0].Dest.ActiveConns() + conns[0].Dest.InactConns(); expire && n != 0 {
			t.Errorf("expired connection still counted on its destination: %d", n)
		}
	}
}

// TestNewConnBindsTheDestinationsMethod: a destination's own method (set
// by the control plane before a scheduler offers it) is what a new
// connection binds, even from a policy built before the destination
// existed: a worker in a batch begun on the old configuration must not
// bind a NAT real server added meanwhile as direct routing.
func TestNewConnBindsTheDestinationsMethod(t *testing.T) {
	f := newFixture(t, 64, 2, nil)
	svc := f.service(t, func(o *ServiceOptions) { o.Fwd = nil }) // the old policy: no table
	f.dests[0].SetFwd(FwdMasq)
	f.dests[1].SetFwd(FwdTunnel)
	now := f.clk.now
	for i, want := range []uint8{FwdMasq, FwdTunnel} {
		k := clientKey(ProtoTCP, 1, uint16(2000+i))
		c, v := f.t.NewConn(svc, &k, syn, now)
		if v != VerdictNew || c.Fwd != want || c.Entry.Fwd() != want {
			t.Errorf("connection %d to %v: verdict %v, method %d (entry %d), want %d", i, c.Dest.Addr, v, c.Fwd, c.Entry.Fwd(), want)
		}
	}
}
