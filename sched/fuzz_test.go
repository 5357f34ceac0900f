package sched

import (
	"net/netip"
	"slices"
	"testing"
	"time"
)

// FuzzSchedule interleaves destination adds, removals, weight and
// threshold edits, connection changes, clock steps and decisions, for a
// scheduler and flags chosen by the first two bytes. It checks that no
// decision panics or returns a destination that is not in the service,
// is quiesced, unavailable or overloaded (lblc may keep a cached
// destination whose threshold flag is set, as the kernel's does), and
// that the overload flag always equals a model of ip_vs_bind_dest,
// ip_vs_unbind_dest and __ip_vs_update_dest. The seed corpus is in
// testdata/fuzz/FuzzSchedule.
func FuzzSchedule(f *testing.F) {
	for i := range Names() {
		f.Add([]byte{byte(i), 0, 0, 1, 3, 0, 2, 2, 0, 3, 1, 7, 9, 9, 7, 1, 2, 4, 1, 0, 7, 5, 5, 3, 1, 2, 7, 0, 0, 1, 1, 0, 9, 3, 3})
		f.Add([]byte{byte(i), 0x18, 0, 5, 4, 3, 5, 2, 4, 5, 0, 4, 5, 0, 9, 1, 7, 8, 200, 0, 6, 5, 1, 0, 0, 4, 7, 3, 3, 2, 5, 0, 9, 7, 31})
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		if len(data) < 2 {
			return
		}
		name := Names()[int(data[0])%len(Names())]
		now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
		s, err := New(name, Options{
			Flags: Flags(data[1]) & flagsMask, Seed: 1, CacheSize: 16, MHTableSize: 251,
			Clock: func() time.Time { return now },
		})
		if err != nil {
			t.Fatal(err)
		}
		data = data[2:]

		const n = 12
		universe := make([]*Dest, n)
		for i := range universe {
			a := netip.AddrFrom4([4]byte{10, 0, 0, byte(i + 1)})
			if i%4 == 3 {
				a = netip.AddrFrom16([16]byte{0x20, 0x01, 0x0d, 0xb8, 15: byte(i)})
			}
			universe[i] = NewDest(a, 80, 1)
		}
		type model struct {
			u, l        uint32
			active, ina int32
			over        bool
		}
		m := make([]model, n)
		var list []*Dest // newest first
		idx := func(d *Dest) int { return slices.Index(universe, d) }
		check := func(step int) {
			for i, d := range universe {
				if d.Overloaded() != m[i].over {
					t.Fatalf("step %d: destination %d overloaded = %v, model %v (u %d l %d active %d inactive %d)",
						step, i, d.Overloaded(), m[i].over, m[i].u, m[i].l, m[i].active, m[i].ina)
				}
			}
		}
		bind := func(i int) {
			universe[i].Bind(false)
			m[i].ina++
			if tot := uint32(m[i].active + m[i].ina); m[i].u != 0 && tot >= m[i].u {
				m[i].over = true
			}
		}
		decide := func(step int, a, b byte) {
			fl := &Flow{Proto: []uint8{6, 17, 1, 132}[b%4], Src: netip.AddrFrom4([4]byte{192, 0, 2, a}),
				SrcPort: uint16(b) * 257, Dst: netip.AddrFrom4([4]byte{198, 51, 100, b % 8}), DstPort: 80}
			var cached *Dest
			if l, ok := s.(*lblc); ok {
				if e := l.cache.lookup(fl.Dst); e != none {
					cached = l.dest[e]
				}
			}
			d := s.Schedule(fl)
			if d == nil {
				return
			}
			switch {
			case !slices.Contains(list, d):
				t.Fatalf("step %d: %s chose destination %d, not in the service", step, name, idx(d))
			case d.Weight() <= 0:
				t.Fatalf("step %d: %s chose destination %d of weight %d", step, name, idx(d), d.Weight())
			case !d.Available():
				t.Fatalf("step %d: %s chose unavailable destination %d", step, name, idx(d))
			case d.Overloaded() && d != cached:
				t.Fatalf("step %d: %s chose overloaded destination %d", step, name, idx(d))
			}
			bind(idx(d)) // the new connection
		}
		for step := 0; len(data) >= 3; step, data = step+1, data[3:] {
			op, a, b := data[0]%10, data[1], data[2]
			i := int(a) % n
			d := universe[i]
			in := slices.Contains(list, d)
			switch op {
			case 0: // ipvsadm -a
				if !in {
					d.SetWeight(int32(b % 5))
					d.SetAvailable(true)
					list = append([]*Dest{d}, list...)
					s.Update(list)
				}
			case 1: // ipvsadm -d
				if in {
					d.SetAvailable(false)
					list = slices.DeleteFunc(list, func(x *Dest) bool { return x == d })
					s.Update(list)
				}
			case 2: // ipvsadm -e -w
				d.SetWeight(int32(b % 5))
				if in {
					s.Update(list)
				}
			case 3: // ipvsadm -e -x -y
				u, l := uint32(b%6), uint32(b/6%4)
				d.SetThresholds(u, l)
				if u == 0 || u > m[i].u {
					m[i].over = false
				}
				m[i].u, m[i].l = u, l
				if in {
					s.Update(list)
				}
			case 4: // a connection from another worker
				bind(i)
			case 5: // ESTABLISHED
				if m[i].ina > 0 {
					d.Activate()
					m[i].ina--
					m[i].active++
				}
			case 6: // a connection expires
				active := b%2 == 1 && m[i].active > 0
				if !active && m[i].ina == 0 {
					break
				}
				d.Unbind(false, active)
				if active {
					m[i].active--
				} else {
					m[i].ina--
				}
				tot := uint32(m[i].active + m[i].ina)
				switch {
				case m[i].l != 0:
					if tot < m[i].l {
						m[i].over = false
					}
				case m[i].u != 0:
					if tot*4 < m[i].u*3 {
						m[i].over = false
					}
				default:
					m[i].over = false
				}
			case 7:
				decide(step, a, b)
			case 8:
				now = now.Add(time.Duration(a) * 10 * time.Second)
			case 9:
				for k := range int(b % 32) {
					decide(step, a+byte(k), b+byte(k))
				}
			}
			check(step)
		}
	})
}

// FuzzParseFlags: ParseFlags never panics, returns only SCHED1..3, and
// what it accepts survives FormatFlags and ParseFlags again (minus the
// bits sh and mh have no name for).
func FuzzParseFlags(f *testing.F) {
	f.Add("sh", "sh-fallback,sh-port")
	f.Add("mh", ",mh-port,,mh-fallback")
	f.Add("wlc", "flag-1,flag-3")
	f.Add("", "flag-2")
	f.Add("rr", "sh-port")
	f.Add("sh", ",,,")
	f.Fuzz(func(t *testing.T, sched, arg string) {
		fl, err := ParseFlags(sched, arg)
		if err != nil {
			if fl != 0 {
				t.Fatalf("ParseFlags(%q, %q) = %#x with error %v", sched, arg, fl, err)
			}
			return
		}
		if fl&^flagsMask != 0 {
			t.Fatalf("ParseFlags(%q, %q) = %#x, outside SCHED1..3", sched, arg, fl)
		}
		named := flagsMask
		if sched == "sh" || sched == "mh" {
			named = FlagSched1 | FlagSched2
		}
		back, err := ParseFlags(sched, FormatFlags(sched, fl))
		if err != nil || back != fl&named {
			t.Fatalf("ParseFlags(%q, FormatFlags(%#x)) = %#x, %v", sched, fl, back, err)
		}
	})
}
