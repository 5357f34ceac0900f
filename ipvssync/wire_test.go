package ipvssync

import (
	"bytes"
	"net/netip"
	"reflect"
	"testing"
)

func ap(s string) netip.AddrPort { return netip.MustParseAddrPort(s) }

// kernelV4 is a v1 message as a kernel master writes it for one
// established TCP DR connection 10.0.0.1:40000 -> 192.0.2.10:80 ->
// 10.1.0.5:80, sync ID 7, timeout 900 s, laid out field by field from
// struct ip_vs_sync_mesg and struct ip_vs_sync_v4.
var kernelV4 = []byte{
	// struct ip_vs_sync_mesg
	0x00,       // reserved: must be zero
	0x07,       // syncid
	0x00, 0x2c, // size (__be16): 8 + 36 = 44
	0x01,       // nr_conns
	0x01,       // version: SYNC_PROTO_VER
	0x00, 0x00, // spare
	// struct ip_vs_sync_v4
	0x00,       // type: 0 = IPv4
	0x06,       // protocol: IPPROTO_TCP
	0x00, 0x24, // ver_size (__be16): version 0 << 12 | size 36
	0x00, 0x00, 0x00, 0x03, // flags (__be32): IP_VS_CONN_F_DROUTE
	0x00, 0x01, // state (__be16): IP_VS_TCP_S_ESTABLISHED
	0x9c, 0x40, // cport (__be16): 40000
	0x00, 0x50, // vport: 80
	0x00, 0x50, // dport: 80
	0x00, 0x00, 0x00, 0x00, // fwmark (__be32)
	0x00, 0x00, 0x03, 0x84, // timeout (__be32, seconds): 900
	10, 0, 0, 1, // caddr
	192, 0, 2, 10, // vaddr
	10, 1, 0, 5, // daddr
}

var connV4 = Conn{
	Protocol: ProtoTCP,
	Client:   ap("10.0.0.1:40000"),
	Virtual:  ap("192.0.2.10:80"),
	Dest:     ap("10.1.0.5:80"),
	Flags:    FlagDRoute,
	State:    TCPEstablished,
	Timeout:  900,
}

// kernelV6Seq is a v1 message with two records: an IPv6 NAT connection
// carrying IPVS_OPT_SEQ_DATA, then (after 2 bytes of padding) an IPv4
// persistence template with the sip PE's data and name, then the xlb
// local-address option on a FULLNAT IPv4 record.
var kernelV6Seq = []byte{
	// struct ip_vs_sync_mesg
	0x00, 0x00, // reserved, syncid 0
	0x00, 0xcc, // size: 8 + 98 + 2 (padding) + 52 + 44 = 204
	0x03,       // nr_conns
	0x01,       // version
	0x00, 0x00, // spare

	// record 1: struct ip_vs_sync_v6 (72) + seq option (2 + 24) = 98
	0x01,       // type: STYPE_F_INET6
	0x06,       // protocol TCP
	0x00, 0x62, // ver_size: size 98
	0x00, 0x00, 0x06, 0x00, // flags: IP_VS_CONN_F_MASQ | IN_SEQ | OUT_SEQ
	0x00, 0x03, // state: IP_VS_TCP_S_SYN_RECV
	0x30, 0x39, // cport 12345
	0x01, 0xbb, // vport 443
	0x20, 0xfb, // dport 8443
	0x00, 0x00, 0x00, 0x00, // fwmark
	0x00, 0x00, 0x00, 0x3c, // timeout 60
	0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x01, // caddr 2001:db8::1
	0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x0a, // vaddr 2001:db8::a
	0xfd, 0x00, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x05, // daddr fd00::5
	0x01, 0x18, // IPVS_OPT_SEQ_DATA, length 24
	0x00, 0x00, 0x00, 0x64, // in_seq.init_seq 100 (__be32: hton_seq)
	0x00, 0x00, 0x00, 0x02, // in_seq.delta 2
	0x00, 0x00, 0x00, 0x01, // in_seq.previous_delta 1
	0x00, 0x00, 0x01, 0x00, // out_seq.init_seq 256
	0xff, 0xff, 0xff, 0xfe, // out_seq.delta -2
	0x00, 0x00, 0x00, 0x00, // out_seq.previous_delta 0
	0x00, 0x00, // padding to 4 bytes before the next record (98 -> 100)

	// record 2: struct ip_vs_sync_v4 (36) + PE_DATA (2+9) + PE_NAME (2+3) = 52
	0x00,       // type IPv4
	0x11,       // protocol UDP
	0x00, 0x34, // ver_size: size 52
	0x00, 0x00, 0x10, 0x03, // flags: TEMPLATE | DROUTE
	0x00, 0x00, // state: IP_VS_CTPL_S_NONE
	0x00, 0x00, // cport 0 (templates)
	0x13, 0xc4, // vport 5060
	0x13, 0xc4, // dport 5060
	0x00, 0x00, 0x00, 0x00, // fwmark
	0x00, 0x00, 0x01, 0x68, // timeout 360
	10, 9, 0, 0, // caddr: client masked with the persistence netmask /16
	192, 0, 2, 20, // vaddr
	10, 1, 0, 6, // daddr
	0x02, 0x09, 'c', 'a', 'l', 'l', '-', 'i', 'd', '-', '1', // IPVS_OPT_PE_DATA, 9 bytes of Call-ID
	0x03, 0x03, 's', 'i', 'p', // IPVS_OPT_PE_NAME "sip"

	// record 3 (message offset 160, aligned): FULLNAT = MASQ + xlb option, 36 + 2 + 6 = 44
	0x00, 0x06, 0x00, 0x2c, // type IPv4, TCP, size 44
	0x00, 0x00, 0x01, 0x00, // flags: MASQ | INACTIVE
	0x00, 0x02, // state SYN_SENT
	0xd4, 0x31, 0x00, 0x50, 0x1f, 0x90, // cport 54321, vport 80, dport 8080
	0x00, 0x00, 0x00, 0x00, // fwmark
	0x00, 0x00, 0x00, 0x78, // timeout 120
	10, 0, 0, 2, 192, 0, 2, 10, 10, 1, 0, 7, // caddr vaddr daddr
	0x58, 0x06, // OptXLBLocal ('X' = IPVS_OPT_F_PARAM | 0x18), length 6
	0x75, 0x31, // lport 30001
	10, 1, 0, 254, // laddr
}

var connsV6Seq = []Conn{{
	Protocol: ProtoTCP,
	Client:   ap("[2001:db8::1]:12345"),
	Virtual:  ap("[2001:db8::a]:443"),
	Dest:     ap("[fd00::5]:8443"),
	Flags:    FlagMasq | FlagSeqMask,
	State:    TCPSynRecv,
	Timeout:  60,
	InSeq:    Seq{100, 2, 1},
	OutSeq:   Seq{256, 0xfffffffe, 0},
}, {
	Protocol: ProtoUDP,
	Client:   ap("10.9.0.0:0"),
	Virtual:  ap("192.0.2.20:5060"),
	Dest:     ap("10.1.0.6:5060"),
	Flags:    FlagTemplate | FlagDRoute,
	State:    TemplateNone,
	Timeout:  360,
	PEData:   []byte("call-id-1"),
	PEName:   "sip",
}, {
	Protocol: ProtoTCP,
	Client:   ap("10.0.0.2:54321"),
	Virtual:  ap("192.0.2.10:80"),
	Dest:     ap("10.1.0.7:8080"),
	Flags:    FlagMasq | FlagInactive,
	State:    TCPSynSent,
	Timeout:  120,
	Local:    ap("10.1.0.254:30001"),
}}

// synced is what a backup holds for c: FlagSync set, unsupported bits
// masked off.
func synced(cs ...Conn) []Conn {
	out := make([]Conn, len(cs))
	for i, c := range cs {
		c.Flags = c.Flags&FlagBackupMask | FlagSync
		out[i] = c
	}
	return out
}

func fixSize(b []byte) []byte {
	b = bytes.Clone(b)
	b[2], b[3] = byte(len(b)>>8), byte(len(b))
	return b
}

func TestStructSizes(t *testing.T) {
	if len(kernelV4) != HeaderLen+RecordLenV4 {
		t.Fatalf("kernelV4 is %d bytes, want %d", len(kernelV4), HeaderLen+RecordLenV4)
	}
	if want := HeaderLen + 98 + 2 + 52 + 44; len(kernelV6Seq) != want {
		t.Fatalf("kernelV6Seq is %d bytes, want %d", len(kernelV6Seq), want)
	}
}

func TestDecodeKernelFrames(t *testing.T) {
	var d Decoder
	for _, tc := range []struct {
		name string
		msg  []byte
		want []Conn
		id   uint8
	}{
		{"v4 DR", kernelV4, synced(connV4), 7},
		{"v6 seq, template with PE, fullnat", kernelV6Seq, synced(connsV6Seq...), 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := d.Decode(tc.msg)
			if r.Dropped != ReasonNone || r.Skipped != ([NumReasons]uint32{}) {
				t.Fatalf("Decode dropped %v, skipped %v", r.Dropped, r.Skipped)
			}
			if r.Header != (Header{Version: 1, SyncID: tc.id, Size: uint16(len(tc.msg)), NConns: uint8(len(tc.want))}) {
				t.Errorf("header = %+v", r.Header)
			}
			if !reflect.DeepEqual(r.Conns, tc.want) {
				t.Errorf("Decode =\n%+v\nwant\n%+v", r.Conns, tc.want)
			}
		})
	}
}

// TestEncodeMatchesKernel checks that xlb writes byte for byte what the
// kernel master writes, so a kernel backup reads xlb's stream.
func TestEncodeMatchesKernel(t *testing.T) {
	got, err := AppendMessage(nil, 7, []Conn{connV4})
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, kernelV4) {
		t.Errorf("AppendMessage =\n% x\nwant\n% x", got, kernelV4)
	}
	got, err = AppendMessage(nil, 0, connsV6Seq)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, kernelV6Seq) {
		t.Errorf("AppendMessage =\n% x\nwant\n% x", got, kernelV6Seq)
	}
	// FlagHashed is never sent (ip_vs_sync_conn masks it).
	c := connV4
	c.Flags |= FlagHashed
	got, _ = AppendMessage(nil, 7, []Conn{c})
	if !bytes.Equal(got, kernelV4) {
		t.Errorf("hashed flag sent: % x", got[12:16])
	}
}

// TestKernelSkipsXLBOption decodes the FULLNAT record as a kernel backup
// would, emulating its option loop: the xlb option has IPVS_OPT_F_PARAM
// and an unknown type, so it is skipped and the record is kept.
func TestKernelSkipsXLBOption(t *testing.T) {
	rec := kernelV6Seq[160:]
	p := RecordLenV4
	for p < len(rec) {
		ptype, plen := rec[p], int(rec[p+1])
		p += 2
		switch ptype &^ OptFParam {
		case OptSeqData, OptPEData, OptPEName:
			t.Fatalf("xlb option %#x taken for kernel option %d", ptype, ptype&^OptFParam)
		default:
			if ptype&OptFParam == 0 {
				t.Fatalf("kernel would drop the record: mandatory unknown option %#x", ptype)
			}
		}
		p += plen
	}
	// And xlb's decoder, seeing the same option without the PARAM bit
	// (a mandatory unknown option), drops the record as the kernel does.
	m := bytes.Clone(kernelV6Seq)
	m[160+RecordLenV4] = 0x18
	r := new(Decoder).Decode(m)
	if len(r.Conns) != 2 || r.Skipped[ReasonUnknownOption] != 1 || r.Dropped != ReasonNone {
		t.Errorf("mandatory unknown option: %d conns, skipped %v, dropped %v", len(r.Conns), r.Skipped, r.Dropped)
	}
	// An unknown optional option is skipped, the record kept.
	m[160+RecordLenV4] = OptFParam | 0x33
	r = new(Decoder).Decode(m)
	if len(r.Conns) != 3 || r.Conns[2].Local.IsValid() || r.Dropped != ReasonNone {
		t.Errorf("optional unknown option: %d conns, dropped %v", len(r.Conns), r.Dropped)
	}
}

func TestRoundTrip(t *testing.T) {
	var cs []Conn
	for i := range 300 {
		c := connsV6Seq[i%3]
		c.Client = netip.AddrPortFrom(c.Client.Addr(), uint16(i))
		if i%5 == 0 {
			c = connV4
			c.Fwmark = uint32(i)
		}
		cs = append(cs, c)
	}
	b, err := NewBuilder(1472, 3)
	if err != nil {
		t.Fatal(err)
	}
	var got []Conn
	var d Decoder
	msgs := 0
	flush := func() {
		msg := b.Bytes()
		if len(msg) > 1472 {
			t.Fatalf("message of %d bytes, limit 1472", len(msg))
		}
		r := d.Decode(msg)
		if r.Dropped != ReasonNone || int(r.Header.NConns) != len(r.Conns) {
			t.Fatalf("Decode dropped %v, %d of %d records", r.Dropped, len(r.Conns), r.Header.NConns)
		}
		for _, c := range r.Conns {
			c.PEData = bytes.Clone(c.PEData)
			got = append(got, c)
		}
		b.Reset()
		msgs++
	}
	for i := range cs {
		ok, err := b.Add(&cs[i])
		if err != nil {
			t.Fatal(err)
		}
		if !ok {
			flush()
			if ok, _ = b.Add(&cs[i]); !ok {
				t.Fatal("record does not fit an empty message")
			}
		}
	}
	flush()
	if !reflect.DeepEqual(got, synced(cs...)) {
		t.Errorf("round trip differs")
	}
	if msgs < 10 {
		t.Errorf("%d messages for 300 records in 1472 bytes", msgs)
	}
}

func TestBuilderRecordLimit(t *testing.T) {
	b, _ := NewBuilder(maxMaxLen, 1)
	c := connV4
	for i := range MaxConnsPerMessage {
		if ok, err := b.Add(&c); !ok || err != nil {
			t.Fatalf("Add %d = %v, %v", i, ok, err)
		}
	}
	if ok, _ := b.Add(&c); ok {
		t.Fatal("Add accepted record 256: nr_conns is 8 bits")
	}
	if b.Len() != 255 {
		t.Fatalf("Len = %d", b.Len())
	}
}

func TestEncodeRejects(t *testing.T) {
	for name, c := range map[string]Conn{
		"mixed family": {Protocol: ProtoTCP, Client: ap("10.0.0.1:1"), Virtual: ap("[::1]:80"), Dest: ap("10.0.0.2:80")},
		"zero":         {},
		"pe data":      {Protocol: ProtoUDP, Client: connV4.Client, Virtual: connV4.Virtual, Dest: connV4.Dest, PEData: make([]byte, 256)},
		"pe name":      {Protocol: ProtoUDP, Client: connV4.Client, Virtual: connV4.Virtual, Dest: connV4.Dest, PEData: []byte{1}, PEName: "12345678901234567"},
		"pe data only": {Protocol: ProtoUDP, Client: connV4.Client, Virtual: connV4.Virtual, Dest: connV4.Dest, PEData: []byte{1}},
	} {
		b, _ := NewBuilder(1472, 0)
		if ok, err := b.Add(&c); ok || err == nil {
			t.Errorf("%s: Add = %v, %v, want an error", name, ok, err)
		}
	}
	if _, err := NewBuilder(100, 0); err == nil {
		t.Error("NewBuilder(100) accepted a limit below one record")
	}
}

// v0Message is the legacy format (ip_vs_sync_mesg_v0 + ip_vs_sync_conn_v0)
// with two records: a UDP connection and a TCP one with seq options.
var v0Message = []byte{
	// struct ip_vs_sync_mesg_v0
	0x02,       // nr_conns
	0x05,       // syncid
	0x00, 0x4c, // size: 4 + 24 + 24 + 24 = 76
	// struct ip_vs_sync_conn_v0
	0x00,       // reserved
	0x11,       // protocol UDP
	0x00, 0x35, // cport 53
	0x00, 0x35, // vport 53
	0x00, 0x35, // dport 53
	10, 0, 0, 1, // caddr
	192, 0, 2, 1, // vaddr
	10, 1, 0, 1, // daddr
	0x00, 0x03, // flags (__be16): DROUTE
	0x00, 0x00, // state: NORMAL
	// record 2
	0x00, 0x06, 0x04, 0x00, 0x00, 0x50, 0x00, 0x50, // reserved, TCP, cport 1024, vport 80, dport 80
	10, 0, 0, 2, 192, 0, 2, 1, 10, 1, 0, 2,
	0x02, 0x00, // flags: OUT_SEQ | MASQ
	0x00, 0x01, // state ESTABLISHED
	// struct ip_vs_sync_conn_options, memcpy'd in host order (little-endian)
	0x07, 0, 0, 0, 0x01, 0, 0, 0, 0, 0, 0, 0, // in_seq 7, 1, 0
	0x08, 0, 0, 0, 0x02, 0, 0, 0, 0x01, 0, 0, 0, // out_seq 8, 2, 1
}

func TestDecodeV0(t *testing.T) {
	r := new(Decoder).Decode(v0Message)
	if r.Dropped != ReasonNone || r.Header.Version != 0 || r.Header.SyncID != 5 || len(r.Conns) != 2 {
		t.Fatalf("Decode(v0) = %+v", r)
	}
	want := []Conn{{
		Protocol: ProtoUDP, Client: ap("10.0.0.1:53"), Virtual: ap("192.0.2.1:53"), Dest: ap("10.1.0.1:53"),
		Flags: FlagDRoute | FlagSync,
	}, {
		Protocol: ProtoTCP, Client: ap("10.0.0.2:1024"), Virtual: ap("192.0.2.1:80"), Dest: ap("10.1.0.2:80"),
		Flags: FlagOutSeq | FlagSync, State: TCPEstablished, InSeq: Seq{7, 1, 0}, OutSeq: Seq{8, 2, 1},
	}}
	if !reflect.DeepEqual(r.Conns, want) {
		t.Errorf("Decode(v0) =\n%+v\nwant\n%+v", r.Conns, want)
	}
	// Seq flag but options cut off: the rest is dropped.
	short := fixSize(v0Message[:len(v0Message)-4])
	r = new(Decoder).Decode(short)
	if r.Dropped != ReasonV0Bogus || len(r.Conns) != 1 {
		t.Errorf("truncated v0: dropped %v, %d conns", r.Dropped, len(r.Conns))
	}
}

func TestDecodeBad(t *testing.T) {
	mod := func(b []byte, f func([]byte)) []byte { b = bytes.Clone(b); f(b); return b }
	for _, tc := range []struct {
		name    string
		msg     []byte
		dropped Reason
		skipped Reason
		conns   int
	}{
		{"empty", nil, ReasonShort, 0, 0},
		{"3 bytes", []byte{0, 1, 0}, ReasonShort, 0, 0},
		{"size too big", mod(kernelV4, func(b []byte) { b[3]++ }), ReasonSize, 0, 0},
		{"truncated datagram", kernelV4[:40], ReasonSize, 0, 0},
		{"nr_conns beyond data", mod(kernelV4, func(b []byte) { b[4] = 2 }), ReasonTooSmall, 0, 1},
		{"record size past end", mod(kernelV4, func(b []byte) { b[11] = 37 }), ReasonRecordEnd, 0, 0},
		{"record version 1", mod(kernelV4, func(b []byte) { b[10] = 0x10 }), ReasonRecordVer, 0, 0},
		{"record type 2", mod(kernelV4, func(b []byte) { b[8] = 2 }), ReasonRecordType, 0, 0},
		{"record size below fixed", mod(kernelV4, func(b []byte) { b[11] = 30 }), ReasonRecordSize, 0, 0},
		{"ipv6 type on v4 length", mod(kernelV4, func(b []byte) { b[8] = 1 }), ReasonRecordSize, 0, 0},
		{"option header cut", fixSize(append(bytes.Clone(kernelV4[:HeaderLen]), recordWithOpts(0x01)...)), ReasonOptionTrunc, 0, 0},
		{"option zero length", fixSize(append(bytes.Clone(kernelV4[:HeaderLen]), recordWithOpts(0x02, 0x00)...)), ReasonOptionTrunc, 0, 0},
		{"seq wrong length", fixSize(append(bytes.Clone(kernelV4[:HeaderLen]), recordWithOpts(0x01, 0x02, 0, 0)...)), ReasonOptionBad, 0, 0},
		{"pe name too long", fixSize(append(bytes.Clone(kernelV4[:HeaderLen]), recordWithOpts(append([]byte{0x03, 17}, make([]byte, 17)...)...)...)), ReasonOptionBad, 0, 0},
		{"pe data twice", fixSize(append(bytes.Clone(kernelV4[:HeaderLen]), recordWithOpts(0x02, 1, 'a', 0x02, 1, 'b')...)), ReasonOptionBad, 0, 0},
		{"pe data without name", fixSize(append(bytes.Clone(kernelV4[:HeaderLen]), recordWithOpts(0x02, 1, 'a')...)), 0, ReasonPE, 0},
		{"pe name first", fixSize(append(bytes.Clone(kernelV4[:HeaderLen]), recordWithOpts(0x03, 1, 'x', 0x02, 1, 'a')...)), 0, 0, 1},
		{"bad xlb option", fixSize(append(bytes.Clone(kernelV4[:HeaderLen]), recordWithOpts(0x58, 3, 1, 2, 3)...)), 0, ReasonLocal, 0},
		{"unknown protocol", mod(kernelV4, func(b []byte) { b[9] = 1 }), 0, ReasonProtocol, 0},
		{"tcp state 11", mod(kernelV4, func(b []byte) { b[17] = 11 }), 0, ReasonState, 0},
		{"udp state 1", mod(kernelV4, func(b []byte) { b[9] = 17 }), 0, ReasonState, 0},
		{"template any state", mod(kernelV4, func(b []byte) { b[14] = 0x10; b[17] = 200 }), 0, 0, 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := new(Decoder).Decode(tc.msg)
			if r.Dropped != tc.dropped || len(r.Conns) != tc.conns {
				t.Errorf("Decode = dropped %v, %d conns; want %v, %d", r.Dropped, len(r.Conns), tc.dropped, tc.conns)
			}
			if tc.skipped != 0 && r.Skipped[tc.skipped] != 1 {
				t.Errorf("Skipped = %v, want one %v", r.Skipped, tc.skipped)
			}
		})
	}
}

// recordWithOpts is connV4's record with the given option bytes after
// it, its size counting them (the message size is fixed by fixSize).
func recordWithOpts(opts ...byte) []byte {
	rec := append(bytes.Clone(kernelV4[HeaderLen:]), opts...)
	rec[3] = byte(len(rec))
	return append([]byte(nil), append(rec, make([]byte, (4-len(rec)%4)%4)...)[:len(rec)]...)
}

func TestDaemonLine(t *testing.T) {
	for _, tc := range []struct {
		role Role
		o    Options
		want string
	}{
		{Master, Options{Interface: "eth0", SyncID: 1}, "master sync daemon (mcast=eth0, syncid=1)"},
		{Backup, Options{Interface: "eth1", SyncID: 0, MaxLen: 1472, Group: DefaultGroup, Port: 8848, TTL: 1},
			"backup sync daemon (mcast=eth1, syncid=0, maxlen=1472, group=224.0.0.81, port=8848, ttl=1)"},
		{Master, Options{Interface: "eth0", SyncID: 2, Group: netip.MustParseAddr("ff02::1:2"), Peers: []netip.AddrPort{ap("10.0.0.2:8848")}},
			"master sync daemon (mcast=eth0, syncid=2, group=ff02::1:2, peers=10.0.0.2:8848)"},
	} {
		if got := DaemonLine(tc.role, tc.o); got != tc.want {
			t.Errorf("DaemonLine = %q, want %q", got, tc.want)
		}
	}
}
