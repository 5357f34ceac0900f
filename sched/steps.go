package sched

// UpdateSteps gives s a sequence of destination lists, as the kernel sees
// them when commands change a service one destination at a time (ipvsadm
// -R runs every line as its own command: -A binds the scheduler to an
// empty service, then each -a adds one destination at the head of the
// list). The last list is the service's; only it is published, so a
// decision never sees an intermediate list, but the scheduler's state
// afterwards is what the kernel's is after the same steps. For most
// schedulers that state depends on the last list only and UpdateSteps is
// Update(steps[len(steps)-1]); wrr replays ip_vs_wrr_dest_changed once per
// step, which decides where its first round starts.
//
// With no steps, UpdateSteps does nothing. Calls must not overlap with
// one another or with Update.
func UpdateSteps(s Scheduler, steps [][]*Dest) {
	if len(steps) == 0 {
		return
	}
	if st, ok := s.(stepper); ok {
		st.updateSteps(steps)
		return
	}
	s.Update(steps[len(steps)-1])
}

// stepper is a scheduler whose state depends on the sequence of Updates,
// not only on the last one.
type stepper interface {
	updateSteps(steps [][]*Dest)
}

// UsesFlags reports whether scheduler name reads its -b flags: sh and mh
// (fallback, port). The kernel ignores flag-1..flag-3 for every other
// scheduler, so for them a change of flags alone changes nothing
// (ip_vs_edit_service rebinds only when the scheduler itself changes).
func UsesFlags(name string) bool { return name == "sh" || name == "mh" }
