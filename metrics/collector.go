//go:build linux

package metrics

import (
	"fmt"
	"log/slog"
	"net/http"
	"sync/atomic"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/xlbproject/xlb/dataplane"
)

// Source is what the collector reads: *dataplane.Dataplane, or a fake.
type Source interface {
	Stats() dataplane.Stats
}

// Collector is a prometheus.Collector over a Source. Safe for
// concurrent use.
type Collector struct {
	src    Source
	log    *slog.Logger
	descs  map[*dataplane.Desc]*prometheus.Desc
	errs   atomic.Uint64
	errsDo *prometheus.Desc
}

// NewCollector returns a collector of src's statistics. log, if not
// nil, gets each read error (at debug level: a scrape every few seconds
// must not flood the log).
func NewCollector(src Source, log *slog.Logger) *Collector {
	c := &Collector{src: src, log: log, descs: map[*dataplane.Desc]*prometheus.Desc{},
		errsDo: prometheus.NewDesc("xlb_scrape_errors_total",
			"Statistics xlb could not read while being scraped (their series are missing or zero).", nil, nil)}
	for _, d := range dataplane.Descs() {
		c.descs[d] = prometheus.NewDesc(d.Name, d.Help, d.Labels, nil)
	}
	return c
}

// Describe sends every family's description.
func (c *Collector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range c.descs {
		ch <- d
	}
	ch <- c.errsDo
}

// Collect reads the statistics once and sends one const metric per
// sample.
func (c *Collector) Collect(ch chan<- prometheus.Metric) {
	st := c.src.Stats()
	errs := uint64(len(st.Errors))
	for _, err := range st.Errors {
		if c.log != nil {
			c.log.Debug("metrics: statistics not read", "err", err)
		}
	}
	for s := range st.Samples {
		pd := c.descs[s.Desc]
		if pd == nil {
			// A family missing from dataplane.Descs: a bug, caught by the
			// tests; count it rather than fail the scrape.
			errs++
			continue
		}
		vt := prometheus.CounterValue
		if s.Desc.Kind == dataplane.KindGauge {
			vt = prometheus.GaugeValue
		}
		m, err := prometheus.NewConstMetric(pd, vt, float64(s.Value), s.Labels...)
		if err != nil {
			errs++
			if c.log != nil {
				c.log.Debug("metrics: bad sample", "name", s.Desc.Name, "err", err)
			}
			continue
		}
		ch <- m
	}
	ch <- prometheus.MustNewConstMetric(c.errsDo, prometheus.CounterValue, float64(c.errs.Add(errs)))
}

// Handler serves /metrics: src's statistics, the extra collectors'
// (the health checker's, NewHealthCollector), and the Go runtime's and
// the process's (go_*, process_*), from a registry of its own.
func Handler(src Source, log *slog.Logger, extra ...prometheus.Collector) (http.Handler, error) {
	reg := prometheus.NewRegistry()
	for _, col := range append([]prometheus.Collector{
		NewCollector(src, log),
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
	}, extra...) {
		if err := reg.Register(col); err != nil {
			return nil, fmt.Errorf("register metrics collector: %w", err)
		}
	}
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{
		ErrorHandling:       promhttp.ContinueOnError,
		MaxRequestsInFlight: 4,
	}))
	return mux, nil
}
