package sched

import (
	"bufio"
	"net/netip"
	"os"
	"strconv"
	"strings"
	"testing"
)

// TestKernelGolden compares dh, sh and mh tables and decisions with
// testdata/kernel_golden.txt. That file is the output of
// testdata/kernelgolden.c, a C program written from the kernel's
// ip_vs_dh.c, ip_vs_sh.c, ip_vs_mh.c and lib/siphash.c (destinations on a
// linked list, inserted at the head; SipHash-1-3 over the u32 in memory)
// without reference to this package's Go code; it checks its SipHash
// against lib/test_siphash.c before printing anything. The rebuild
// command is at the top of the C file.
func TestKernelGolden(t *testing.T) {
	f, err := os.Open("testdata/kernel_golden.txt")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Buffer(nil, 1<<20)

	var (
		name  string
		s     Scheduler
		ds    []*Dest
		size  int
		flags Flags
		cases int
		picks int
	)
	atoi := func(s string) int {
		n, err := strconv.Atoi(s)
		if err != nil {
			t.Fatalf("golden file: %v", err)
		}
		return n
	}
	index := func(d *Dest) int {
		for i, x := range ds {
			if x == d {
				return i
			}
		}
		if d != nil {
			t.Fatalf("%s: destination %v is not in the list", name, d.Addr)
		}
		return -1
	}
	for line := 1; sc.Scan(); line++ {
		fs := strings.Fields(sc.Text())
		switch fs[0] {
		case "case":
			name = fs[1] + "/" + fs[2]
			size, flags = atoi(fs[3]), Flags(atoi(fs[4]))
			s = mustNew(t, fs[1], Options{Flags: flags, MHTableSize: map[bool]int{true: size, false: 0}[fs[1] == "mh"]})
			ds = nil
			cases++
		case "dest":
			w, lw := int32(atoi(fs[3])), int32(atoi(fs[4]))
			d := NewDest(netip.MustParseAddr(fs[1]), uint16(atoi(fs[2])), lw)
			d.SetWeight(w)
			d.setOverload(fs[5] == "1")
			ds = append(ds, d)
		case "table":
			s.Update(ds)
			var got []*Dest
			switch s := s.(type) {
			case *dh:
				got = s.cur.Load().buckets[:]
			case *sh:
				got = s.cur.Load().buckets[:]
			case *mh:
				got = s.cur.Load().slots
			}
			if len(got) != size || len(fs)-1 != size {
				t.Fatalf("%s (line %d): table size %d, golden %d, want %d", name, line, len(got), len(fs)-1, size)
			}
			bad := 0
			for i, d := range got {
				if want := atoi(fs[i+1]); index(d) != want {
					if bad++; bad <= 5 {
						t.Errorf("%s: slot %d = destination %d, kernel %d", name, i, index(d), want)
					}
				}
			}
			if bad > 0 {
				t.Fatalf("%s: %d of %d slots differ from the kernel's", name, bad, size)
			}
		case "pick":
			proto, addr, port, want := uint8(atoi(fs[1])), netip.MustParseAddr(fs[2]), uint16(atoi(fs[3])), atoi(fs[4])
			fl := &Flow{Proto: proto, Src: addr, SrcPort: port, Dst: netip.MustParseAddr("192.0.2.80"), DstPort: 80}
			if _, isDH := s.(*dh); isDH {
				fl = &Flow{Proto: proto, Src: netip.MustParseAddr("192.0.2.80"), SrcPort: 5555, Dst: addr, DstPort: port}
			}
			if got := index(s.Schedule(fl)); got != want {
				t.Errorf("%s: %s %v port %d -> destination %d, kernel %d", name, map[uint8]string{1: "icmp", 6: "tcp", 17: "udp"}[proto], addr, port, got, want)
			}
			picks++
		case "end":
		default:
			t.Fatalf("golden file line %d: unknown record %q", line, fs[0])
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	if cases < 10 || picks < 2000 {
		t.Fatalf("golden file has %d cases and %d decisions, want at least 10 and 2000", cases, picks)
	}
}
