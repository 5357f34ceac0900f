package dataplane

import (
	"net/netip"
	"strings"
	"testing"

	"github.com/xlbproject/xlb/internal/ipvs"
	"github.com/xlbproject/xlb/internal/ipvsadm"
	"github.com/xlbproject/xlb/sched"
)

// wrrConfig is one wrr service with the given weights, destinations
// 10.0.0.1, 10.0.0.2, ... added in that order.
func wrrConfig(sch string, flags []string, weights ...int32) *ipvs.Config {
	svc := ipvs.Service{Key: ipvs.ServiceKey{Proto: ipvs.TCP, Addr: testVIP, Port: 80}, Sched: sch, SchedFlags: flags}
	for i, w := range weights {
		svc.Dests = append(svc.Dests, ipvs.Dest{Addr: destAddr(i + 1), Port: 80, Weight: w, Fwd: ipvs.FwdRoute})
	}
	return &ipvs.Config{Services: []ipvs.Service{svc}}
}

// picks runs n decisions on the service's first worker scheduler and
// names each destination by the last byte of its address.
func picks(t *testing.T, d *Dataplane, n int) string {
	t.Helper()
	sc := d.state.services[ipvs.ServiceKey{Proto: ipvs.TCP, Addr: testVIP, Port: 80}].scheds[0]
	f := &sched.Flow{Proto: 6, Src: netip.MustParseAddr("192.0.2.1"), SrcPort: 40000, Dst: testVIP, DstPort: 80}
	var b strings.Builder
	for range n {
		dst := sc.Schedule(f)
		if dst == nil {
			b.WriteString(" -")
			continue
		}
		b.WriteString(" ." + dst.Addr.String()[strings.LastIndexByte(dst.Addr.String(), '.')+1:])
	}
	return strings.TrimSpace(b.String())
}

// TestApplyRestoreIsSequential: a wrr service applied whole (ipvsadm -R,
// xlb run --rules) starts where the kernel's does after its -A and -a
// lines run one by one: .1 w4, .2 w3, .3 w2 pick .3 .2 .1 .1 .2 .1 ...
// (ip_vs_wrr_dest_changed on each -a keeps cw at 1, the first pass takes
// every destination from the list head, newest first), as the same
// configuration built by one Apply per -a does.
func TestApplyRestoreIsSequential(t *testing.T) {
	const want = ".3 .2 .1 .1 .2 .1 .3 .2 .1 .3 .2 .1 .1 .2 .1"
	rules := "-A -t 198.18.0.100:80 -s wrr\n" +
		"-a -t 198.18.0.100:80 -r 10.0.0.1 -g -w 4\n" +
		"-a -t 198.18.0.100:80 -r 10.0.0.2 -g -w 3\n" +
		"-a -t 198.18.0.100:80 -r 10.0.0.3 -g -w 2\n"

	// ipvsadm -R or xlb run --rules: the file parsed, applied whole.
	whole, _ := testDataplane(t, 16)
	cfg, err := ipvsadm.ParseRules(strings.NewReader(rules))
	if err != nil {
		t.Fatal(err)
	}
	if err := whole.Apply(cfg); err != nil {
		t.Fatal(err)
	}
	if got := picks(t, whole, 15); got != want {
		t.Errorf("wrr 4,3,2 restored = %s, want %s", got, want)
	}

	// The same lines as one ipvsadm command each.
	seq, _ := testDataplane(t, 16)
	cfg = &ipvs.Config{Timeouts: ipvs.DefaultTimeouts}
	for _, line := range strings.Split(strings.TrimSpace(rules), "\n") {
		c, err := ipvsadm.Parse(strings.Fields(line))
		if err != nil {
			t.Fatal(err)
		}
		if err := c.Apply(cfg); err != nil {
			t.Fatal(err)
		}
		if err := seq.Apply(cfg.Clone()); err != nil {
			t.Fatal(err)
		}
	}
	if got := picks(t, seq, 15); got != want {
		t.Errorf("wrr -A, then -a w4, w3, w2, one command each = %s, want %s", got, want)
	}

	// rr keeps no state across -a's (ip_vs_rr has no add callback; the
	// cursor stays at the list head): restored, it starts at the newest.
	rr, _ := testDataplane(t, 16)
	if err := rr.Apply(wrrConfig("rr", nil, 1, 1, 1)); err != nil {
		t.Fatal(err)
	}
	if got, want := picks(t, rr, 4), ".3 .2 .1 .3"; got != want {
		t.Errorf("rr restored = %s, want %s", got, want)
	}

	// Two more destinations in one Apply are two -a's as well: .4 w1 then
	// .5 w5 on the service above (after 15 picks, cw 3, cursor at .1).
	// Kernel: -a .4: mw 4, cw 3 stays; -a .5: mw 5, cw 3 stays; cursor at
	// the head; passes cw 3: .5 .2 .1, cw 2: .5 .3 .2 .1, cw 1: all.
	if err := whole.Apply(wrrConfig("wrr", nil, 4, 3, 2, 1, 5)); err != nil {
		t.Fatal(err)
	}
	if got, want := picks(t, whole, 12), ".5 .2 .1 .5 .3 .2 .1 .5 .4 .3 .2 .1"; got != want {
		t.Errorf("wrr after adding w1, w5 in one Apply = %s, want %s", got, want)
	}
}

// TestApplyFlagsKeepScheduler: an -E that changes only the -b flags (or
// anything but the scheduler) does not rebind it, as ip_vs_edit_service:
// rr and wrr keep their position, lblc and lblcr their cache (the same
// instance). A change of scheduler does rebind.
func TestApplyFlagsKeepScheduler(t *testing.T) {
	key := ipvs.ServiceKey{Proto: ipvs.TCP, Addr: testVIP, Port: 80}
	for _, c := range []struct{ sched, before, after string }{
		{"rr", ".3 .2", ".1 .3 .2 .1 .3"},
		{"wrr", ".3 .2", ".1 .1 .2 .1 .3"},
		{"lblc", "", ""},
		{"lblcr", "", ""},
	} {
		t.Run(c.sched, func(t *testing.T) {
			d, _ := testDataplane(t, 16)
			if err := d.Apply(wrrConfig(c.sched, nil, 4, 3, 2)); err != nil {
				t.Fatal(err)
			}
			if got := picks(t, d, 2); c.before != "" && got != c.before {
				t.Fatalf("first picks = %s, want %s", got, c.before)
			}
			inst := d.state.services[key].scheds[0]
			cfg := wrrConfig(c.sched, []string{"flag-1", "flag-3"}, 4, 3, 2)
			cfg.Services[0].Persistent, cfg.Services[0].Timeout = true, 600
			if err := d.Apply(cfg); err != nil {
				t.Fatal(err)
			}
			if d.state.services[key].scheds[0] != inst {
				t.Fatalf("-E -b flag-1,flag-3 -p 600 made a new %s scheduler, want the same one", c.sched)
			}
			if got := picks(t, d, 5); c.after != "" && got != c.after {
				t.Errorf("picks after -E -b = %s, want %s (the round goes on)", got, c.after)
			}
			if err := d.Apply(wrrConfig("wlc", nil, 4, 3, 2)); err != nil {
				t.Fatal(err)
			}
			if d.state.services[key].scheds[0] == inst {
				t.Error("-E -s wlc kept the old scheduler")
			}
		})
	}
}

// TestKernelSteps pins the step lists: removals in one step, then each
// addition at the head.
func TestKernelSteps(t *testing.T) {
	a, b, c, e := sched.NewDest(destAddr(1), 80, 1), sched.NewDest(destAddr(2), 80, 1), sched.NewDest(destAddr(3), 80, 1), sched.NewDest(destAddr(4), 80, 1)
	name := func(steps [][]*sched.Dest) string {
		var parts []string
		for _, s := range steps {
			var w strings.Builder
			for _, d := range s {
				w.WriteByte("?abce"[d.Addr.As4()[3]])
			}
			parts = append(parts, "["+w.String()+"]")
		}
		return strings.Join(parts, "")
	}
	for _, c := range []struct {
		prev, next []*sched.Dest
		want       string
	}{
		{nil, []*sched.Dest{c, b, a}, "[a][ba][cba]"},
		{nil, nil, "[]"},
		{[]*sched.Dest{b, a}, []*sched.Dest{e, c, a}, "[a][ca][eca]"},
		{[]*sched.Dest{c, b, a}, []*sched.Dest{c, b, a}, "[cba]"},
		{[]*sched.Dest{b, a}, []*sched.Dest{a, b}, "[ba][ab]"}, // reordered: the last step is next
	} {
		if got := name(kernelSteps(c.prev, c.next)); got != c.want {
			t.Errorf("kernelSteps(%s -> %s) = %s, want %s", name([][]*sched.Dest{c.prev}), name([][]*sched.Dest{c.next}), got, c.want)
		}
	}
}
