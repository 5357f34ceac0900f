package director

import (
	"context"
	"net/netip"
	"strings"
	"testing"

	"github.com/xlbproject/xlb/health"
	"github.com/xlbproject/xlb/internal/ipvs"
)

var sorry = netip.MustParseAddrPort("198.18.0.99:8080")

// The health engine's transitions become overlays: removal, weight 0,
// a dynamic weight, a sorry server, and Release; each batch one Apply,
// each transition one log line, the operator configuration untouched.
func TestApplyHealth(t *testing.T) {
	d, fdp, logs := newTest(t, DefaultOptions())
	ctx := context.Background()
	n := len(fdp.applied)
	apply := func(batch ...health.Transition) {
		t.Helper()
		if err := d.ApplyHealth(ctx, batch); err != nil {
			t.Fatal(err)
		}
	}
	weight := func(ap netip.AddrPort) int32 {
		t.Helper()
		dst := d.Applied().Service(vip).Dest(ap)
		if dst == nil {
			return -1
		}
		return dst.Weight
	}

	// The initial state, every server at its configured weight: nothing.
	apply(health.Transition{Service: vip, Dest: rs1, Present: true, Weight: 3, Healthy: true},
		health.Transition{Service: vip, Dest: rs2, Present: true, Weight: 1, Healthy: true})
	if len(fdp.applied) != n {
		t.Errorf("the initial state applied %d times, want 0", len(fdp.applied)-n)
	}

	apply(health.Transition{Service: vip, Dest: rs1, Present: false, Reason: "TCP_CHECK failed"},
		health.Transition{Service: vip, Dest: rs2, Present: true, Weight: 0})
	if weight(rs1) != -1 || weight(rs2) != 0 {
		t.Errorf("down: rs1 weight %d (want removed), rs2 %d (want 0)", weight(rs1), weight(rs2))
	}
	if len(fdp.applied) != n+1 {
		t.Errorf("one batch applied %d times", len(fdp.applied)-n)
	}
	if d.Config().Service(vip).Dest(rs1).Weight != 3 {
		t.Error("the operator configuration changed")
	}

	// misc_dynamic: another weight is an overlay; the configured one none.
	apply(health.Transition{Service: vip, Dest: rs1, Present: true, Weight: 7, Healthy: true},
		health.Transition{Service: vip, Dest: rs2, Present: true, Weight: 1, Healthy: true})
	if weight(rs1) != 7 || weight(rs2) != 1 {
		t.Errorf("up: weights %d %d, want 7 1", weight(rs1), weight(rs2))
	}

	// The sorry server: added with its method, taken out again.
	apply(health.Transition{Service: vip, Dest: sorry, Sorry: true, Fwd: ipvs.FwdMasq, Present: true, Weight: 1, Healthy: true})
	s := d.Applied().Service(vip).Dest(sorry)
	if s == nil || s.Weight != 1 || s.Fwd != ipvs.FwdMasq {
		t.Fatalf("sorry server: %+v", s)
	}
	if d.Config().Service(vip).Dest(sorry) != nil {
		t.Error("the sorry server went into the operator configuration")
	}
	// An overlay survives Replace: the operator's reload changes rs2's
	// weight, rs1 keeps its dynamic one and the sorry server stays.
	next := d.Config().Clone()
	next.Service(vip).Dest(rs2).Weight = 5
	if err := d.Replace("reload", next); err != nil {
		t.Fatal(err)
	}
	if weight(rs1) != 7 || weight(rs2) != 5 || weight(sorry) != 1 {
		t.Errorf("after Replace: %d %d %d, want 7 5 1", weight(rs1), weight(rs2), weight(sorry))
	}
	apply(health.Transition{Service: vip, Dest: sorry, Sorry: true, Present: false})
	if weight(sorry) != -1 {
		t.Error("sorry server not removed")
	}
	apply(health.Transition{Service: vip, Dest: rs1, Release: true})
	if weight(rs1) != 3 {
		t.Errorf("after Release rs1 weight %d, want the configured 3", weight(rs1))
	}
	if got := d.HealthTransitions(); got != 9 {
		t.Errorf("HealthTransitions = %d, want 9", got)
	}
	if c := strings.Count(logs.String(), "health transition"); c != 9 {
		t.Errorf("%d transition log lines, want 9:\n%s", c, logs)
	}

	// A refused batch changes nothing and is an error.
	fdp.refuse = true
	before := d.Applied()
	if err := d.ApplyHealth(ctx, []health.Transition{{Service: vip, Dest: rs2, Present: false}}); err == nil {
		t.Error("refused batch succeeded")
	}
	fdp.refuse = false
	if d.Applied() != before || d.DestState(vip, rs2) != DestUp {
		t.Error("a refused batch changed the configuration")
	}
}
