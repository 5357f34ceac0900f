//go:build linux

package metrics

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/xlbproject/xlb/health"
)

// HealthSource is what the health collector reads: *health.Engine, or a
// fake.
type HealthSource interface {
	Status() health.Status
}

// HealthCollector is a prometheus.Collector over the health engine's
// Status: per real server its health, the weight the engine asked for,
// its transitions and its checks; per service whether the sorry server
// serves. Like Collector it keeps nothing between scrapes. Safe for
// concurrent use.
type HealthCollector struct {
	src                                  HealthSource
	healthy, weight, transitions, checks *prometheus.Desc
	failures, sorry                      *prometheus.Desc
}

// NewHealthCollector returns a collector of src's health status.
func NewHealthCollector(src HealthSource) *HealthCollector {
	rs := []string{"service", "dest"}
	return &HealthCollector{src: src,
		healthy: prometheus.NewDesc("xlb_health_real_server_up",
			"1 while the health checkers find the real server healthy, else 0.", rs, nil),
		weight: prometheus.NewDesc("xlb_health_real_server_weight",
			"Weight the health engine put the real server at: its configured or dynamic weight, 0 when drained or out.", rs, nil),
		transitions: prometheus.NewDesc("xlb_health_transitions_total",
			"Changes of the real server's health (up to down and back).", rs, nil),
		checks: prometheus.NewDesc("xlb_health_checks_total",
			"Probes run by one checker of the real server.", append(rs, "checker"), nil),
		failures: prometheus.NewDesc("xlb_health_check_consecutive_failures",
			"Failed probes in a row of one checker of the real server.", append(rs, "checker"), nil),
		sorry: prometheus.NewDesc("xlb_health_sorry_server_active",
			"1 while the virtual service's sorry server takes the new connections.", []string{"service"}, nil),
	}
}

// Describe sends every family's description.
func (c *HealthCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{c.healthy, c.weight, c.transitions, c.checks, c.failures, c.sorry} {
		ch <- d
	}
}

// Collect reads the status once and sends its samples.
func (c *HealthCollector) Collect(ch chan<- prometheus.Metric) {
	st := c.src.Status()
	b := func(v bool) float64 {
		if v {
			return 1
		}
		return 0
	}
	for _, s := range st.Services {
		if s.Sorry.IsValid() {
			ch <- prometheus.MustNewConstMetric(c.sorry, prometheus.GaugeValue, b(s.SorryActive), s.Service)
		}
		for _, r := range s.Reals {
			dest := r.Dest.String()
			w := float64(r.Weight)
			if !r.Present {
				w = 0
			}
			ch <- prometheus.MustNewConstMetric(c.healthy, prometheus.GaugeValue, b(r.Healthy), s.Service, dest)
			ch <- prometheus.MustNewConstMetric(c.weight, prometheus.GaugeValue, w, s.Service, dest)
			ch <- prometheus.MustNewConstMetric(c.transitions, prometheus.CounterValue, float64(r.Transitions), s.Service, dest)
			// Two checkers of one kind on one server (two HTTP_GETs) would
			// make the same series; they are summed.
			runs := map[string]uint64{}
			fails := map[string]int{}
			var kinds []string
			for _, k := range r.Checks {
				name := k.Kind.String()
				if _, ok := runs[name]; !ok {
					kinds = append(kinds, name)
				}
				runs[name] += k.Checks
				fails[name] = max(fails[name], k.Failures)
			}
			for _, name := range kinds {
				ch <- prometheus.MustNewConstMetric(c.checks, prometheus.CounterValue, float64(runs[name]), s.Service, dest, name)
				ch <- prometheus.MustNewConstMetric(c.failures, prometheus.GaugeValue, float64(fails[name]), s.Service, dest, name)
			}
		}
	}
}
