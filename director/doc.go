// Package director owns xlb's live configuration: the operator's IPVS
// configuration (what ipvsadm commands, -R, and the rules file say) and
// the overlays other control-plane parts put on it (the health checker's
// down real servers; later, connection sync).
//
// Every mutation goes through one path, serialised by the Director:
//
//	clone the operator configuration → change the clone → validate it whole
//	→ compose the overlays → Dataplane.Apply → publish → log → save
//
// A change that fails at any step before the publication changes
// nothing: the dataplane takes a configuration whole or not at all, and
// the Director publishes the new snapshots only after it did. Readers
// (listings, the rules-file writer, metrics) take immutable snapshots
// without a lock: Config and Applied never return a configuration that
// is changed afterwards.
//
// Two configurations exist at any time:
//
//   - Config, the operator's: what -S saves to the rules file (--save),
//     so that a restart comes back with the operator's weights and not
//     with the health checker's verdicts of the moment;
//   - Applied, Config with the overlays composed over it: what the
//     dataplane forwards with, and what `ipvsadm -L` and `-S` on the
//     control socket show. keepalived does the same to a kernel director:
//     with inhibit_on_failure a failed real server is listed with weight
//     0, otherwise it is missing from the listing.
//
// An overlay is per (service, real server): removed, weight 0
// (inhibited), a weight other than the configured one (misc_dynamic), or
// a sorry server the operator did not configure, added with its own
// forwarding method. Overlays outlive Replace and Change: a real server
// the health checker found failed stays out across a reload that keeps
// it. ApplyHealth makes the Director the health engine's sink
// (health.Sink): one batch of transitions, one SetDestStates, one Apply.
//
// The Director logs one structured line (log/slog) per state change:
// a service added, edited or removed, a real server added, removed,
// drained (weight 0), put back, or marked down or up by an overlay, the
// timeouts, the sysctls, a reload and a save. It never logs per packet:
// it is not on the packet path.
//
// Cost: a change clones the whole configuration, validates the services
// it changed (and the rest that is not a service) and the dataplane diffs
// it against the running one. Measured with BenchmarkChange on the
// shared 2-core test machine, the Director's part of one -e is 0.06 ms at
// 10 services of 10 destinations, 16 ms at 1,000 of 10 and 100 ms at 100
// of 1,000; --save adds the rules file's formatting and fsync (20 ms at
// the smallest size, most of it the fsync). The workers keep forwarding
// meanwhile and take the new snapshot at their next batch.
package director
