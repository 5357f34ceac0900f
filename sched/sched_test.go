package sched

import (
	"errors"
	"fmt"
	"net/netip"
	"strings"
	"testing"
)

// dests makes destinations named A, B, C, ... (10.0.0.1, .2, ...:80) with
// the given weights, in list order.
func dests(weights ...int32) []*Dest {
	ds := make([]*Dest, len(weights))
	for i, w := range weights {
		ds[i] = NewDest(netip.AddrFrom4([4]byte{10, 0, 0, byte(i + 1)}), 80, w)
	}
	return ds
}

// letter names a destination made by dests; "-" is no destination.
func letter(d *Dest) string {
	if d == nil {
		return "-"
	}
	return string(rune('A' + d.Addr.As4()[3] - 1))
}

func mustNew(t testing.TB, name string, o Options) Scheduler {
	t.Helper()
	s, err := New(name, o)
	if err != nil {
		t.Fatalf("New(%q) = %v", name, err)
	}
	return s
}

// run makes n decisions for flow f and returns their letters.
func run(s Scheduler, n int, f *Flow) string {
	var b strings.Builder
	for range n {
		b.WriteString(letter(s.Schedule(f)))
	}
	return b.String()
}

var flow = &Flow{Proto: 6, Src: netip.MustParseAddr("192.0.2.1"), SrcPort: 40000, Dst: netip.MustParseAddr("198.51.100.1"), DstPort: 80}

func setConns(d *Dest, active, inactive int32) {
	d.activeConns.Store(active)
	d.inactConns.Store(inactive)
}

func TestNew(t *testing.T) {
	for _, name := range Names() {
		s, err := New(name, Options{})
		if err != nil {
			t.Fatalf("New(%q, Options{}) = %v", name, err)
		}
		if s.Name() != name {
			t.Errorf("New(%q).Name() = %q", name, s.Name())
		}
		if d := s.Schedule(flow); d != nil {
			t.Errorf("%s: Schedule with no destinations = %v, want nil", name, d.Addr)
		}
		s.Update(nil)
		if d := s.Schedule(flow); d != nil {
			t.Errorf("%s: Schedule after Update(nil) = %v, want nil", name, d.Addr)
		}
	}
	if len(Names()) != 14 {
		t.Errorf("len(Names()) = %d, want 14", len(Names()))
	}
	for _, name := range []string{"", "WLC", "wlc ", "random", "ip_vs_wlc"} {
		_, err := New(name, DefaultOptions())
		if !errors.Is(err, ErrUnknownScheduler) {
			t.Errorf("New(%q) error = %v, want ErrUnknownScheduler", name, err)
		} else if err.Error() != "Scheduler or persistence engine not found" {
			t.Errorf("New(%q) error text = %q, want ipvsadm's", name, err.Error())
		}
	}
	bad := []Options{
		{MHTableSize: 4096},
		{MHTableSize: 250},
		{CacheSize: -1},
		{Expiration: -1},
		{Flags: 0x40},
	}
	for _, o := range bad {
		if _, err := New("mh", o); err == nil {
			t.Errorf("New(mh, %+v) succeeded, want an error", o)
		}
	}
	for _, m := range mhPrimes {
		if _, err := New("mh", Options{MHTableSize: m}); err != nil {
			t.Errorf("New(mh, MHTableSize %d) = %v", m, err)
		}
	}
}

func TestParseFlags(t *testing.T) {
	tests := []struct {
		sched, arg string
		want       Flags
		err        string
	}{
		{"sh", "sh-fallback,sh-port", SHFallback | SHPort, ""},
		{"sh", "sh-port", SHPort, ""},
		{"mh", "mh-fallback,mh-port", MHFallback | MHPort, ""},
		{"mh", "mh-port", MHPort, ""},
		{"wlc", "flag-1,flag-2,flag-3", FlagSched1 | FlagSched2 | FlagSched3, ""},
		{"sh", "flag-2", FlagSched2, ""},
		{"rr", "", 0, ""},
		{"sh", ",sh-port,,", SHPort, ""}, // strtok skips empty items
		{"", "flag-1", FlagSched1, ""},   // default scheduler wlc
		{"rr", "sh-port", 0, "incompatible scheduler flag `sh-port'"},
		{"mh", "sh-fallback", 0, "incompatible scheduler flag `sh-fallback'"},
		{"", "mh-port", 0, "incompatible scheduler flag `mh-port'"},
		{"sh", "mh-port", 0, "incompatible scheduler flag `mh-port'"},
		{"sh", "sh-port,bogus", 0, "invalid scheduler flag `bogus'"},
		{"sh", "bogus,mh-port", 0, "invalid scheduler flag `bogus'"}, // first bad item wins
		{"sh", "mh-port,bogus", 0, "incompatible scheduler flag `mh-port'"},
		{"sh", "SH-PORT", 0, "invalid scheduler flag `SH-PORT'"},
		{"sh", "sh-port ", 0, "invalid scheduler flag `sh-port '"},
		{"sh", ",,", 0, "invalid scheduler flag `'"},
		// ipvsadm copies -b into a 128-byte buffer: the 128th byte on is lost.
		{"mh", strings.Repeat("mh-port,", 15) + "mh-fallback", 0, "invalid scheduler flag `mh-fall'"}, // 15*8 = 120 bytes + 7,
		{"mh", strings.Repeat(",", 115) + "mh-fallback", MHFallback, ""},
	}
	for _, tt := range tests {
		got, err := ParseFlags(tt.sched, tt.arg)
		if tt.err != "" {
			if err == nil || err.Error() != tt.err {
				t.Errorf("ParseFlags(%q, %q) = %v, %v, want error %q", tt.sched, tt.arg, got, err, tt.err)
			}
			var fe *FlagError
			if !errors.As(err, &fe) {
				t.Errorf("ParseFlags(%q, %q) error %T, want *FlagError", tt.sched, tt.arg, err)
			} else if fe.Incompatible != errors.Is(err, ErrIncompatibleFlag) || fe.Incompatible == errors.Is(err, ErrInvalidFlag) {
				t.Errorf("ParseFlags(%q, %q): errors.Is disagrees with Incompatible", tt.sched, tt.arg)
			}
			continue
		}
		if err != nil || got != tt.want {
			t.Errorf("ParseFlags(%q, %q) = %#x, %v, want %#x", tt.sched, tt.arg, got, err, tt.want)
		}
	}
}

func TestFormatFlags(t *testing.T) {
	tests := []struct {
		sched string
		f     Flags
		want  string
		back  Flags // ParseFlags(sched, want)
	}{
		{"sh", SHFallback | SHPort, "sh-fallback,sh-port", SHFallback | SHPort},
		{"sh", SHPort | FlagSched3, "sh-port", SHPort},
		{"mh", MHFallback, "mh-fallback", MHFallback},
		{"rr", FlagSched1 | FlagSched3, "flag-1,flag-3", FlagSched1 | FlagSched3},
		{"wlc", 0, "", 0},
	}
	for _, tt := range tests {
		got := FormatFlags(tt.sched, tt.f)
		if got != tt.want {
			t.Errorf("FormatFlags(%q, %#x) = %q, want %q", tt.sched, tt.f, got, tt.want)
		}
		if back, err := ParseFlags(tt.sched, got); err != nil || back != tt.back {
			t.Errorf("ParseFlags(%q, %q) = %#x, %v, want %#x", tt.sched, got, back, err, tt.back)
		}
	}
}

// TestRR pins ip_vs_rr.c: skip weight 0 and overloaded, wrap around, and
// when the last chosen destination is deleted continue after its
// predecessor.
func TestRR(t *testing.T) {
	ds := dests(1, 0, 1, 1) // A B C D, B quiesced
	s := mustNew(t, "rr", Options{})
	s.Update(ds)
	if got, want := run(s, 7, flow), "ACDACDA"; got != want {
		t.Fatalf("rr A1 B0 C1 D1 = %s, want %s", got, want)
	}
	ds[2].setOverload(true)
	if got, want := run(s, 4, flow), "DADA"; got != want {
		t.Fatalf("rr with C overloaded = %s, want %s", got, want)
	}
	ds[2].setOverload(false)
	// Last choice A. Delete A: the cursor moves to its predecessor, the
	// list head, so the next choice is the new first destination.
	s.Update(ds[1:])
	if got, want := run(s, 3, flow), "CDC"; got != want {
		t.Fatalf("rr after deleting the last choice (first) = %s, want %s", got, want)
	}
	// Last choice C. Delete C and D in one Update (the cursor moves to B,
	// C's predecessor), then add E at the head in another: after B comes
	// E, wrapping around, and B is quiesced.
	s.Update([]*Dest{ds[1]})
	e := dests(1, 1, 1, 1, 1)[4]
	s.Update([]*Dest{e, ds[1]})
	if got, want := run(s, 2, flow), "EE"; got != want {
		t.Fatalf("rr after two Updates = %s, want %s", got, want)
	}

	// Adding at the head keeps the cursor: A B C, last choice A, add N
	// before A: next is B, then C, then N.
	ds = dests(1, 1, 1, 1)
	s = mustNew(t, "rr", Options{})
	s.Update(ds[:3])
	run(s, 1, flow) // A
	s.Update(append([]*Dest{ds[3]}, ds[:3]...))
	if got, want := run(s, 4, flow), "BCDA"; got != want {
		t.Fatalf("rr after an add at the head = %s, want %s", got, want)
	}
	// Delete the last choice (A) and its predecessor (D) in one Update:
	// the cursor moves to the head, as two kernel deletions in any order
	// would move it.
	s.Update([]*Dest{ds[1], ds[2]})
	if got, want := run(s, 3, flow), "BCB"; got != want {
		t.Fatalf("rr after deleting the last choice and its predecessor = %s, want %s", got, want)
	}
	ds[1].SetWeight(0)
	ds[2].SetWeight(0)
	if got := run(s, 2, flow); got != "--" {
		t.Fatalf("rr with all quiesced = %s, want --", got)
	}
}

// TestWRR pins ip_vs_wrr.c, including how ip_vs_wrr_dest_changed
// re-derives cw.
func TestWRR(t *testing.T) {
	t.Run("bound to populated service", func(t *testing.T) {
		ds := dests(4, 3, 2)
		s := mustNew(t, "wrr", Options{})
		s.Update(ds) // ipvsadm -E -s wrr: cw = mw = 4
		if got, want := run(s, 18, flow), "AABABCABC"+"AABABCABC"; got != want {
			t.Errorf("wrr 4,3,2 = %s, want %s", got, want)
		}
	})
	t.Run("built with ipvsadm -a", func(t *testing.T) {
		ds := dests(4, 3, 2) // A, B, C added in this order: list C B A
		s := mustNew(t, "wrr", Options{})
		s.Update(ds[:1])                                 // -a A: di 4, mw 1, cw 0 -> 1
		s.Update([]*Dest{ds[1], ds[0]})                  // -a B: di 1, mw 4, cw stays 1
		s.Update([]*Dest{ds[2], ds[1], ds[0]})           // -a C: cw stays 1
		want := "CBA" + "ABACBACBA" + "ABACBACBA"        // first pass at cw 1
		if got := run(s, len(want), flow); got != want { //
			t.Errorf("wrr after -a A4, B3, C2 = %s, want %s", got, want)
		}
	})
	t.Run("gcd step", func(t *testing.T) {
		ds := dests(4, 2) // di 2, mw 3: passes at cw 3 and 1
		s := mustNew(t, "wrr", Options{})
		s.Update(ds)
		if got, want := run(s, 9, flow), "AABAABAAB"; got != want {
			t.Errorf("wrr 4,2 = %s, want %s", got, want)
		}
	})
	t.Run("weight edit rounds cw to the new step", func(t *testing.T) {
		ds := dests(6, 4) // di 2, mw 5: AABAB
		s := mustNew(t, "wrr", Options{})
		s.Update(ds)
		if got, want := run(s, 2, flow), "AA"; got != want { // now cw 3
			t.Fatalf("wrr 6,4 = %s, want %s", got, want)
		}
		ds[1].SetWeight(3) // di 3, mw 4; cw 3 -> (3/3)*3+1 = 4, cursor to head
		s.Update(ds)
		if got, want := run(s, 6, flow), "AABAAB"; got != want {
			t.Errorf("wrr after 6,4 -> 6,3 = %s, want %s", got, want)
		}
		s.Update(ds) // nothing changed: not a dest_changed, the round goes on
		if got, want := run(s, 3, flow), "AAB"; got != want {
			t.Errorf("wrr after an Update changing nothing = %s, want %s", got, want)
		}
	})
	t.Run("quiesced and overloaded", func(t *testing.T) {
		ds := dests(2, 0, 1)
		s := mustNew(t, "wrr", Options{})
		s.Update(ds)
		if got, want := run(s, 6, flow), "AACAAC"; got != want {
			t.Errorf("wrr 2,0,1 = %s, want %s", got, want)
		}
		ds[0].setOverload(true)
		if got, want := run(s, 3, flow), "CCC"; got != want {
			t.Errorf("wrr with A overloaded = %s, want %s", got, want)
		}
		ds[2].setOverload(true)
		if got, want := run(s, 2, flow), "--"; got != want {
			t.Errorf("wrr with all overloaded = %s, want %s", got, want)
		}
		ds[0].setOverload(false)
		ds[2].setOverload(false)
		ds[0].SetWeight(0)
		ds[2].SetWeight(0)
		s.Update(ds)
		if got, want := run(s, 2, flow), "--"; got != want {
			t.Errorf("wrr with all weights 0 = %s, want %s", got, want)
		}
	})
}

// TestLeastConnection is the classic example: weights 1, 2, 3 with 1, 2,
// 3 active connections.
func TestLeastConnection(t *testing.T) {
	tests := []struct {
		sched    string
		weights  []int32
		active   []int32
		inactive []int32
		overload []bool
		want     string
	}{
		{"wlc", []int32{1, 2, 3}, []int32{1, 2, 3}, nil, nil, "A"}, // 256/1 = 512/2 = 768/3: the first
		{"sed", []int32{1, 2, 3}, []int32{1, 2, 3}, nil, nil, "C"}, // 2/1 > 3/2 > 4/3
		{"nq", []int32{1, 2, 3}, []int32{1, 2, 3}, nil, nil, "C"},  // nobody idle: as sed
		{"lc", []int32{1, 2, 3}, []int32{1, 2, 3}, nil, nil, "A"},
		{"wlc", []int32{1, 2, 3}, []int32{1, 2, 3}, []int32{0, 0, 1}, nil, "A"},
		{"wlc", []int32{1, 2, 3}, []int32{1, 2, 3}, []int32{1, 0, 0}, nil, "B"}, // A 257/1 > B 512/2
		{"wlc", []int32{1, 2, 3}, []int32{1, 2, 2}, nil, nil, "C"},              // 512/3
		{"wlc", []int32{0, 1}, []int32{0, 5}, nil, nil, "B"},                    // quiesced A is idle but never chosen
		{"wlc", []int32{1, 0}, []int32{5, 0}, nil, nil, "A"},                    // weight 0 later in the list cannot win
		{"wlc", []int32{1, 1}, []int32{0, 0}, nil, []bool{true, false}, "B"},
		{"wlc", []int32{1, 1}, nil, nil, []bool{true, true}, "-"},
		{"lc", []int32{1, 5}, []int32{1, 1}, []int32{0, 1}, nil, "A"},   // weights do not matter
		{"lc", []int32{0, 5}, []int32{0, 1}, nil, nil, "B"},             // except 0
		{"lc", []int32{1, 1}, []int32{0, 0}, []int32{300, 0}, nil, "B"}, // inactive count 1/256 of active
		{"sed", []int32{2, 1}, []int32{1, 0}, []int32{0, 9}, nil, "A"},  // 2/2 = 1/1: the first; inactive ignored
		{"sed", []int32{0, 1}, []int32{0, 3}, nil, nil, "B"},
		{"nq", []int32{3, 1, 1}, []int32{1, 0, 0}, nil, nil, "B"}, // first idle wins over a better ratio
		{"nq", []int32{3, 0, 1}, []int32{1, 0, 0}, nil, nil, "C"}, // idle but quiesced is skipped
		{"nq", []int32{1, 1}, []int32{0, 0}, nil, []bool{true, false}, "B"},
		{"fo", []int32{2, 5, 5, 0}, nil, nil, nil, "B"}, // highest weight, first on a tie
		{"fo", []int32{2, 5, 5}, nil, nil, []bool{false, true, false}, "C"},
		{"fo", []int32{0, 0}, nil, nil, nil, "-"},
		{"ovf", []int32{2, 5, 3}, []int32{0, 6, 0}, nil, nil, "C"}, // B has more active than weight
		{"ovf", []int32{2, 5, 3}, []int32{0, 5, 0}, nil, nil, "B"}, // equal is fine
		{"ovf", []int32{2, 5, 3}, []int32{0, 6, 4}, nil, nil, "A"},
		{"ovf", []int32{0, 1}, []int32{0, 0}, nil, nil, "B"},
	}
	for _, tt := range tests {
		name := fmt.Sprintf("%s w%v a%v i%v o%v", tt.sched, tt.weights, tt.active, tt.inactive, tt.overload)
		t.Run(name, func(t *testing.T) {
			ds := dests(tt.weights...)
			for i, d := range ds {
				var a, in int32
				if tt.active != nil {
					a = tt.active[i]
				}
				if tt.inactive != nil {
					in = tt.inactive[i]
				}
				setConns(d, a, in)
				if tt.overload != nil {
					d.setOverload(tt.overload[i])
				}
			}
			s := mustNew(t, tt.sched, Options{})
			s.Update(ds)
			if got := letter(s.Schedule(flow)); got != tt.want {
				t.Errorf("Schedule = %s, want %s", got, tt.want)
			}
		})
	}
}

// TestWLCSpreads checks that wlc, fed its own decisions as new
// connections, spreads them in proportion to the weights.
func TestWLCSpreads(t *testing.T) {
	ds := dests(1, 2, 3)
	s := mustNew(t, "wlc", Options{})
	s.Update(ds)
	count := map[string]int{}
	for range 600 {
		d := s.Schedule(flow)
		d.Bind(false)
		d.Activate()
		count[letter(d)]++
	}
	if count["A"] != 100 || count["B"] != 200 || count["C"] != 300 {
		t.Errorf("wlc 1,2,3 over 600 connections = %v, want A 100 B 200 C 300", count)
	}
}

// TestThresholdsSteer checks that a destination at its upper threshold
// stops receiving connections from every scheduler until the unbind rule
// clears the flag.
func TestThresholdsSteer(t *testing.T) {
	for _, name := range Names() {
		t.Run(name, func(t *testing.T) {
			ds := dests(1, 1)
			ds[0].SetThresholds(2, 0)
			s := mustNew(t, name, Options{Seed: 1})
			s.Update(ds)
			ds[0].Bind(false)
			ds[0].Bind(false) // 2 >= 2: overloaded
			if !ds[0].Overloaded() {
				t.Fatal("A not overloaded at its upper threshold")
			}
			for i := range 50 {
				f := *flow
				f.Src = netip.AddrFrom4([4]byte{192, 0, 2, byte(i)})
				f.Dst = netip.AddrFrom4([4]byte{198, 51, 100, byte(i)})
				if d := s.Schedule(&f); d == ds[0] {
					t.Fatalf("decision %d chose the overloaded destination", i)
				}
			}
			ds[0].Unbind(false, false) // 1*4 < 2*3: cleared
			if ds[0].Overloaded() {
				t.Fatal("A still overloaded below 3/4 of its upper threshold")
			}
		})
	}
}

// TestQuiesced checks that no scheduler gives a new connection to a
// destination of weight 0.
func TestQuiesced(t *testing.T) {
	for _, name := range Names() {
		t.Run(name, func(t *testing.T) {
			ds := dests(3, 1, 2)
			s := mustNew(t, name, Options{Seed: 1})
			s.Update(ds)
			// Let lblc/lblcr cache B for every address first.
			for i := range 64 {
				s.Schedule(&Flow{Proto: 6, Src: netip.AddrFrom4([4]byte{192, 0, 2, byte(i)}), SrcPort: 1000, Dst: netip.AddrFrom4([4]byte{198, 51, 100, byte(i)})})
			}
			ds[1].SetWeight(0)
			s.Update(ds)
			for i := range 256 {
				f := &Flow{Proto: 6, Src: netip.AddrFrom4([4]byte{192, 0, 2, byte(i)}), SrcPort: 1000, Dst: netip.AddrFrom4([4]byte{198, 51, 100, byte(i)})}
				if d := s.Schedule(f); d == ds[1] {
					t.Fatalf("decision %d chose the quiesced destination", i)
				}
			}
		})
	}
}
