package main

import (
	"fmt"
	"io"
	"strings"

	"github.com/xlbproject/xlb/bpf"
	"github.com/xlbproject/xlb/dataplane"
)

// writeStats prints the dataplane's counters, as the daemon does when it
// stops and `xlb --xlb-stats` does on demand.
func writeStats(w io.Writer, dp controlPlane) {
	st := dp.Stats()
	formatStats(w, &st, dp.AttachMode())
	writeQueues(w, st.Queues)
}

// writeQueues prints each queue's worker figures when there are several:
// what it received, and what moved between workers to reach the owner of
// its flow.
func writeQueues(w io.Writer, qs []dataplane.QueueStats) {
	if len(qs) < 2 {
		return
	}
	fmt.Fprintln(w, "queues:")
	for _, q := range qs {
		c := &q.Counters
		fmt.Fprintf(w, "  queue %d  rx_frames %d  handed_off %d  handoff_full %d  handoff_rx %d  handoff_no_frame %d\n",
			q.Queue, c[dataplane.RxFrames], c[dataplane.HandedOff], c[dataplane.HandoffFull], c[dataplane.HandoffRx], c[dataplane.HandoffNoMem])
	}
}

// statsSections are --xlb-stats' sections in order; inline ones print
// every key on one line ("name value, name value"), the others one line
// per non-zero key.
var statsSections = []struct {
	name   string
	inline bool
}{
	{dataplane.SectionXDP, false},
	{dataplane.SectionWorkers, false},
	{dataplane.SectionSockets, true},
	{dataplane.SectionNeighbours, true},
	{dataplane.SectionConntrack, false},
}

// formatStats renders st's samples (dataplane.Stats.Samples, which the
// metrics exporter renders too): per section, each key's value summed
// over queues and interfaces.
func formatStats(w io.Writer, st *dataplane.Stats, mode bpf.AttachMode) {
	type entry struct {
		key string
		v   uint64
	}
	bySection := map[string][]entry{}
	index := map[[2]string]int{}
	for s := range st.Samples {
		sec := s.Desc.Section
		if sec == "" {
			continue
		}
		k := [2]string{sec, s.Key}
		if i, ok := index[k]; ok {
			bySection[sec][i].v += s.Value
			continue
		}
		index[k] = len(bySection[sec])
		bySection[sec] = append(bySection[sec], entry{s.Key, s.Value})
	}
	for _, sec := range statsSections {
		if sec.name == dataplane.SectionXDP {
			fmt.Fprintf(w, "xdp (%s):\n", mode)
		} else {
			fmt.Fprintf(w, "%s:\n", sec.name)
		}
		if sec.inline {
			var parts []string
			for _, e := range bySection[sec.name] {
				parts = append(parts, fmt.Sprintf("%s %d", e.key, e.v))
			}
			if len(parts) > 0 {
				fmt.Fprintf(w, "  %s\n", strings.Join(parts, ", "))
			}
		} else {
			for _, e := range bySection[sec.name] {
				if e.v != 0 {
					fmt.Fprintf(w, "  %-22s %d\n", e.key, e.v)
				}
			}
		}
		if sec.name == dataplane.SectionNeighbours {
			n := &st.Neighbours
			for _, u := range n.List {
				fmt.Fprintf(w, "  unresolved %v: %s\n", u.Addr, u.Reason)
			}
			if more := n.Unresolved - len(n.List); more > 0 {
				fmt.Fprintf(w, "  unresolved: %d more\n", more)
			}
		}
	}
	if len(st.Errors) > 0 {
		fmt.Fprintln(w, "errors:")
		for _, err := range st.Errors {
			fmt.Fprintf(w, "  %v\n", err)
		}
	}
}
