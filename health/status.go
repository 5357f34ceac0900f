package health

import (
	"fmt"
	"io"
	"net/netip"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/xlbproject/xlb/internal/ipvs"
)

// Status is a snapshot of every checked service, for `xlb health`. It
// marshals to JSON as is.
type Status struct {
	Services []ServiceStatus `json:"services"`
	// SinkError is the last error the sink returned, "" once a batch
	// went through again.
	SinkError   string    `json:"sink_error,omitempty"`
	SinkErrorAt time.Time `json:"sink_error_at,omitzero"`
}

// ServiceStatus is one virtual service.
type ServiceStatus struct {
	Service     string          `json:"service"` // KeyString
	Key         ipvs.ServiceKey `json:"-"`
	Also        []string        `json:"also,omitempty"` // the group's other services
	Quorum      int64           `json:"quorum"`
	Weight      int64           `json:"weight"` // sum of the healthy servers' weights
	QuorumUp    bool            `json:"quorum_up"`
	Sorry       netip.AddrPort  `json:"sorry_server,omitzero"`
	SorryActive bool            `json:"sorry_active"`
	Reals       []RealStatus    `json:"reals"`
}

// RealStatus is one real server.
type RealStatus struct {
	Dest    netip.AddrPort `json:"dest"`
	Healthy bool           `json:"healthy"`
	// Present and Weight are what the engine last asked of the sink.
	Present bool      `json:"present"`
	Weight  int32     `json:"weight"`
	Since   time.Time `json:"since"` // last change of Healthy, or when checking began
	// Transitions counts the changes of Healthy, for metrics.
	Transitions uint64        `json:"transitions"`
	Checks      []CheckStatus `json:"checks"`
}

// CheckStatus is one checker of a real server.
type CheckStatus struct {
	Kind   Kind           `json:"kind"`
	Target netip.AddrPort `json:"target"` // what it probes (connect_ip, connect_port)
	Up     bool           `json:"up"`
	// Result of the last probe: "" before the first, "ok" or "failed".
	Result      string        `json:"result"`
	Error       string        `json:"error,omitempty"`
	LastCheck   time.Time     `json:"last_check,omitzero"`
	Duration    time.Duration `json:"duration_ns"`
	Transition  time.Time     `json:"last_transition,omitzero"`
	Failures    int           `json:"consecutive_failures"`
	Successes   int           `json:"consecutive_successes"`
	Checks      uint64        `json:"checks"`
	DelayLoop   time.Duration `json:"delay_loop_ns"`
	Retry       int           `json:"retry"`
	Rise        int           `json:"rise"`
	Description string        `json:"description"`
}

// Status returns a snapshot of every service, real server and checker.
func (e *Engine) Status() Status {
	e.mu.Lock()
	defer e.mu.Unlock()
	st := Status{SinkError: e.sinkErr}
	if e.sinkErr != "" {
		st.SinkErrorAt = e.sinkAt
	}
	for _, vs := range e.services {
		ss := ServiceStatus{Service: KeyString(vs.spec.Key), Key: vs.spec.Key, Quorum: max(vs.spec.Quorum, 1),
			QuorumUp: vs.quorumUp, Sorry: vs.spec.Sorry}
		ss.SorryActive = ss.Sorry.Addr().IsValid() && !vs.quorumUp
		for _, k := range vs.spec.Also {
			ss.Also = append(ss.Also, KeyString(k))
		}
		for _, rs := range vs.reals {
			if rs.healthy {
				ss.Weight += int64(rs.weight())
			}
			r := RealStatus{Dest: rs.spec.Addr, Healthy: rs.healthy, Since: rs.since, Transitions: rs.flips, Checks: []CheckStatus{}}
			if t, ok := vs.sent[destKey{vs.spec.Key, rs.spec.Addr}]; ok {
				r.Present, r.Weight = t.Present, t.Weight
			}
			for _, cs := range rs.checks {
				c := CheckStatus{Kind: cs.spec.Kind, Target: cs.spec.target(rs.spec.Addr), Up: cs.up, Error: cs.lastErr,
					LastCheck: cs.last, Duration: cs.lastDur, Transition: cs.changed, Failures: cs.fails,
					Successes: cs.oks, Checks: cs.runs, DelayLoop: cs.spec.DelayLoop, Retry: cs.spec.Retry,
					Rise: cs.spec.Rise, Description: cs.spec.describe()}
				if cs.runs > 0 {
					c.Result = "ok"
					if cs.lastErr != "" {
						c.Result = "failed"
					}
				}
				r.Checks = append(r.Checks, c)
			}
			ss.Reals = append(ss.Reals, r)
		}
		st.Services = append(st.Services, ss)
	}
	return st
}

// describe is a one-line summary of c for listings.
func (c *Check) describe() string {
	switch c.Kind {
	case HTTPGet, SSLGet:
		s := c.Kind.String()
		for _, u := range c.URLs {
			s += " " + u.Path
		}
		return s
	case MiscCheck:
		s := "MISC_CHECK " + c.MiscPath
		if c.MiscDynamic {
			s += " (dynamic)"
		}
		return s
	}
	return c.Kind.String()
}

// WriteText writes st as the table `xlb health` prints: one line per
// checker (one per real server without checkers), times relative to now.
func (st Status) WriteText(w io.Writer, now time.Time) error {
	tw := tabwriter.NewWriter(w, 0, 8, 2, ' ', 0)
	fmt.Fprintln(tw, "SERVICE\tDEST\tSTATE\tWEIGHT\tCHECKER\tTARGET\tRESULT\tLAST CHECK\tSINCE\tERROR")
	ago := func(t time.Time) string {
		if t.IsZero() {
			return "-"
		}
		return now.Sub(t).Truncate(time.Second).String() + " ago"
	}
	for _, s := range st.Services {
		name := s.Service
		if !s.QuorumUp {
			name += " (quorum lost)"
		}
		for _, r := range s.Reals {
			state := "down"
			if r.Healthy {
				state = "up"
			}
			weight := "-"
			if r.Present {
				weight = fmt.Sprint(r.Weight)
			}
			if len(r.Checks) == 0 {
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t-\t-\t-\t-\t%s\t\n", name, r.Dest, state, weight, ago(r.Since))
			}
			for _, c := range r.Checks {
				res := c.Result
				if res == "" {
					res = "-"
				}
				errText := strings.ReplaceAll(c.Error, "\t", " ")
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", name, r.Dest, state, weight,
					c.Description, c.Target, res, ago(c.LastCheck), ago(r.Since), errText)
			}
		}
		if s.Sorry.IsValid() {
			state := "standby"
			if s.SorryActive {
				state = "serving"
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t-\tsorry_server\t-\t-\t-\t-\t\n", name, s.Sorry, state)
		}
	}
	return tw.Flush()
}
