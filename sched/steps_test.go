package sched

import (
	"net/netip"
	"testing"
)

// addSteps is the kernel's view of -a A, -a B, ... on an empty service:
// one list per command, the newest destination at the head.
func addSteps(ds []*Dest) [][]*Dest {
	var steps [][]*Dest
	var cur []*Dest
	for _, d := range ds {
		cur = append([]*Dest{d}, cur...)
		steps = append(steps, cur)
	}
	return steps
}

// TestUpdateStepsWRR: a wrr service restored in one go (UpdateSteps with
// the -a sequence) starts where the kernel's does after the same -a lines
// run one by one: A=4, B=3, C=2 added in that order pick C B A first
// (ip_vs_wrr_dest_changed keeps the cw of 1 left by -a A), not the A A B
// of a scheduler bound to the populated service.
func TestUpdateStepsWRR(t *testing.T) {
	want := "CBA" + "ABACBACBA" + "ABACBACBA"

	ds := dests(4, 3, 2)
	seq := mustNew(t, "wrr", Options{})
	for _, step := range addSteps(ds) {
		seq.Update(step)
	}
	if got := run(seq, len(want), flow); got != want {
		t.Fatalf("wrr after -a A4, B3, C2 one by one = %s, want %s", got, want)
	}

	ds = dests(4, 3, 2)
	s := mustNew(t, "wrr", Options{})
	UpdateSteps(s, addSteps(ds))
	if got := run(s, len(want), flow); got != want {
		t.Errorf("wrr restored with UpdateSteps = %s, want %s (the sequential -a result)", got, want)
	}
	// Only the last list is published: the cursor list is the whole one.
	if l := s.(*wrr).cur.Load(); len(l.dests) != 3 {
		t.Errorf("published list has %d destinations, want 3", len(l.dests))
	}

	// Steps that change nothing are not dest_changed calls.
	UpdateSteps(s, [][]*Dest{{ds[2], ds[1], ds[0]}, {ds[2], ds[1], ds[0]}})
	if got, want := run(s, 3, flow), "ABA"; got != want {
		t.Errorf("wrr after unchanged steps = %s, want %s (the round goes on)", got, want)
	}
}

// TestUpdateStepsOthers: for the schedulers whose state is a function of
// the last list, UpdateSteps equals Update of the last step.
func TestUpdateStepsOthers(t *testing.T) {
	for _, name := range Names() {
		if name == "wrr" || name == "twos" {
			continue
		}
		ds := dests(3, 1, 2, 5)
		a, b := mustNew(t, name, Options{}), mustNew(t, name, Options{})
		steps := addSteps(ds)
		a.Update(steps[len(steps)-1])
		UpdateSteps(b, steps)
		for i := range 64 {
			f := *flow
			f.Src = netip.AddrFrom4([4]byte{192, 0, 2, byte(i)})
			f.Dst = netip.AddrFrom4([4]byte{198, 51, 100, byte(3 * i)})
			if x, y := a.Schedule(&f), b.Schedule(&f); x != y {
				t.Fatalf("%s: decision %d: Update %s, UpdateSteps %s", name, i, letter(x), letter(y))
			}
		}
	}
	UpdateSteps(mustNew(t, "rr", Options{}), nil) // no steps: nothing to do, no panic
}
