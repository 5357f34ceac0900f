//go:build linux

package ipvssync

import (
	"bytes"
	"net/netip"
	"testing"

	"github.com/xlbproject/xlb/internal/ipvsadm"
)

// TestReceiverCounts feeds datagrams straight to the Receiver's handler:
// every bad one is counted by reason and nothing reaches the callback.
func TestReceiverCounts(t *testing.T) {
	peer := ap("10.88.0.1:40000")
	stranger := ap("10.88.0.9:40000")
	r := &Receiver{o: Options{SyncID: 7, MaxLen: 1472}, peers: []netip.Addr{peer.Addr()}}
	var got []Conn
	h := func(cs []Conn) { got = append(got, cs...) }

	r.handle(kernelV4, peer, h)
	r.handle(kernelV4, stranger, h)                                       // not a peer
	r.handle(make([]byte, 1473), peer, h)                                 // longer than maxlen
	r.handle(kernelV4[:3], peer, h)                                       // short
	r.handle(kernelV4[:20], peer, h)                                      // size field != length
	r.handle(fixSize(append(bytes.Clone(kernelV4), 0, 0, 0, 0)), peer, h) // 4 bytes beyond nr_conns: accepted, as the kernel
	other := bytes.Clone(kernelV4)
	other[1] = 8
	r.handle(other, peer, h) // sync ID 8
	bad := bytes.Clone(kernelV4)
	bad[9] = 99 // unknown protocol: record skipped
	r.handle(bad, peer, h)
	v0 := bytes.Clone(v0Message)
	v0[1] = 7
	r.handle(v0, peer, h)

	s := r.Stats()
	if len(got) != 4 || s.Records != 4 {
		t.Fatalf("handed %d records (counted %d), want 4", len(got), s.Records)
	}
	if s.Dropped[ReasonNotPeer] != 1 || s.Dropped[ReasonTooLong] != 1 || s.Dropped[ReasonShort] != 1 || s.Dropped[ReasonSize] != 1 {
		t.Errorf("Dropped = %v", s.Dropped)
	}
	if s.OtherSyncID != 1 || s.Skipped[ReasonProtocol] != 1 || s.Messages != 4 || s.V0Messages != 1 {
		t.Errorf("Stats = %+v", s)
	}

	// Sync ID 0 on a backup takes every ID.
	r = &Receiver{o: Options{MaxLen: 1472}}
	got = got[:0]
	r.handle(other, peer, h)
	if len(got) != 1 {
		t.Errorf("backup with sync ID 0 ignored sync ID 8")
	}
}

func TestOptions(t *testing.T) {
	o, err := Options{}.check()
	if err != nil || o.Group != DefaultGroup || o.Port != 8848 || o.TTL != 1 || o.Interface != "eth0" {
		t.Errorf("defaults = %+v, %v", o, err)
	}
	for name, o := range map[string]Options{
		"unicast group": {Group: netip.MustParseAddr("10.0.0.1")},
		"maxlen":        {MaxLen: 70000},
		"mixed peers":   {Peers: []netip.AddrPort{ap("10.0.0.1:1"), ap("[::1]:1")}},
		"invalid peer":  {Peers: []netip.AddrPort{{}}},
	} {
		if _, err := o.check(); err == nil {
			t.Errorf("%s: check accepted %+v", name, o)
		}
	}
	if _, err := NewSender(Options{Interface: "nonexistent-if0"}); err == nil {
		t.Error("NewSender on a missing interface succeeded")
	}
	if _, err := NewReceiver(Options{Interface: "nonexistent-if0"}); err == nil {
		t.Error("NewReceiver on a missing interface succeeded")
	}
}

func TestFromDaemon(t *testing.T) {
	role, o, err := FromDaemon(ipvsadm.Daemon{State: "backup", McastInterface: "eth1", SyncID: 3, SyncMaxLen: 1400,
		McastGroup: netip.MustParseAddr("239.1.1.1"), McastPort: 9000, McastTTL: 4})
	want := Options{Interface: "eth1", SyncID: 3, MaxLen: 1400, Group: netip.MustParseAddr("239.1.1.1"), Port: 9000, TTL: 4}
	if err != nil || role != Backup || o.Interface != want.Interface || o.SyncID != 3 || o.MaxLen != 1400 || o.Group != want.Group || o.Port != 9000 || o.TTL != 4 {
		t.Errorf("FromDaemon = %v, %+v, %v", role, o, err)
	}
	if role, o, err = FromDaemon(ipvsadm.Daemon{State: "master", McastInterface: "eth0", SyncID: 1}); err != nil || role != Master {
		t.Fatalf("FromDaemon(master) = %v, %v", role, err)
	}
	if got := DaemonLine(role, o); got != "master sync daemon (mcast=eth0, syncid=1)" {
		t.Errorf("DaemonLine = %q", got)
	}
	if _, _, err := FromDaemon(ipvsadm.Daemon{State: "slave"}); err == nil {
		t.Error("FromDaemon accepted role slave")
	}
}

func TestSenderLimits(t *testing.T) {
	s, err := NewSender(Options{Interface: "lo", MaxLen: 100, Peers: []netip.AddrPort{ap("127.0.0.1:9")}})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if s.Options().MaxLen != minMaxLen {
		t.Errorf("MaxLen 100 became %d, want it raised to %d", s.Options().MaxLen, minMaxLen)
	}
	bad := Conn{Protocol: ProtoTCP, Client: ap("10.0.0.1:1"), Virtual: ap("[::1]:80"), Dest: ap("10.0.0.2:80")}
	if err := s.Add(&bad); err == nil || s.Stats().BadRecords != 1 || s.Stats().Records != 0 {
		t.Errorf("Add(mixed family) = %v, stats %+v", err, s.Stats())
	}
	if err := s.Flush(); err != nil || s.Stats().Messages != 0 {
		t.Errorf("Flush of an empty message = %v, stats %+v", err, s.Stats())
	}
	for range 20 { // 399-byte messages: several flushes to the discard port
		c := connV4
		if err := s.Add(&c); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.Flush(); err != nil {
		t.Fatal(err)
	}
	if st := s.Stats(); st.Records != 20 || st.Messages < 2 || st.Bytes > st.Messages*uint64(minMaxLen) {
		t.Errorf("stats %+v", st)
	}
}
