// Package metrics exports xlb's statistics to Prometheus.
//
// A Collector reads dataplane.Stats when Prometheus scrapes, the way
// cloudflare/tubular's collector reads its dispatcher: nothing is kept
// between scrapes, every series is a const metric made from one
// dataplane.Sample, and the families are dataplane.Descs. The workers are
// never blocked: Stats reads the copies they publish at batch edges
// (atomics, and conntrack's seqlock), and takes the control lock only to
// copy the list of real servers. Statistics that cannot be read are
// counted in xlb_scrape_errors_total and their series are left out or
// zero; the scrape itself still succeeds.
//
// `xlb --xlb-stats` and the counters xlb prints when it stops render the
// same samples, so the three cannot disagree. docs/ARCHITECTURE.md and the
// README list the names.
package metrics
