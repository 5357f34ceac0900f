package modes

import (
	"testing"

	"github.com/xlbproject/xlb/internal/ipvs"
	"github.com/xlbproject/xlb/internal/packet"
	pt "github.com/xlbproject/xlb/internal/packet/packettest"
)

// TestMethodNames: ipvsadm -L's names, and FromFwd maps every ipvs.Fwd
// to the method of the same value, so a stored uint8 converts by a cast.
func TestMethodNames(t *testing.T) {
	for f, want := range map[ipvs.Fwd]string{
		ipvs.FwdMasq: "Masq", ipvs.FwdLocal: "Local", ipvs.FwdTunnel: "Tunnel", ipvs.FwdRoute: "Route", ipvs.FwdFullNAT: "FullNat",
	} {
		m, ok := FromFwd(f)
		if !ok || m.String() != want || uint8(m) != uint8(f) {
			t.Errorf("FromFwd(%d) = %v (%d), %v; want %s (%d)", f, m, m, ok, want, f)
		}
	}
	if _, ok := FromFwd(ipvs.FwdFullNAT + 1); ok {
		t.Errorf("FromFwd(%d) ok, want not", ipvs.FwdFullNAT+1)
	}
	if s := Method(9).String(); s != "Method(9)" {
		t.Errorf("Method(9).String() = %q", s)
	}
	for v := Verdict(0); int(v) < NumVerdicts; v++ {
		if v.String() == "" {
			t.Errorf("verdict %d has no name", v)
		}
	}
	for tt, want := range map[ipvs.TunType]EncapType{ipvs.TunIPIP: IPIP, ipvs.TunGUE: GUE, ipvs.TunGRE: GRE} {
		e, ok := FromTun(tt, ipvs.TunCsum, 6080)
		if !ok || e.Type != want || !e.Csum || e.Port != 6080 {
			t.Errorf("FromTun(%d) = %+v, %v", tt, e, ok)
		}
	}
	if e, _ := FromTun(ipvs.TunGUE, ipvs.TunRemCsum, 1); e.Csum {
		t.Errorf("FromTun(gue, remcsum) computes the checksum, want not (IPVS on a complete frame)")
	}
	if _, ok := FromTun(ipvs.TunGRE+1, 0, 0); ok {
		t.Errorf("FromTun(unknown) ok")
	}
}

// TestXmitBadDispatch: methods and directions out of range are refused,
// never aliased onto a real one.
func TestXmitBadDispatch(t *testing.T) {
	fam := families[0]
	for _, c := range []struct {
		m   Method
		dir Dir
	}{{Route, 2}, {Masq, 3}, {128, In}, {131, In}, {Method(NumMethods), In}, {255, Out}} {
		f, m := place(t, fam.syn().Frame(), 0)
		p := fam.plan(c.m, pt.RealMAC)
		if v := Xmit(&f, &m, &p, c.dir); v != Unsupported {
			t.Errorf("Xmit(method %d, dir %d) = %v, want unsupported", c.m, c.dir, v)
		}
	}
}

// TestGUESourcePort: in 49152-65535, the same for a flow, spread over
// flows.
func TestGUESourcePort(t *testing.T) {
	seen := map[uint16]bool{}
	for i := 0; i < 1000; i++ {
		m := packet.Meta{Src: pt.Client4.As16(), Dst: pt.VIP4.As16(), SrcPort: uint16(1024 + i), DstPort: 80}
		p := gueSrcPort(&m)
		if p < 49152 || p != gueSrcPort(&m) {
			t.Fatalf("gueSrcPort = %d, want a stable port in 49152-65535", p)
		}
		seen[p] = true
	}
	if len(seen) < 900 {
		t.Errorf("1000 flows on %d GUE source ports, want > 900", len(seen))
	}
}
