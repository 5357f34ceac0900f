package laddr

import (
	"net/netip"
	"testing"
)

// FuzzPool runs the operations a byte string spells (allocate, release
// a live or an arbitrary port, reserve a given port, change the address
// set) against a model:
// a pool never panics, never hands out a port that is out in the same
// bucket, and takes back exactly what it handed out.
func FuzzPool(f *testing.F) {
	f.Add([]byte{0, 0, 0, 0, 0, 0, 1, 0, 2, 0, 0, 3})
	f.Add([]byte{0x13, 0, 1, 0, 0, 2, 0, 1, 0, 3, 0, 0, 0, 1, 2, 0, 0, 3, 1, 0, 0, 0, 0})
	f.Add([]byte{0x22, 3, 0, 0, 0, 0, 1, 1, 1, 3, 2, 0, 0, 0, 2, 1, 2, 3})
	f.Add([]byte{0x00, 1, 0x81, 0x05, 1, 0x81, 0x05, 0, 0x01, 0x05, 2, 0, 0, 1, 0x82, 0x12, 3, 0x01, 0})
	f.Fuzz(func(t *testing.T, data []byte) {
		if len(data) == 0 {
			return
		}
		workers := 1 + int(data[0]&3)
		buckets := 1 << (data[0] >> 4 & 3)
		o := Options{Worker: int(data[0]>>2&3) % workers, Workers: workers, MinPort: 1025, MaxPort: 1040, Buckets: buckets}
		p, err := New(o)
		if err != nil {
			t.Fatal(err)
		}
		all := []netip.Addr{netip.MustParseAddr("10.0.0.1"), netip.MustParseAddr("10.0.0.2"), netip.MustParseAddr("2001:db8::1")}
		rss := [][16]byte{a16("10.1.1.1"), a16("10.1.1.2"), a16("2001:db8::9")}
		type slot struct {
			laddr  [16]byte
			bucket int32
			lport  uint16
		}
		out := map[slot]bool{}
		configured := map[[16]byte]bool{}
		setAddrs := func(mask byte) {
			var as []netip.Addr
			clear(configured)
			for k, a := range all {
				if mask&(1<<k) != 0 {
					as = append(as, a)
					configured[a.As16()] = true
				}
			}
			if err := p.SetAddrs(as); err != nil {
				t.Fatal(err)
			}
		}
		setAddrs(7)
		var leases []lease
		for data = data[1:]; len(data) >= 3; data = data[3:] {
			op, x, y := data[0]&3, data[1], data[2]
			if op == 1 && x&0x80 != 0 { // reserve a given port (a synced connection's)
				la := all[int(x)%len(all)].As16()
				rs, rport := rss[int(y)%len(rss)], uint16(80+y>>4)
				port := 1022 + uint16(y&31)
				s := slot{la, p.bucketOf(&rs, rport), port}
				_, live := p.Index(la)
				want := live && port >= 1025 && port <= 1040 && int(port)%workers == o.Worker && !out[s]
				if got := p.Reserve(la, rs, rport, port); got != want {
					t.Fatalf("Reserve(%v, %d) = %v, model says %v", la, port, got, want)
				}
				if want {
					out[s] = true
					leases = append(leases, lease{la, rs, rport, port})
				}
				continue
			}
			switch op {
			case 0, 1: // allocate
				la := all[int(x)%len(all)].As16()
				rs, rport := rss[int(y)%len(rss)], uint16(80+y>>4)
				i, ok := p.Index(la)
				if ok != configured[la] {
					t.Fatalf("Index(%v) = %v, configured %v", la, ok, configured[la])
				}
				port, got := p.Alloc(i, rs, rport)
				b := p.bucketOf(&rs, rport)
				if !got {
					if ok {
						n := 0
						for s := range out {
							if s.laddr == la && s.bucket == b {
								n++
							}
						}
						if n != p.Share() {
							t.Fatalf("Alloc failed with %d of %d ports out", n, p.Share())
						}
					}
					continue
				}
				s := slot{la, b, port}
				if out[s] {
					t.Fatalf("port %d of %v handed out twice in bucket %d", port, la, b)
				}
				out[s] = true
				leases = append(leases, lease{la, rs, rport, port})
			case 2: // release a lease, or an arbitrary port
				var l lease
				if len(leases) > 0 && x&1 == 0 {
					k := int(y) % len(leases)
					l = leases[k]
					leases[k] = leases[len(leases)-1]
					leases = leases[:len(leases)-1]
				} else {
					l = lease{all[int(x>>1)%len(all)].As16(), rss[int(y)%len(rss)], 80, 1020 + uint16(y>>2)}
				}
				s := slot{l.laddr, p.bucketOf(&l.rs, l.rport), l.lport}
				if got := p.Release(l.laddr, l.rs, l.rport, l.lport); got != out[s] {
					t.Fatalf("Release(%v) = %v, model says %v", l, got, out[s])
				}
				delete(out, s)
				// An arbitrary release may have freed a lease's port.
				for k := 0; k < len(leases); k++ {
					m := leases[k]
					if !out[slot{m.laddr, p.bucketOf(&m.rs, m.rport), m.lport}] {
						leases[k] = leases[len(leases)-1]
						leases = leases[:len(leases)-1]
						k--
					}
				}
			case 3:
				setAddrs(x)
			}
		}
		for _, l := range leases {
			if !p.Release(l.laddr, l.rs, l.rport, l.lport) {
				t.Fatalf("final Release(%v) = false", l)
			}
		}
		if s := p.Stats(); s.Allocs+s.Reserved != s.Releases {
			t.Fatalf("Stats %+v: allocs and releases differ after every lease came back", s)
		}
	})
}
