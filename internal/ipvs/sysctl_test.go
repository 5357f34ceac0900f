package ipvs

import (
	"slices"
	"strings"
	"testing"
)

func TestSysctlsSet(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want Sysctls
		ok   bool
	}{
		{"net.ipv4.vs.expire_nodest_conn=1", Sysctls{ExpireNodestConn: true}, true},
		{"net/ipv4/vs/expire_nodest_conn = 2", Sysctls{ExpireNodestConn: true}, true},
		{"expire_quiescent_template=1", Sysctls{ExpireQuiescentTemplate: true}, true},
		{"net.ipv4.vs.expire_nodest_conn=0", Sysctls{}, true},
		{"net.ipv4.vs.sloppy_tcp=1", Sysctls{SloppyTCP: true}, true},
		{"net.ipv4.vs.expire_nodest_conn", Sysctls{}, false},
		{"net.ipv4.vs.expire_nodest_conn=yes", Sysctls{}, false},
		{"net.ipv4.vs.conntrack=1", Sysctls{}, false},
	} {
		var s Sysctls
		err := s.Set(tc.in)
		if (err == nil) != tc.ok || s != tc.want {
			t.Errorf("Set(%q) = %+v, %v; want %+v, ok %v", tc.in, s, err, tc.want, tc.ok)
		}
	}
}

func TestSysctlsLines(t *testing.T) {
	got := Sysctls{ExpireNodestConn: true}.Lines()
	want := []string{"net.ipv4.vs.expire_nodest_conn = 1", "net.ipv4.vs.expire_quiescent_template = 0", "net.ipv4.vs.sloppy_tcp = 0"}
	if !slices.Equal(got, want) {
		t.Errorf("Lines() = %q, want %q", got, want)
	}
}

// Set never panics, changes nothing when it refuses, and what Lines
// prints sets the same values again.
func FuzzSysctlsSet(f *testing.F) {
	for _, s := range []string{"net.ipv4.vs.expire_nodest_conn=1", "expire_quiescent_template = 0", "net/ipv4/vs/expire_nodest_conn=-1",
		"=", "net.ipv4.vs.expire_nodest_conn=99999999999", "x=1"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, in string) {
		s := Sysctls{ExpireQuiescentTemplate: true}
		before := s
		if err := s.Set(in); err != nil {
			if s != before {
				t.Fatalf("refused Set(%q) changed %+v to %+v", in, before, s)
			}
			return
		}
		var again Sysctls
		for _, l := range s.Lines() {
			name, val, _ := strings.Cut(l, " = ")
			if err := again.Set(name + "=" + val); err != nil {
				t.Fatalf("Set(%q) from Lines: %v", l, err)
			}
		}
		if again != s {
			t.Fatalf("Lines of %+v set %+v", s, again)
		}
	})
}
