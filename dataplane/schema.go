//go:build linux

package dataplane

import (
	"strconv"
	"strings"

	"github.com/xlbproject/xlb/bpf"
	"github.com/xlbproject/xlb/conntrack"
	"github.com/xlbproject/xlb/internal/packet"
	"github.com/xlbproject/xlb/modes"
)

// Kind says how a series' value behaves.
type Kind uint8

const (
	// KindCounter counts events: it only grows, until the process
	// restarts (or, for a real server's statistics, ipvsadm -Z zeroes
	// them or the real server is removed).
	KindCounter Kind = iota
	// KindGauge is a level that goes up and down: a table's size, a
	// backlog, a rate.
	KindGauge
)

func (k Kind) String() string {
	if k == KindGauge {
		return "gauge"
	}
	return "counter"
}

// Sections of `xlb --xlb-stats` (and of the counters the daemon prints
// when it stops), in the order they are printed. A Desc with no section
// is not printed there: the per-service and per-real-server series are
// what ipvsadm -L --stats --rate lists.
const (
	SectionXDP        = "xdp"
	SectionWorkers    = "workers"
	SectionSockets    = "af_xdp sockets"
	SectionNeighbours = "neighbours"
	SectionConntrack  = "conntrack"
)

// Desc describes one family of series of Stats: its Prometheus name,
// kind, help text and label names. Stats.Samples yields every series by
// its Desc, and both `xlb --xlb-stats` and the metrics exporter only
// render what it yields, so the two cannot disagree.
type Desc struct {
	Name    string // Prometheus name: xlb_..._total for counters, base units
	Kind    Kind
	Help    string
	Labels  []string // label names, in Sample.Labels order
	Section string   // --xlb-stats section; "" for series it does not print
}

// Sample is the value of one series.
type Sample struct {
	Desc *Desc
	// Key names the series in its --xlb-stats section ("rx_frames");
	// the text sums the samples of a key over their labels (queues,
	// interfaces).
	Key    string
	Labels []string // values of Desc.Labels
	Value  uint64
}

func counterDesc(name, help string, labels ...string) *Desc {
	return &Desc{Name: name, Kind: KindCounter, Help: help, Labels: labels}
}

func gaugeDesc(name, help string, labels ...string) *Desc {
	return &Desc{Name: name, Kind: KindGauge, Help: help, Labels: labels}
}

func inSection(section string, ds ...*Desc) {
	for _, d := range ds {
		d.Section = section
	}
}

// The worker families, labelled by queue (and reason for drops).
var (
	descRxFrames   = counterDesc("xlb_rx_frames_total", "Frames the worker took from its AF_XDP RX rings.", "queue")
	descTxFrames   = counterDesc("xlb_tx_frames_total", "Frames the worker put on its AF_XDP TX rings.", "queue")
	descDrops      = counterDesc("xlb_drops_total", "Frames the worker dropped, by reason (malformed and xmit_dropped are detailed in xlb_malformed_frames_total and xlb_rewrite_drops_total).", "queue", "reason")
	descMalformed  = counterDesc("xlb_malformed_frames_total", "Frames the worker's parser refused, by parser reason.", "queue", "reason")
	descRewrite    = counterDesc("xlb_rewrite_drops_total", "Frames the forwarding rewrite refused, by verdict.", "queue", "verdict")
	descConnHits   = counterDesc("xlb_conn_hits_total", "Frames that matched a connection entry by its forward key.", "queue")
	descReplyHits  = counterDesc("xlb_reply_hits_total", "Frames from a real server that matched a connection's reply key (NAT, FULLNAT).", "queue")
	descConnsNew   = counterDesc("xlb_conns_scheduled_total", "New connections scheduled to a real server.", "queue")
	descTxBacklog  = gaugeDesc("xlb_tx_backlog_frames", "Frames waiting for room on the TX rings.", "queue")
	descBadDesc    = counterDesc("xlb_bad_descriptors_total", "RX descriptors outside the UMEM, dropped.", "queue")
	descKickErrors = counterDesc("xlb_tx_kick_errors_total", "sendto(2) calls on an AF_XDP socket that failed.", "queue")
	descLinkDown   = counterDesc("xlb_tx_link_down_total", "sendto(2) calls refused with ENETDOWN: the interface was down.", "queue")
	descHeld       = counterDesc("xlb_held_frames_total", "Frames held while their real server's MAC address was resolved.", "queue")
	descHeldSent   = counterDesc("xlb_held_sent_total", "Held frames sent once the MAC address resolved.", "queue")
	descHoldExp    = counterDesc("xlb_hold_expired_total", "Held frames dropped after the hold timeout (also in xlb_drops_total{reason=\"no_neighbour\"}).", "queue")
	descHoldFull   = counterDesc("xlb_hold_full_total", "Frames not held because the hold queue was full (also in xlb_drops_total{reason=\"no_neighbour\"}).", "queue")
	descCsum       = counterDesc("xlb_checksum_completed_total", "Frames whose L4 checksum, left to the NIC, was completed before forwarding.", "queue")
	descTooBig     = counterDesc("xlb_icmp_too_big_sent_total", "Frames over the egress MTU answered with an ICMP too-big error.", "queue")
	descTTL        = counterDesc("xlb_icmp_time_exceeded_sent_total", "Frames whose TTL or hop limit ran out, answered with an ICMP time-exceeded error.", "queue")
	descICMPFwd    = counterDesc("xlb_icmp_forwarded_total", "ICMP errors about a connection forwarded to its other party.", "queue")
	descSYNLevel   = gaugeDesc("xlb_syn_guard_level", "The worker's SYN-flood pressure level (0 none, 1 rate-limited, 2 heavy).", "queue")
	descSYNRaises  = counterDesc("xlb_syn_guard_raises_total", "Times the worker raised its SYN-flood pressure level.", "queue")
	descSYNErrors  = counterDesc("xlb_syn_guard_errors_total", "Failed updates of the XDP program's syn_guard map.", "queue")
	descCopied     = counterDesc("xlb_copied_frames_total", "Frames copied to another interface's UMEM (no shared UMEM).", "queue")
	descHandedOff  = counterDesc("xlb_handed_off_frames_total", "Frames handed to the worker that owns their flow (hand-off ring).", "queue")
	descHandoffRx  = counterDesc("xlb_handoff_received_frames_total", "Frames other workers handed to this one and it forwarded.", "queue")
	descFillPosted = counterDesc("xlb_fill_ring_frames_total", "UMEM frames the worker posted to its sockets' fill rings for the kernel to receive into.", "queue")
	descCompleted  = counterDesc("xlb_completion_ring_frames_total", "Frames the worker took back from its sockets' completion rings: transmitted by the kernel.", "queue")
	descLocalInj   = counterDesc("xlb_local_injected_frames_total", "Frames of connections to Local real servers written to the local delivery tap.", "queue")

	descSyncExported  = counterDesc("xlb_sync_exported_total", "Connection sync (master): connections and templates the worker handed to the sync sender.", "queue")
	descSyncExpDrop   = counterDesc("xlb_sync_export_dropped_total", "Connection sync (master): records dropped because the worker's export ring was full.", "queue")
	descSyncInstalled = counterDesc("xlb_sync_installed_total", "Connection sync (backup): entries created from a master's records.", "queue")
	descSyncUpdated   = counterDesc("xlb_sync_updated_total", "Connection sync (backup): existing entries updated from a master's records.", "queue")
	descSyncDrops     = counterDesc("xlb_sync_install_drops_total", "Connection sync (backup): records not installed, by reason.", "queue", "reason")

	descOffInstalled = counterDesc("xlb_offload_installed_total", "Flow offload: flow directions the worker wrote into the XDP program's flows map.", "queue")
	descOffRemoved   = counterDesc("xlb_offload_removed_total", "Flow offload: flows the worker took out of the XDP program.", "queue")
	descOffErrors    = counterDesc("xlb_offload_errors_total", "Flow offload: failed flows-map operations (installs not written, the map full; deletes; lookups).", "queue")
)

// descOtherCounter publishes a worker Counter that counterSeries does
// not name (TestCounterKinds fails for it): a new Counter is never lost
// nor a panic, but it deserves a family of its own.
var descOtherCounter = counterDesc("xlb_worker_events_total", "Worker counters without a family of their own, by name.", "queue", "counter")

// counterSeries gives each worker Counter its family, and the reason
// label of the drops.
var counterSeries = [numCounters]struct {
	desc   *Desc
	reason string
}{
	RxFrames:      {descRxFrames, ""},
	TxFrames:      {descTxFrames, ""},
	Malformed:     {descDrops, "malformed"},
	NoService:     {descDrops, "no_service"},
	NoDest:        {descDrops, "no_dest"},
	NotNew:        {descDrops, "not_new"},
	NoNeighbour:   {descDrops, "no_neighbour"},
	ConnHit:       {descConnHits, ""},
	ConnNew:       {descConnsNew, ""},
	TxBacklog:     {descTxBacklog, ""},
	BadDesc:       {descBadDesc, ""},
	KickErrors:    {descKickErrors, ""},
	Held:          {descHeld, ""},
	HeldSent:      {descHeldSent, ""},
	HoldExpired:   {descHoldExp, ""},
	HoldFull:      {descHoldFull, ""},
	LinkDown:      {descLinkDown, ""},
	ReplyHit:      {descReplyHits, ""},
	NoLocalPort:   {descDrops, "no_local_port"},
	CsumCompleted: {descCsum, ""},
	TooBigSent:    {descTooBig, ""},
	TTLExceeded:   {descTTL, ""},
	XmitDropped:   {descDrops, "xmit_dropped"},
	SYNLevel:      {descSYNLevel, ""},
	SYNRaises:     {descSYNRaises, ""},
	SYNErrors:     {descSYNErrors, ""},
	Copied:        {descCopied, ""},
	CopyNoFrame:   {descDrops, "copy_no_frame"},
	ICMPForwarded: {descICMPFwd, ""},
	ICMPNoConn:    {descDrops, "icmp_no_conn"},
	LocalInjected: {descLocalInj, ""},
	LocalDropped:  {descDrops, "local_dropped"},
	NodestExpired: {descDrops, "nodest_expired"},
	HandedOff:     {descHandedOff, ""},
	HandoffFull:   {descDrops, "handoff_full"},
	HandoffRx:     {descHandoffRx, ""},
	HandoffNoMem:  {descDrops, "handoff_no_frame"},
	FillPosted:    {descFillPosted, ""},
	Completed:     {descCompleted, ""},

	SyncExported:      {descSyncExported, ""},
	SyncExportDropped: {descSyncExpDrop, ""},
	SyncInstalled:     {descSyncInstalled, ""},
	SyncUpdated:       {descSyncUpdated, ""},
	SyncNoService:     {descSyncDrops, "no_service"},
	SyncNoDest:        {descSyncDrops, "no_dest"},
	SyncInstallFull:   {descSyncDrops, "ring_full"},
	SyncBad:           {descSyncDrops, "bad_record"},
	SyncNoLocal:       {descSyncDrops, "no_local"},
	SyncTableFull:     {descSyncDrops, "table_full"},
	SyncStale:         {descSyncDrops, "stale"},

	OffloadInstalled: {descOffInstalled, ""},
	OffloadRemoved:   {descOffRemoved, ""},
	OffloadErrors:    {descOffErrors, ""},
}

// Kind is the counter's kind: TxBacklog and SYNLevel are levels.
func (c Counter) Kind() Kind {
	if c < numCounters && counterSeries[c].desc != nil {
		return counterSeries[c].desc.Kind
	}
	return KindCounter
}

// The XDP program's outcomes, summed over CPUs.
var descXDP = counterDesc("xlb_xdp_frames_total", "Frames the XDP program handled, by action (pass to the kernel, drop, redirect to AF_XDP) and reason.", "action", "reason")

// XDPAction is what the XDP program did with a frame of reason r:
// "pass", "drop" or "redirect".
func XDPAction(r bpf.Reason) string {
	switch s := r.String(); {
	case strings.HasPrefix(s, "drop_"):
		return "drop"
	case strings.HasPrefix(s, "redirect"):
		return "redirect"
	}
	return "pass"
}

// The kernel's AF_XDP statistics (XDP_STATISTICS), per socket: by
// queue and interface.
var (
	descXSKRxDropped   = counterDesc("xlb_xsk_rx_dropped_total", "Frames the kernel dropped for an AF_XDP socket: no fill-ring frame to copy into, or longer than a frame (XDP_STATISTICS rx_dropped).", "iface", "queue")
	descXSKRxRingFull  = counterDesc("xlb_xsk_rx_ring_full_total", "Frames dropped because the RX ring was full (rx_ring_full).", "iface", "queue")
	descXSKFillEmpty   = counterDesc("xlb_xsk_fill_ring_empty_total", "Times the kernel found the fill ring empty (rx_fill_ring_empty_descs).", "iface", "queue")
	descXSKRxInvalid   = counterDesc("xlb_xsk_rx_invalid_descriptors_total", "Invalid descriptors on the fill ring (rx_invalid_descs).", "iface", "queue")
	descXSKTxInvalid   = counterDesc("xlb_xsk_tx_invalid_descriptors_total", "Invalid descriptors on the TX ring (tx_invalid_descs).", "iface", "queue")
	descXSKTxRingEmpty = counterDesc("xlb_xsk_tx_ring_empty_total", "Times the kernel found the TX ring empty when woken (tx_ring_empty_descs).", "iface", "queue")
)

// Per-queue connection tables (conntrack.Stats).
var (
	descCTEntries     = gaugeDesc("xlb_conntrack_entries", "Connection entries in use (connections and persistence templates).", "queue")
	descCTTemplates   = gaugeDesc("xlb_conntrack_templates", "Persistence templates in use.", "queue")
	descCTCreated     = counterDesc("xlb_conntrack_created_total", "Connection entries created.", "queue")
	descCTTmplCreated = counterDesc("xlb_conntrack_templates_created_total", "Persistence templates created.", "queue")
	descCTExpired     = counterDesc("xlb_conntrack_expired_total", "Entries removed because their timer ran out.", "queue")
	descCTEvicted     = counterDesc("xlb_conntrack_evicted_total", "Live entries evicted to make room for a new connection.", "queue")
	descCTFull        = counterDesc("xlb_conntrack_full_total", "New connections for which the table had no free entry and nothing to evict.", "queue")
	descCTUntracked   = counterDesc("xlb_conntrack_untracked_total", "Frames forwarded without a connection entry (table full, or TCP without SYN while flooded): flood-mode forwards.", "queue")
	descCTOnePacket   = counterDesc("xlb_conntrack_one_packet_total", "One-packet scheduling (-o) decisions.", "queue")
	descCTNoDest      = counterDesc("xlb_conntrack_no_dest_total", "New connections for which the scheduler had no real server.", "queue")
	descCTNotNew      = counterDesc("xlb_conntrack_not_new_total", "TCP segments without SYN that matched no entry and were not scheduled.", "queue")
	descCTReplyColl   = counterDesc("xlb_conntrack_reply_collisions_total", "NAT entries whose reply key another entry already had.", "queue")
	descCTTmplInval   = counterDesc("xlb_conntrack_templates_invalidated_total", "Persistence templates found with an unavailable or quiesced real server.", "queue")
	descCTReused      = counterDesc("xlb_conntrack_reused_total", "Finished connections replaced by a new SYN on the same ports (conn_reuse_mode).", "queue")
)

// The neighbour resolver.
var (
	descNbDests      = gaugeDesc("xlb_neighbour_destinations", "Distinct real server addresses the resolver follows.")
	descNbUnresolved = gaugeDesc("xlb_neighbour_unresolved", "Real server addresses without a usable next hop.")
	descNbMACChanges = counterDesc("xlb_neighbour_mac_changes_total", "Times a resolved real server's MAC address changed.")
	descNbLinkDowns  = counterDesc("xlb_neighbour_link_downs_total", "Times a served interface went down.")
	descNbRounds     = counterDesc("xlb_neighbour_rounds_total", "Resolution rounds.")
	descNbDumps      = counterDesc("xlb_neighbour_dumps_total", "Neighbour-table dumps.")
	descNbRoutes     = counterDesc("xlb_neighbour_route_lookups_total", "Route lookups.")
	descNbProbes     = counterDesc("xlb_neighbour_probes_total", "ARP/ND probes asked of the kernel.")
	descNbEvents     = counterDesc("xlb_neighbour_events_total", "Netlink events received.")
	descNbResyncs    = counterDesc("xlb_neighbour_resyncs_total", "Times the netlink subscription was lost and set up again.")
	descNbErrors     = counterDesc("xlb_neighbour_errors_total", "Failed neighbour-table dumps.")
)

// Per service and real server, as ipvsadm -L --stats --rate lists them:
// since the real server was added or last zeroed (-Z). A service's
// figures are the sums over its real servers.
var (
	descSvcConns    = counterDesc("xlb_service_connections_total", "Connections scheduled to the service's real servers.", "service")
	descSvcActive   = gaugeDesc("xlb_service_active_connections", "Active (TCP established) connections of the service.", "service")
	descSvcInactive = gaugeDesc("xlb_service_inactive_connections", "Other connections of the service (UDP included).", "service")
	descSvcPackets  = counterDesc("xlb_service_packets_total", "Packets to (in) and from (out, NAT and FULLNAT) the service's real servers.", "service", "direction")
	descSvcBytes    = counterDesc("xlb_service_bytes_total", "IP bytes to (in) and from (out) the service's real servers, as ipvsadm --stats counts them.", "service", "direction")
	descSvcCPS      = gaugeDesc("xlb_service_connections_per_second", "IPVS's estimated connection rate of the service.", "service")
	descSvcPPS      = gaugeDesc("xlb_service_packets_per_second", "IPVS's estimated packet rate of the service.", "service", "direction")
	descSvcBPS      = gaugeDesc("xlb_service_bytes_per_second", "IPVS's estimated byte rate of the service.", "service", "direction")

	descRealConns     = counterDesc("xlb_real_server_connections_total", "Connections scheduled to the real server.", "service", "real")
	descRealActive    = gaugeDesc("xlb_real_server_active_connections", "Active (TCP established) connections of the real server.", "service", "real")
	descRealInactive  = gaugeDesc("xlb_real_server_inactive_connections", "Other connections of the real server (UDP included).", "service", "real")
	descRealPersist   = gaugeDesc("xlb_real_server_persistent_connections", "Persistence templates pointing at the real server.", "service", "real")
	descRealWeight    = gaugeDesc("xlb_real_server_weight", "The real server's weight (0: drained).", "service", "real")
	descRealPackets   = counterDesc("xlb_real_server_packets_total", "Packets to (in) and from (out, NAT and FULLNAT) the real server.", "service", "real", "direction")
	descRealBytes     = counterDesc("xlb_real_server_bytes_total", "IP bytes to (in) and from (out) the real server, as ipvsadm --stats counts them.", "service", "real", "direction")
	descRealCPS       = gaugeDesc("xlb_real_server_connections_per_second", "IPVS's estimated connection rate of the real server.", "service", "real")
	descRealPPS       = gaugeDesc("xlb_real_server_packets_per_second", "IPVS's estimated packet rate of the real server.", "service", "real", "direction")
	descRealBPS       = gaugeDesc("xlb_real_server_bytes_per_second", "IPVS's estimated byte rate of the real server.", "service", "real", "direction")
	descRealNeighbour = gaugeDesc("xlb_real_server_neighbour", "1 for the real server's next-hop state: resolved, incomplete, failed, no_route, unserved (routed out of an interface xlb does not serve) or unknown (not looked up yet).", "service", "real", "state")
)

func init() {
	inSection(SectionWorkers, descOtherCounter, descRxFrames, descTxFrames, descDrops, descMalformed, descRewrite, descConnHits,
		descReplyHits, descConnsNew, descTxBacklog, descBadDesc, descKickErrors, descLinkDown, descHeld,
		descHeldSent, descHoldExp, descHoldFull, descCsum, descTooBig, descTTL, descICMPFwd, descLocalInj, descHandedOff, descHandoffRx, descFillPosted, descCompleted, descSYNLevel,
		descSYNRaises, descSYNErrors, descCopied,
		descSyncExported, descSyncExpDrop, descSyncInstalled, descSyncUpdated, descSyncDrops,
		descOffInstalled, descOffRemoved, descOffErrors)
	inSection(SectionXDP, descXDP)
	inSection(SectionSockets, descXSKRxDropped, descXSKRxRingFull, descXSKFillEmpty, descXSKRxInvalid,
		descXSKTxInvalid, descXSKTxRingEmpty)
	inSection(SectionConntrack, descCTEntries, descCTTemplates, descCTCreated, descCTTmplCreated, descCTExpired,
		descCTEvicted, descCTFull, descCTUntracked, descCTOnePacket, descCTNoDest, descCTNotNew, descCTReplyColl,
		descCTTmplInval, descCTReused)
	inSection(SectionNeighbours, descNbDests, descNbUnresolved, descNbMACChanges, descNbLinkDowns, descNbRounds,
		descNbDumps, descNbRoutes, descNbProbes, descNbEvents, descNbResyncs, descNbErrors)
}

// Descs returns every family Stats.Samples may yield, for an exporter's
// Describe.
func Descs() []*Desc {
	ds := []*Desc{descXDP, descOtherCounter}
	seen := map[*Desc]bool{nil: true}
	for _, c := range counterSeries {
		if !seen[c.desc] {
			seen[c.desc] = true
			ds = append(ds, c.desc)
		}
	}
	return append(ds, descMalformed, descRewrite,
		descXSKRxDropped, descXSKRxRingFull, descXSKFillEmpty, descXSKRxInvalid, descXSKTxInvalid, descXSKTxRingEmpty,
		descCTEntries, descCTTemplates, descCTCreated, descCTTmplCreated, descCTExpired, descCTEvicted, descCTFull,
		descCTUntracked, descCTOnePacket, descCTNoDest, descCTNotNew, descCTReplyColl, descCTTmplInval, descCTReused,
		descNbDests, descNbUnresolved, descNbMACChanges, descNbLinkDowns, descNbRounds, descNbDumps, descNbRoutes,
		descNbProbes, descNbEvents, descNbResyncs, descNbErrors,
		descSvcConns, descSvcActive, descSvcInactive, descSvcPackets, descSvcBytes, descSvcCPS, descSvcPPS, descSvcBPS,
		descRealConns, descRealActive, descRealInactive, descRealPersist, descRealWeight, descRealPackets,
		descRealBytes, descRealCPS, descRealPPS, descRealBPS, descRealNeighbour)
}

// conntrackSeries lists conntrack.Stats' fields with their families and
// --xlb-stats keys (prefixed ct_ where a worker counter has the name).
func conntrackSeries(c *conntrack.Stats) [14]struct {
	desc *Desc
	key  string
	v    uint64
} {
	type s = struct {
		desc *Desc
		key  string
		v    uint64
	}
	return [14]s{
		{descCTEntries, "entries", c.Entries},
		{descCTTemplates, "templates", c.Templates},
		{descCTCreated, "created", c.Created},
		{descCTTmplCreated, "templates_created", c.TemplatesCreated},
		{descCTExpired, "expired", c.Expired},
		{descCTEvicted, "evicted", c.Evicted},
		{descCTFull, "full", c.Full},
		{descCTUntracked, "untracked", c.Untracked},
		{descCTOnePacket, "one_packet", c.OnePacket},
		{descCTNoDest, "ct_no_dest", c.NoDest},
		{descCTNotNew, "ct_not_new", c.NotNew},
		{descCTReplyColl, "reply_collisions", c.ReplyCollisions},
		{descCTTmplInval, "templates_invalidated", c.TemplatesInvalidated},
		{descCTReused, "reused", c.Reused},
	}
}

// Samples yields every series of s: the XDP outcomes, then per queue the
// worker's counters, its sockets' and its connection table's, then the
// resolver's, then per service and real server. Zeros are yielded too,
// so that an exporter always publishes the full set of series.
func (s *Stats) Samples(yield func(Sample) bool) {
	for r, n := range s.XDP.All() {
		if !yield(Sample{descXDP, r.String(), []string{XDPAction(r), r.String()}, n}) {
			return
		}
	}
	for i := range s.Queues {
		if !s.Queues[i].samples(yield) {
			return
		}
	}
	if !s.Neighbours.samples(yield) {
		return
	}
	for i := range s.Services {
		if !s.Services[i].samples(yield) {
			return
		}
	}
}

func (q *QueueStats) samples(yield func(Sample) bool) bool {
	queue := strconv.Itoa(q.Queue)
	for c, n := range q.Counters {
		cs := counterSeries[c]
		l := []string{queue}
		switch {
		case cs.desc == nil:
			cs.desc = descOtherCounter
			l = append(l, Counter(c).String())
		case cs.reason != "":
			l = append(l, cs.reason)
		}
		if !yield(Sample{cs.desc, Counter(c).String(), l, n}) {
			return false
		}
	}
	for r, n := range q.Malformed {
		if packet.Reason(r) == packet.OK {
			continue
		}
		name := packet.Reason(r).String()
		if !yield(Sample{descMalformed, "malformed_" + name, []string{queue, name}, n}) {
			return false
		}
	}
	for v, n := range q.Rewrite {
		if modes.Verdict(v) == modes.OK {
			continue
		}
		name := modes.Verdict(v).String()
		if !yield(Sample{descRewrite, "xmit_" + name, []string{queue, name}, n}) {
			return false
		}
	}
	for _, k := range q.Sockets {
		l := []string{k.Iface, queue}
		for _, x := range [...]struct {
			d   *Desc
			key string
			v   uint64
		}{
			{descXSKRxDropped, "rx_dropped", k.RxDropped},
			{descXSKRxRingFull, "rx_ring_full", k.RxRingFull},
			{descXSKFillEmpty, "fill_ring_empty", k.RxFillRingEmpty},
			{descXSKRxInvalid, "rx_invalid", k.RxInvalidDescs},
			{descXSKTxInvalid, "tx_invalid", k.TxInvalidDescs},
			{descXSKTxRingEmpty, "tx_ring_empty", k.TxRingEmpty},
		} {
			if !yield(Sample{x.d, x.key, l, x.v}) {
				return false
			}
		}
	}
	for _, x := range conntrackSeries(&q.Conntrack) {
		if !yield(Sample{x.desc, x.key, []string{queue}, x.v}) {
			return false
		}
	}
	return true
}

func (n *NeighbourStats) samples(yield func(Sample) bool) bool {
	for _, x := range [...]struct {
		d   *Desc
		key string
		v   uint64
	}{
		{descNbDests, "destinations", uint64(n.Destinations)},
		{descNbUnresolved, "unresolved", uint64(n.Unresolved)},
		{descNbMACChanges, "mac_changes", n.MACChanges},
		{descNbLinkDowns, "link_downs", n.LinkDowns},
		{descNbRounds, "rounds", n.Rounds},
		{descNbDumps, "dumps", n.Dumps},
		{descNbRoutes, "route_lookups", n.RouteLookups},
		{descNbProbes, "probes", n.Probes},
		{descNbEvents, "events", n.Events},
		{descNbResyncs, "resyncs", n.Resyncs},
		{descNbErrors, "errors", n.Errors},
	} {
		if !yield(Sample{x.d, x.key, nil, x.v}) {
			return false
		}
	}
	return true
}

func (s *ServiceStats) samples(yield func(Sample) bool) bool {
	svc := ServiceLabel(s.Service)
	var sum DestStats
	for i := range s.Dests {
		d := &s.Dests[i]
		sum.ActiveConns += d.ActiveConns
		sum.InactConns += d.InactConns
		sum.Conns += d.Conns
		sum.InPkts += d.InPkts
		sum.OutPkts += d.OutPkts
		sum.InBytes += d.InBytes
		sum.OutBytes += d.OutBytes
		sum.CPS += d.CPS
		sum.InPPS += d.InPPS
		sum.OutPPS += d.OutPPS
		sum.InBPS += d.InBPS
		sum.OutBPS += d.OutBPS
	}
	one := func(d *Desc, key string, v uint64, l ...string) bool {
		return yield(Sample{d, key, l, v})
	}
	if !(one(descSvcConns, "conns", sum.Conns, svc) &&
		one(descSvcActive, "active_conns", uint64(max(sum.ActiveConns, 0)), svc) &&
		one(descSvcInactive, "inactive_conns", uint64(max(sum.InactConns, 0)), svc) &&
		one(descSvcPackets, "in_pkts", sum.InPkts, svc, "in") &&
		one(descSvcPackets, "out_pkts", sum.OutPkts, svc, "out") &&
		one(descSvcBytes, "in_bytes", sum.InBytes, svc, "in") &&
		one(descSvcBytes, "out_bytes", sum.OutBytes, svc, "out") &&
		one(descSvcCPS, "cps", sum.CPS, svc) &&
		one(descSvcPPS, "in_pps", sum.InPPS, svc, "in") &&
		one(descSvcPPS, "out_pps", sum.OutPPS, svc, "out") &&
		one(descSvcBPS, "in_bps", sum.InBPS, svc, "in") &&
		one(descSvcBPS, "out_bps", sum.OutBPS, svc, "out")) {
		return false
	}
	for i := range s.Dests {
		d := &s.Dests[i]
		real := RealLabel(d.Addr)
		if !(one(descRealConns, "conns", d.Conns, svc, real) &&
			one(descRealActive, "active_conns", uint64(max(d.ActiveConns, 0)), svc, real) &&
			one(descRealInactive, "inactive_conns", uint64(max(d.InactConns, 0)), svc, real) &&
			one(descRealPersist, "persist_conns", uint64(max(d.PersistConns, 0)), svc, real) &&
			one(descRealWeight, "weight", uint64(max(d.Weight, 0)), svc, real) &&
			one(descRealPackets, "in_pkts", d.InPkts, svc, real, "in") &&
			one(descRealPackets, "out_pkts", d.OutPkts, svc, real, "out") &&
			one(descRealBytes, "in_bytes", d.InBytes, svc, real, "in") &&
			one(descRealBytes, "out_bytes", d.OutBytes, svc, real, "out") &&
			one(descRealCPS, "cps", d.CPS, svc, real) &&
			one(descRealPPS, "in_pps", d.InPPS, svc, real, "in") &&
			one(descRealPPS, "out_pps", d.OutPPS, svc, real, "out") &&
			one(descRealBPS, "in_bps", d.InBPS, svc, real, "in") &&
			one(descRealBPS, "out_bps", d.OutBPS, svc, real, "out") &&
			one(descRealNeighbour, "neighbour", 1, svc, real, d.Neighbour.String())) {
			return false
		}
	}
	return true
}
