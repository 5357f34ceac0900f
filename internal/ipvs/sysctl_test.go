package ipvs

import (
	"slices"
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
	want := []string{"net.ipv4.vs.expire_nodest_conn = 1", "net.ipv4.vs.expire_quiescent_template = 0"}
	if !slices.Equal(got, want) {
		t.Errorf("Lines() = %q, want %q", got, want)
	}
}
