package dataplane

import (
	"slices"

	"github.com/xlbproject/xlb/internal/ipvs"
	"github.com/xlbproject/xlb/sched"
)

// kernelSteps is the sequence of destination lists (kernel order, newest
// first) a scheduler goes through in the kernel when a service's list
// changes from prev to next by single commands: the removed destinations
// first, in one step (prev without them; also the step in which a
// scheduler bound to a populated service first sees it), then each added
// destination on its own, oldest first, at the head of the list, as the
// -a lines of ipvsadm -R or of a rules file add them. prev is nil for a
// new service: -A binds the scheduler to an empty service and every -a is
// a step. Apply takes a whole configuration at once and publishes only
// the last list (sched.UpdateSteps), but leaves the scheduler in the state
// the kernel's is in after the same lines run one by one.
//
// If next is not prev's survivors with the added destinations in front
// (a configuration built some other way), the last step is next itself.
func kernelSteps(prev, next []*sched.Dest) [][]*sched.Dest {
	in := make(map[*sched.Dest]bool, len(next))
	for _, d := range next {
		in[d] = true
	}
	var steps [][]*sched.Dest
	var cur []*sched.Dest
	old := make(map[*sched.Dest]bool, len(prev))
	for _, d := range prev {
		if in[d] {
			cur = append(cur, d)
			old[d] = true
		}
	}
	if len(prev) > 0 {
		steps = append(steps, cur)
	}
	// Each added destination goes to the head of the list. The steps are
	// suffixes of one array, filled from its end: O(n) memory for n
	// additions (sched.UpdateSteps then costs O(n) too).
	added := 0
	for _, d := range next {
		if !old[d] {
			added++
		}
	}
	all := make([]*sched.Dest, added+len(cur))
	copy(all[added:], cur)
	pos := added
	for i := len(next) - 1; i >= 0; i-- {
		if d := next[i]; !old[d] {
			pos--
			all[pos] = d
			steps = append(steps, all[pos:])
		}
	}
	if len(steps) == 0 || !slices.Equal(steps[len(steps)-1], next) {
		steps = append(steps, next)
	}
	return steps
}

// schedChanged reports whether changing a service from old to s rebinds
// its scheduler: ip_vs_edit_service rebinds only for another scheduler.
// A change of -b flags alone keeps the scheduler's state (rr's and wrr's
// position, lblc's and lblcr's cache); sh and mh read their flags on every
// decision, so xlb, whose sh and mh take their flags when made, makes them
// again, and rebuilds the same table from the same list.
func schedChanged(old, s *ipvs.Service) bool {
	o, n := old.Sched, s.Sched
	if o == "" {
		o = sched.DefaultScheduler
	}
	if n == "" {
		n = sched.DefaultScheduler
	}
	if o != n {
		return true
	}
	return sched.UsesFlags(n) && !slices.Equal(old.SchedFlags, s.SchedFlags)
}

// kernelOrder is svc's destinations as its schedulers last saw them,
// newest first.
func kernelOrder(svc *svcState) []*sched.Dest {
	order := make([]*sched.Dest, 0, len(svc.spec.Dests))
	for i := len(svc.spec.Dests) - 1; i >= 0; i-- {
		ds := svc.spec.Dests[i]
		if d := svc.dests[ds.AddrPort()]; d != nil {
			order = append(order, d)
		}
	}
	return order
}
