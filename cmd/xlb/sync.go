package main

import (
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/xlbproject/xlb/internal/ipvs"
	"github.com/xlbproject/xlb/internal/ipvsadm"
	"github.com/xlbproject/xlb/ipvssync"
)

// syncPlane is what the sync daemons need of the dataplane
// (*dataplane.Dataplane; a fake in tests): the master's export of new
// and changed connections, and the backup's install of received ones.
type syncPlane interface {
	// StartSyncExport calls sink with batches of connections until stop
	// is called; stop returns once sink is no longer running.
	StartSyncExport(sink func(conns []ipvssync.Conn)) (stop func())
	// InstallSynced hands conns to the workers that own their flows and
	// returns how many were taken.
	InstallSynced(conns []ipvssync.Conn) int
}

// syncWatchPeriod is how often a running daemon checks its interface:
// the kernel's sync threads never notice an interface that went away,
// xlb reports it and, when it comes back as a new device, reopens its
// socket (a multicast membership and IP_MULTICAST_IF die with the old
// device).
const syncWatchPeriod = time.Second

// syncDaemons are the connection sync daemons `ipvsadm --start-daemon`
// starts: at most one master and one backup, which may run at once as in
// the kernel. Safe for concurrent use.
type syncDaemons struct {
	plane syncPlane // nil: a dataplane without sync
	peers []netip.AddrPort
	log   *slog.Logger

	mu     sync.Mutex
	master *syncMaster
	backup *syncBackup
}

// newSyncDaemons returns the daemons' manager. peers is `xlb run
// --sync-peer`: a port 0 becomes the daemon's --mcast-port.
func newSyncDaemons(plane syncPlane, peers []netip.AddrPort, log *slog.Logger) *syncDaemons {
	return &syncDaemons{plane: plane, peers: peers, log: log}
}

// handle carries out --start-daemon or --stop-daemon.
func (s *syncDaemons) handle(cmd *ipvsadm.Command) error {
	if cmd.Kind == ipvsadm.KindStopDaemon {
		role, err := ipvssync.ParseRole(cmd.Daemon.State)
		if err != nil {
			return err
		}
		return s.stop(role)
	}
	return s.start(cmd.Daemon)
}

// start starts a master or a backup. As start_sync_thread, it refuses a
// role already running (EEXIST) and an interface that does not exist
// (ENODEV); a socket it cannot open refuses the start and leaves nothing
// behind.
func (s *syncDaemons) start(d ipvsadm.Daemon) error {
	role, o, err := ipvssync.FromDaemon(d)
	if err != nil {
		return &ipvsadm.Error{Code: ipvsadm.ExitKernel, Msg: err.Error(), Err: err}
	}
	if s.plane == nil {
		return &ipvsadm.Error{Code: ipvsadm.ExitKernel, Err: ipvs.ErrNotSupported,
			Msg: "start sync daemon: the dataplane has no connection sync"}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if role == ipvssync.Master && s.master != nil || role == ipvssync.Backup && s.backup != nil {
		return ipvsadm.ErrDaemonRunning
	}
	ifi, err := net.InterfaceByName(o.Interface)
	if err != nil {
		return ipvsadm.ErrNoDevice
	}
	if len(s.peers) > 0 {
		port := o.Port
		if port == 0 {
			port = ipvssync.DefaultPort
		}
		for _, p := range s.peers {
			if p.Port() == 0 {
				p = netip.AddrPortFrom(p.Addr(), port)
			}
			o.Peers = append(o.Peers, p)
		}
	}
	w := &syncWatch{iface: o.Interface, index: ifi.Index, log: s.log.With("sync", role.String())}
	if role == ipvssync.Master {
		m, err := startSyncMaster(s.plane, o, w)
		if err != nil {
			return &ipvsadm.Error{Code: ipvsadm.ExitKernel, Msg: err.Error(), Err: err}
		}
		s.master = m
		s.log.Info("sync daemon started", "line", ipvssync.DaemonLine(role, m.options()))
		return nil
	}
	b, err := startSyncBackup(s.plane, o, w)
	if err != nil {
		return &ipvsadm.Error{Code: ipvsadm.ExitKernel, Msg: err.Error(), Err: err}
	}
	s.backup = b
	s.log.Info("sync daemon started", "line", ipvssync.DaemonLine(role, b.options()))
	return nil
}

// stop stops one role's daemon; ESRCH when it does not run.
func (s *syncDaemons) stop(role ipvssync.Role) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	switch {
	case role == ipvssync.Master && s.master != nil:
		s.master.close()
		s.master = nil
	case role == ipvssync.Backup && s.backup != nil:
		s.backup.close()
		s.backup = nil
	default:
		return ipvsadm.ErrNoDaemon
	}
	s.log.Info("sync daemon stopped", "role", role.String())
	return nil
}

// Close stops both daemons (the daemon's shutdown).
func (s *syncDaemons) Close() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.master != nil {
		s.master.close()
		s.master = nil
	}
	if s.backup != nil {
		s.backup.close()
		s.backup = nil
	}
}

// writeList prints `ipvsadm -L --daemon`: the master, then the backup,
// as the kernel dumps them (ip_vs_genl_dump_daemons) and ipvsadm 1.31's
// list_daemon prints them, with the effective options the kernel reports.
func (s *syncDaemons) writeList(w io.Writer) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.master != nil {
		fmt.Fprintln(w, ipvssync.DaemonLine(ipvssync.Master, s.master.options()))
	}
	if s.backup != nil {
		fmt.Fprintln(w, ipvssync.DaemonLine(ipvssync.Backup, s.backup.options()))
	}
}

// syncStats are the running daemons' figures.
type syncStats struct {
	Master, Backup bool
	Sender         ipvssync.SenderStats
	Exported       uint64 // connections the dataplane handed to the master
	Receiver       ipvssync.ReceiverStats
	Queued         uint64 // received records the dataplane queued for its workers
	Refused        uint64 // received records it did not (its sync_* counters say why)
	Reopens        uint64 // sockets reopened after the interface came back
	IfaceDown      bool   // a daemon's interface is missing now
}

func (s *syncDaemons) stats() syncStats {
	s.mu.Lock()
	defer s.mu.Unlock()
	var st syncStats
	if m := s.master; m != nil {
		st.Master = true
		st.Sender = m.senderStats()
		st.Exported = m.exported.Load()
		st.Reopens += m.watch.reopens.Load()
		st.IfaceDown = st.IfaceDown || m.watch.down.Load()
	}
	if b := s.backup; b != nil {
		st.Backup = true
		st.Receiver = b.receiverStats()
		st.Queued, st.Refused = b.queued.Load(), b.refused.Load()
		st.Reopens += b.watch.reopens.Load()
		st.IfaceDown = st.IfaceDown || b.watch.down.Load()
	}
	return st
}

// writeStats adds the sync section to --xlb-stats, when a daemon runs.
func (s *syncDaemons) writeStats(w io.Writer) {
	st := s.stats()
	if !st.Master && !st.Backup {
		return
	}
	fmt.Fprintln(w, "sync:")
	if st.Master {
		ss := st.Sender
		fmt.Fprintf(w, "  master  exported %d  records %d  messages %d  bytes %d  send_errors %d  bad_records %d\n",
			st.Exported, ss.Records, ss.Messages, ss.Bytes, ss.SendErrors, ss.BadRecords)
	}
	if st.Backup {
		rs := st.Receiver
		fmt.Fprintf(w, "  backup  messages %d  v0_messages %d  records %d  queued %d  refused %d  bytes %d  other_syncid %d  read_errors %d\n",
			rs.Messages, rs.V0Messages, rs.Records, st.Queued, st.Refused, rs.Bytes, rs.OtherSyncID, rs.ReadErrors)
		var drops []string
		for r := range ipvssync.NumReasons {
			if n := rs.Dropped[r]; n > 0 {
				drops = append(drops, fmt.Sprintf("dropped_%v %d", ipvssync.Reason(r), n))
			}
			if n := rs.Skipped[r]; n > 0 {
				drops = append(drops, fmt.Sprintf("skipped_%v %d", ipvssync.Reason(r), n))
			}
		}
		if len(drops) > 0 {
			fmt.Fprintf(w, "  backup  %s\n", strings.Join(drops, "  "))
		}
	}
	if st.Reopens > 0 || st.IfaceDown {
		fmt.Fprintf(w, "  interface_down %t  reopens %d\n", st.IfaceDown, st.Reopens)
	}
}

// syncWatch follows a daemon's interface: it logs when the interface
// goes and comes back, and says when the socket must be reopened.
type syncWatch struct {
	iface   string
	index   int
	log     *slog.Logger
	down    atomic.Bool
	reopens atomic.Uint64
	failing atomic.Bool // the last send or reopen failed (logged once)
}

// check reports whether the interface is back as a new device (the
// caller reopens its socket).
func (w *syncWatch) check() (reopen bool) {
	ifi, err := net.InterfaceByName(w.iface)
	if err != nil {
		if !w.down.Swap(true) {
			w.log.Error("sync interface is gone: no connections are synced until it comes back", "interface", w.iface, "err", err)
		}
		return false
	}
	if w.down.Swap(false) {
		w.log.Info("sync interface is back", "interface", w.iface)
	}
	return ifi.Index != w.index
}

// fault logs the first error of a run of them and the recovery after.
func (w *syncWatch) fault(err error) {
	if err != nil {
		if !w.failing.Swap(true) {
			w.log.Error("sync socket error (counted; further ones not logged until it recovers)", "err", err)
		}
		return
	}
	if w.failing.Swap(false) {
		w.log.Info("sync socket recovered")
	}
}

// reopened records a socket reopened for the new device.
func (w *syncWatch) reopened(index int) {
	w.index = index
	w.reopens.Add(1)
	w.log.Info("sync socket reopened on the new device", "interface", w.iface, "index", index)
}

// syncMaster is a running master: the dataplane's export feeds a Sender.
type syncMaster struct {
	plane syncPlane
	watch *syncWatch

	mu       sync.Mutex // the Sender is not safe for concurrent use
	s        *ipvssync.Sender
	old      ipvssync.SenderStats // counters of Senders replaced by a reopen
	exported atomic.Uint64
	stop     func()
	done     chan struct{}
	wg       sync.WaitGroup
}

func startSyncMaster(plane syncPlane, o ipvssync.Options, w *syncWatch) (*syncMaster, error) {
	s, err := ipvssync.NewSender(o)
	if err != nil {
		return nil, fmt.Errorf("start sync master: %w", err)
	}
	m := &syncMaster{plane: plane, watch: w, s: s, done: make(chan struct{})}
	m.stop = plane.StartSyncExport(m.sink)
	m.wg.Add(1)
	go m.run(o)
	return m, nil
}

// sink is the export's callback: one batch becomes as few messages as
// it fills, the last one sent at once (a batch edge is the flush point:
// the kernel master sends a partial buffer within 2 s, xlb sooner).
func (m *syncMaster) sink(conns []ipvssync.Conn) {
	if len(conns) == 0 {
		// The export's once-a-second call without records: nothing is
		// queued (every call flushes), and a send that did not happen
		// says nothing about a fault.
		return
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	m.exported.Add(uint64(len(conns)))
	var err error
	for i := range conns {
		if e := m.s.Add(&conns[i]); e != nil && err == nil {
			err = e
		}
	}
	if e := m.s.Flush(); e != nil && err == nil {
		err = e
	}
	m.watch.fault(err)
}

// run watches the interface until close.
func (m *syncMaster) run(o ipvssync.Options) {
	defer m.wg.Done()
	t := time.NewTicker(syncWatchPeriod)
	defer t.Stop()
	for {
		select {
		case <-m.done:
			return
		case <-t.C:
		}
		if !m.watch.check() {
			continue
		}
		ns, err := ipvssync.NewSender(o)
		if err != nil {
			m.watch.fault(fmt.Errorf("reopen sync master: %w", err))
			continue
		}
		ifi, _ := net.InterfaceByName(o.Interface)
		m.mu.Lock()
		old := m.s
		st := old.Stats()
		m.old = addSender(m.old, st)
		m.s = ns
		m.mu.Unlock()
		old.Close()
		if ifi != nil {
			m.watch.reopened(ifi.Index)
		}
	}
}

func addSender(a, b ipvssync.SenderStats) ipvssync.SenderStats {
	return ipvssync.SenderStats{Records: a.Records + b.Records, Messages: a.Messages + b.Messages,
		Bytes: a.Bytes + b.Bytes, SendErrors: a.SendErrors + b.SendErrors, BadRecords: a.BadRecords + b.BadRecords}
}

func (m *syncMaster) senderStats() ipvssync.SenderStats {
	m.mu.Lock()
	defer m.mu.Unlock()
	return addSender(m.old, m.s.Stats())
}

func (m *syncMaster) options() ipvssync.Options {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.s.Options()
}

// close stops the export first, so that no batch is lost half sent,
// then sends what is queued.
func (m *syncMaster) close() {
	m.stop()
	close(m.done)
	m.wg.Wait()
	m.mu.Lock()
	defer m.mu.Unlock()
	m.watch.fault(m.s.Flush())
	m.s.Close()
}

// syncBackup is a running backup: a Receiver whose records the dataplane
// installs.
type syncBackup struct {
	plane syncPlane
	watch *syncWatch
	o     ipvssync.Options

	mu      sync.Mutex
	r       *ipvssync.Receiver
	old     ipvssync.ReceiverStats
	queued  atomic.Uint64
	refused atomic.Uint64
	done    chan struct{}
	watcher sync.WaitGroup // run
	wg      sync.WaitGroup // the Serve goroutines
}

func startSyncBackup(plane syncPlane, o ipvssync.Options, w *syncWatch) (*syncBackup, error) {
	r, err := ipvssync.NewReceiver(o)
	if err != nil {
		return nil, fmt.Errorf("start sync backup: %w", err)
	}
	b := &syncBackup{plane: plane, watch: w, o: o, r: r, done: make(chan struct{})}
	b.serve(r)
	b.watcher.Add(1)
	go b.run()
	return b, nil
}

// serve runs r on its own goroutine until r is closed.
func (b *syncBackup) serve(r *ipvssync.Receiver) {
	b.wg.Add(1)
	go func() {
		defer b.wg.Done()
		if err := r.Serve(b.install); err != nil {
			b.watch.fault(err)
		}
	}()
}

func (b *syncBackup) install(conns []ipvssync.Conn) {
	n := b.plane.InstallSynced(conns)
	b.queued.Add(uint64(n))
	b.refused.Add(uint64(len(conns) - n))
}

// run watches the interface until close, reopening the Receiver when
// the interface is back as a new device (its group membership is gone).
func (b *syncBackup) run() {
	defer b.watcher.Done()
	t := time.NewTicker(syncWatchPeriod)
	defer t.Stop()
	for {
		select {
		case <-b.done:
			return
		case <-t.C:
		}
		if !b.watch.check() {
			continue
		}
		nr, err := ipvssync.NewReceiver(b.o)
		if err != nil {
			b.watch.fault(fmt.Errorf("reopen sync backup: %w", err))
			continue
		}
		b.watch.fault(nil)
		ifi, _ := net.InterfaceByName(b.o.Interface)
		b.mu.Lock()
		old := b.r
		b.old = addReceiver(b.old, old.Stats())
		b.r = nr
		b.mu.Unlock()
		old.Close()
		b.serve(nr)
		if ifi != nil {
			b.watch.reopened(ifi.Index)
		}
	}
}

func addReceiver(a, b ipvssync.ReceiverStats) ipvssync.ReceiverStats {
	a.Messages += b.Messages
	a.V0Messages += b.V0Messages
	a.Records += b.Records
	a.Bytes += b.Bytes
	a.OtherSyncID += b.OtherSyncID
	a.ReadErrors += b.ReadErrors
	for i := range a.Dropped {
		a.Dropped[i] += b.Dropped[i]
		a.Skipped[i] += b.Skipped[i]
	}
	return a
}

func (b *syncBackup) receiverStats() ipvssync.ReceiverStats {
	b.mu.Lock()
	defer b.mu.Unlock()
	return addReceiver(b.old, b.r.Stats())
}

func (b *syncBackup) options() ipvssync.Options {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.r.Options()
}

func (b *syncBackup) close() {
	close(b.done)
	b.watcher.Wait()
	b.mu.Lock()
	b.r.Close()
	b.mu.Unlock()
	b.wg.Wait()
}

// syncFlag is `xlb run --sync-peer ADDR[:PORT]`, repeatable.
type syncFlag []netip.AddrPort

func (f *syncFlag) String() string {
	s := make([]string, len(*f))
	for i, p := range *f {
		s[i] = p.String()
	}
	return strings.Join(s, ",")
}

func (f *syncFlag) Set(v string) error {
	p, err := netip.ParseAddrPort(v)
	if err != nil {
		a, aerr := netip.ParseAddr(v)
		if aerr != nil {
			return fmt.Errorf("parse sync peer %q: want ADDR or ADDR:PORT ([ADDR]:PORT for IPv6)", v)
		}
		p = netip.AddrPortFrom(a, 0)
	}
	if a := p.Addr(); a.IsUnspecified() || a.IsMulticast() {
		return fmt.Errorf("invalid sync peer %v: must be a unicast address", p)
	}
	if len(*f) > 0 && (*f)[0].Addr().Unmap().Is4() != p.Addr().Unmap().Is4() {
		return fmt.Errorf("invalid sync peer %v: all peers must be of one family", p)
	}
	*f = append(*f, p)
	return nil
}

// syncCollector exports the sync daemons' figures as Prometheus metrics.
type syncCollector struct {
	s     *syncDaemons
	descs map[string]*prometheus.Desc
}

var syncMetrics = []struct{ name, help string }{
	{"xlb_sync_master_exported_total", "Connections the dataplane handed to the sync master."},
	{"xlb_sync_master_records_total", "Records the sync master queued into messages."},
	{"xlb_sync_master_messages_total", "Sync messages sent (one per peer per message)."},
	{"xlb_sync_master_send_errors_total", "Sync messages the socket refused."},
	{"xlb_sync_backup_messages_total", "Sync messages the backup decoded."},
	{"xlb_sync_backup_records_total", "Records the backup received."},
	{"xlb_sync_backup_queued_total", "Received records the dataplane queued for its workers (xlb_sync_installed_total: entries they created)."},
	{"xlb_sync_backup_refused_total", "Received records the dataplane did not queue (xlb_sync_install_drops_total: why)."},
	{"xlb_sync_backup_dropped_total", "Sync messages (or their rest) the backup dropped, by reason."},
	{"xlb_sync_interface_down", "1 while a sync daemon's interface is missing."},
}

func newSyncCollector(s *syncDaemons) *syncCollector {
	c := &syncCollector{s: s, descs: map[string]*prometheus.Desc{}}
	for _, m := range syncMetrics {
		var labels []string
		if strings.HasSuffix(m.name, "_dropped_total") {
			labels = []string{"reason"}
		}
		c.descs[m.name] = prometheus.NewDesc(m.name, m.help, labels, nil)
	}
	return c
}

func (c *syncCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range c.descs {
		ch <- d
	}
}

func (c *syncCollector) Collect(ch chan<- prometheus.Metric) {
	st := c.s.stats()
	counter := func(name string, v uint64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(c.descs[name], prometheus.CounterValue, float64(v), labels...)
	}
	if st.Master {
		counter("xlb_sync_master_exported_total", st.Exported)
		counter("xlb_sync_master_records_total", st.Sender.Records)
		counter("xlb_sync_master_messages_total", st.Sender.Messages)
		counter("xlb_sync_master_send_errors_total", st.Sender.SendErrors)
	}
	if st.Backup {
		counter("xlb_sync_backup_messages_total", st.Receiver.Messages)
		counter("xlb_sync_backup_records_total", st.Receiver.Records)
		counter("xlb_sync_backup_queued_total", st.Queued)
		counter("xlb_sync_backup_refused_total", st.Refused)
		for r := range ipvssync.NumReasons {
			if n := st.Receiver.Dropped[r]; n > 0 {
				counter("xlb_sync_backup_dropped_total", n, ipvssync.Reason(r).String())
			}
		}
	}
	down := 0.0
	if st.IfaceDown {
		down = 1
	}
	ch <- prometheus.MustNewConstMetric(c.descs["xlb_sync_interface_down"], prometheus.GaugeValue, down)
}
