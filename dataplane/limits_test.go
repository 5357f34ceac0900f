//go:build linux

package dataplane

import (
	"errors"
	"log/slog"
	"net/netip"
	"os"
	"strings"
	"testing"

	"github.com/cilium/ebpf"

	"github.com/xlbproject/xlb/bpf"
	"github.com/xlbproject/xlb/conntrack"
	"github.com/xlbproject/xlb/internal/ipvs"
	"github.com/xlbproject/xlb/sched"
	"github.com/xlbproject/xlb/testenv"
)

// More services than the XDP map holds are refused by name and limit, and
// the refusal changes nothing: Apply is all-or-nothing.
func TestApplyTooManyServices(t *testing.T) {
	o, err := bpf.Load(bpf.Options{MaxServices: 2})
	if errors.Is(err, os.ErrPermission) || errors.Is(err, ebpf.ErrNotSupported) {
		testenv.SkipUnlessRequired(t, "cannot load BPF: %v", err)
	} else if err != nil {
		t.Fatal(err)
	}
	defer o.Close()
	d := &Dataplane{
		opts:       Options{Logger: slog.Default(), MaxDests: 16},
		objs:       o,
		reg:        sched.NewRegistry(16),
		ctSettings: conntrack.NewSettings(conntrack.DefaultTimeouts()),
		state:      newControlState(),
		applied:    make(chan struct{}, 1),
		workers:    []*worker{{}}, // Apply only stores its configuration
	}
	empty := make([]destFwd, 17)
	d.fwd.Store(&empty)
	svc := func(port uint16) ipvs.Service {
		return ipvs.Service{Key: ipvs.ServiceKey{Proto: ipvs.TCP, Addr: netip.MustParseAddr("192.0.2.10"), Port: port}, Sched: "rr"}
	}
	two := &ipvs.Config{Services: []ipvs.Service{svc(80), svc(443)}}
	if err := d.Apply(two); err != nil {
		t.Fatal(err)
	}
	three := &ipvs.Config{Services: []ipvs.Service{svc(80), svc(443), svc(8080)}}
	err = d.Apply(three)
	if err == nil || !strings.Contains(err.Error(), "too many services (limit 2)") {
		t.Fatalf("Apply of 3 services with a 2-entry map = %v, want too many services (limit 2)", err)
	}
	t.Log(err)
	if n := len(d.state.services); n != 2 {
		t.Errorf("after the refused Apply %d services, want 2", n)
	}
	// The map still holds exactly the two: a third key is refused by the
	// kernel, one of the two is replaced.
	if err := o.AddService(bpf.ServiceKey{Addr: netip.MustParseAddr("192.0.2.10"), Port: 80, Proto: bpf.ProtoTCP}, 99); err != nil {
		t.Errorf("service 80 not in the map: %v", err)
	}
	if err := o.AddService(bpf.ServiceKey{Addr: netip.MustParseAddr("192.0.2.10"), Port: 8080, Proto: bpf.ProtoTCP}, 99); err == nil {
		t.Errorf("the map took a third service: the refused Apply left it less than full")
	}
}
