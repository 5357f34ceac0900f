package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/xlbproject/xlb/bgp"
	"github.com/xlbproject/xlb/bpf"
	"github.com/xlbproject/xlb/conntrack"
	"github.com/xlbproject/xlb/dataplane"
	"github.com/xlbproject/xlb/director"
	"github.com/xlbproject/xlb/health"
	"github.com/xlbproject/xlb/internal/ipvs"
	"github.com/xlbproject/xlb/internal/ipvsadm"
	"github.com/xlbproject/xlb/keepalived"
	"github.com/xlbproject/xlb/metrics"
)

// fatalSignals stop the daemon the way SIGTERM does: XDP detached,
// counters printed, control socket removed. SIGQUIT and SIGABRT would
// otherwise make Go exit with a goroutine dump and leave the socket file.
// SIGKILL cannot be caught: the kernel then closes the bpf_link and the
// AF_XDP sockets with the process, an abstract control socket vanishes
// with it, and a path one is stale and replaced by the next start.
var fatalSignals = []os.Signal{syscall.SIGINT, syscall.SIGTERM, syscall.SIGQUIT, syscall.SIGABRT}

// daemon runs `xlb run`. Every precondition (flags, rules, memory,
// control socket, interface) is checked before the XDP program is
// attached, so a refused start changes nothing.
func daemon(args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("xlb run", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var ifaces ifaceList
	fs.Var(&ifaces, "iface", "network interface to balance on (required); repeatable, for a two-armed director: a frame leaves by the interface the route to its next hop names")
	rules := fs.String("rules", "", "rules file in ipvsadm save format (- for stdin); SIGHUP reloads it")
	kaFile := fs.String("keepalived", "", "keepalived.conf to take the virtual servers and health checks from (not with --rules); SIGHUP reloads the difference")
	save := fs.Bool("save", false, "write the rules back to --rules FILE on every change (ipvsadm -S -n form, atomically; comments are not kept), so a restart comes back the same")
	expireNodest := fs.Bool("expire-nodest-conn", false, "set net.ipv4.vs.expire_nodest_conn: a packet of a connection to a removed real server expires it (xlb sysctl changes it at run time)")
	sloppyTCP := fs.Bool("sloppy-tcp", false, "set net.ipv4.vs.sloppy_tcp: any TCP segment, not only a SYN, may start a connection, so a director takes over flows an ECMP rehash or a failover hands it mid-stream (xlb sysctl changes it at run time)")
	queues := fs.Int("queues", 0, "RX queues to serve from queue 0 (0: all)")
	conns := fs.Int("conns", 1<<20, "connection entries per queue (checked against available memory)")
	defSock := defaultSocket
	if env := os.Getenv("XLB_SOCKET"); env != "" {
		defSock = env
	}
	sock := fs.String("socket", defSock, "control socket: a path, or @name for an abstract socket of this network namespace (default $XLB_SOCKET, else @xlb; clients use the same)")
	group := fs.String("socket-group", "", "group whose members may use the control socket besides root (path socket mode 0660)")
	fs.Usage = func() {
		fmt.Fprintf(stderr, "usage: xlb run --iface IF [--iface IF2...] [options]\n\nSignals: SIGHUP reloads --rules or --keepalived; SIGINT, SIGTERM and SIGQUIT stop xlb cleanly.\n\n")
		fs.PrintDefaults()
	}
	var vlans vlanList
	fs.Var(&vlans, "vlan", "802.1Q VLAN ID whose tagged frames are balanced, repeatable (default: untagged frames only)")
	maxServices := fs.Int("max-services", 0, "size of the XDP service map (0: 16384)")
	synRate := fs.Int("syn-rate", 0, "TCP SYNs per second each source /24 (IPv6 /64) may send to services on an overloaded queue (0: 100)")
	synBurst := fs.Int("syn-burst", 0, "burst of --syn-rate (0: 20)")
	synAuto := fs.Int("syn-auto", 0, "SYNs per second on one queue that make XDP apply --syn-rate at once (0: 100000, -1: never)")
	metricsAddr := fs.String("metrics", "", "serve Prometheus metrics at http://ADDR/metrics (host:port; default: off)")
	noShare := fs.Bool("no-shared-umem", false, "with several --iface: a UMEM per interface, copying frames that change interface (the fallback when the kernel refuses XDP_SHARED_UMEM)")
	busyPoll := fs.Int("busy-poll", 0, "busy polling: SO_BUSY_POLL µs on the AF_XDP sockets, with SO_PREFER_BUSY_POLL and the interfaces' napi_defer_hard_irqs and gro_flush_timeout set (restored at exit); 0: off")
	busyBudget := fs.Int("busy-poll-budget", 0, "frames one busy poll may take (SO_BUSY_POLL_BUDGET; 0: 64)")
	spin := fs.Duration("spin", dataplane.DefaultSpin, "longest a worker polls for the next frame before it sleeps, and only while frames come closer together than that; 0: sleep at once")
	txBudget := fs.Int("tx-budget", dataplane.DefaultSocketOptions().TxBudget, "frames one sendto(2) may send in copy mode (XDP_MAX_TX_SKB_BUDGET, Linux 6.17+); 0: the kernel's 32")
	noWakeup := fs.Bool("no-need-wakeup", false, "bind the AF_XDP sockets without XDP_USE_NEED_WAKEUP: a syscall per TX batch whether the kernel needs it or not")
	var syncPeers syncFlag
	fs.Var(&syncPeers, "sync-peer", "connection sync by unicast to/from this peer director (ADDR or ADDR:PORT, port default the daemon's --mcast-port), repeatable: `ipvsadm --start-daemon master` sends every sync message to each peer instead of the multicast group, a backup takes messages only from the peers' addresses")
	offload := fs.String("offload", "off", "flow offload: on, established connections (DR, NAT, TUN with ipip, FULLNAT) and forwarded UDP flows are rewritten and sent by the XDP program itself (XDP_TX/bpf_redirect; on a veth in native mode the peer needs an XDP program); off, every frame goes through a worker")
	xdpMode := fs.String("xdp-mode", "auto", "how the XDP program attaches: native (in the driver), generic (on the skb, any interface), or auto (native where the driver has it); on veth, generic takes the kernel's backlog instead of veth's 256-frame XDP rings and the offload's XDP_TX/bpf_redirect needs nothing on the peer, but it cannot see VLAN tags held outside the frame and takes every frame on queue 0")
	maxFlows := fs.Int("max-flows", 0, "flows offloaded at once over all queues, with --offload=on (0: 65536)")
	bgpFlags := bgp.RegisterFlags(fs)
	if err := fs.Parse(args); err != nil {
		return err
	}
	bgpCfg, err := bgpFlags.Config(openFile)
	if err != nil {
		return err
	}
	if len(ifaces) == 0 {
		return errors.New("run: --iface is required")
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("run: unexpected argument %q", fs.Arg(0))
	}
	if *conns <= 0 {
		return fmt.Errorf("--conns %d: must be positive (connection entries per queue)", *conns)
	}
	if *conns > conntrack.MaxCapacity {
		return fmt.Errorf("--conns %d: must be at most %d", *conns, conntrack.MaxCapacity)
	}
	if *kaFile != "" && *rules != "" {
		// Two owners of the operator configuration would undo each
		// other's changes at every SIGHUP.
		return errors.New("run: --keepalived and --rules are exclusive: keepalived.conf holds the services")
	}
	if *save && (*rules == "" || *rules == "-") {
		return errors.New("run: --save needs --rules FILE")
	}
	gid, err := lookupGroup(*group)
	if err != nil {
		return err
	}
	cfg := &ipvs.Config{Timeouts: ipvs.DefaultTimeouts}
	if *rules != "" {
		if cfg, err = loadRules(*rules); err != nil {
			return err
		}
	}
	var ka *keepalived.Result
	if *kaFile != "" {
		if ka, err = keepalived.Load(*kaFile); err != nil {
			return err
		}
		cfg = ka.IPVS
	}
	// Catch the signals from now on: a SIGHUP or SIGQUIT during start-up
	// must not kill xlb with XDP half set up.
	sigs := make(chan os.Signal, 4)
	signal.Notify(sigs, append([]os.Signal{syscall.SIGHUP, syscall.SIGPIPE}, fatalSignals...)...)
	defer signal.Stop(sigs)

	ln, err := listenControl(*sock, gid)
	if err != nil {
		return err
	}
	defer ln.Close()
	var mln net.Listener
	if *metricsAddr != "" {
		if mln, err = listenMetrics(*metricsAddr); err != nil {
			return err
		}
		defer mln.Close()
	}

	log := slog.New(slog.NewTextHandler(stderr, nil))
	opts := dataplane.DefaultOptions(ifaces[0])
	opts.Interfaces = ifaces[1:]
	opts.Queues = *queues
	opts.Socket.NoSharedUMEM = *noShare
	opts.Socket.BusyPoll, opts.Socket.BusyPollBudget = *busyPoll, *busyBudget
	opts.Socket.TxBudget, opts.Socket.NeedWakeup = *txBudget, !*noWakeup
	if *spin < 0 {
		return fmt.Errorf("--spin %v: must not be negative", *spin)
	}
	opts.Spin = *spin
	switch *offload {
	case "on":
		opts.Offload = true
	case "off":
	default:
		return fmt.Errorf("--offload %q: must be on or off", *offload)
	}
	if opts.XDPMode, err = bpf.ParseAttachMode(*xdpMode); err != nil {
		return fmt.Errorf("--xdp-mode %q: must be auto, native or generic", *xdpMode)
	}
	if *maxFlows < 0 || *maxFlows > 1<<24 {
		return fmt.Errorf("--max-flows %d: must be 0-%d", *maxFlows, 1<<24)
	}
	opts.MaxFlows = *maxFlows
	opts.ConnCapacity = *conns
	opts.VLANs, opts.MaxServices = vlans, *maxServices
	opts.SYNRate, opts.SYNBurst, opts.SYNAuto = *synRate, *synBurst, *synAuto
	opts.Logger = log
	dp, err := dataplane.New(opts)
	var merr *dataplane.MemoryError
	if errors.As(err, &merr) {
		q := "queues"
		if merr.Queues == 1 {
			q = "queue"
		}
		return fmt.Errorf("--conns %d: needs %s for %d %s, %s available (%s)", *conns,
			dataplane.FormatBytes(merr.Need), merr.Queues, q, dataplane.FormatBytes(merr.Avail), merr.Source)
	}
	if err != nil {
		return err
	}
	defer dp.Close()
	dopts := director.DefaultOptions()
	dopts.Logger = log
	dopts.Sysctls.ExpireNodestConn = *expireNodest
	dopts.Sysctls.SloppyTCP = *sloppyTCP
	if *save {
		dopts.RulesFile = *rules
	}
	dir, err := director.New(dp, cfg, dopts)
	if err != nil {
		return fmt.Errorf("apply rules: %w", err)
	}
	if n := dp.WaitResolved(2 * time.Second); n > 0 {
		log.Warn("real servers without a resolved MAC: their frames are held, then dropped, until they resolve (see xlb --xlb-stats)", "count", n)
	}
	syn := newSyncDaemons(dp, syncPeers, log)
	defer syn.Close()
	if ka != nil && ka.SyncDaemon != nil {
		// keepalived starts lvs_sync_daemon as a backup (xlb runs no
		// VRRP to make it a master). A refusal (no such interface) is
		// reported, and the director serves anyway, as keepalived's.
		// SIGHUP does not restart it: --stop-daemon/--start-daemon do.
		if err := syn.start(*ka.SyncDaemon); err != nil {
			log.Error("lvs_sync_daemon not started", "interface", ka.SyncDaemon.McastInterface, "err", err)
		}
	}
	srv := &server{dp: dp, dir: dir, gid: gid, log: log, syn: syn}
	var hc *health.Engine
	if ka != nil {
		logWarnings(log, ka.Warnings)
		hopts := health.DefaultOptions()
		hopts.Logger = log
		if hc, err = health.New(ka.Health, dir, hopts); err != nil {
			return err
		}
		srv.hc = hc
	}
	ann, err := startAnnouncer(bgpCfg, dir.Applied, log)
	if err != nil {
		return err
	}
	defer ann.Close()
	srv.ann = ann

	ctx, stop := context.WithCancel(context.Background())
	defer stop()
	var wg sync.WaitGroup
	if hc != nil {
		wg.Add(1)
		go func() {
			defer wg.Done()
			hc.Run(ctx)
		}()
	}
	wg.Add(2)
	go func() {
		defer wg.Done()
		srv.serve(ctx, ln)
	}()
	go func() {
		defer wg.Done()
		for {
			select {
			case <-ctx.Done():
				return
			case sig := <-sigs:
				switch sig {
				case syscall.SIGHUP:
					if hc != nil {
						reloadKeepalived(srv, *kaFile, hc, log)
					} else {
						reloadRules(srv, *rules, log)
					}
				case syscall.SIGPIPE:
					// A closed stdout or stderr: keep balancing.
				default:
					log.Info("stopping", "signal", sig.String())
					ann.Close() // withdraw while still forwarding
					stop()
					return
				}
			}
		}
	}()
	if mln != nil {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var extra []prometheus.Collector
			if hc != nil {
				extra = append(extra, metrics.NewHealthCollector(hc))
			}
			extra = append(extra, newSyncCollector(syn))
			serveMetrics(ctx, mln, dp, log, extra...)
		}()
	}
	log.Info("xlb running", "interface", strings.Join(ifaces, ","), "services", len(cfg.Services), "socket", *sock)
	err = dp.Run(ctx)
	ann.Close()
	stop()
	ln.Close()
	wg.Wait()
	syn.Close() // the last records go out before the dataplane closes
	writeStats(stdout, dp)
	if cerr := dp.Close(); cerr != nil {
		err = errors.Join(err, cerr)
	}
	log.Info("xlb stopped: xdp detached")
	return err
}

// reloadRules is SIGHUP: the rules file replaces the configuration
// through the same validated, all-or-nothing path as -R; a bad file is
// logged and changes nothing.
func reloadRules(srv *server, path string, log *slog.Logger) {
	if path == "" || path == "-" {
		log.Warn("SIGHUP: no rules file to reload (start with --rules FILE)")
		return
	}
	if err := srv.reload(path); err != nil {
		log.Error("SIGHUP: rules not reloaded, configuration unchanged", "err", err)
		return
	}
	log.Info("SIGHUP: rules reloaded", "file", path, "services", len(srv.dir.Config().Services))
}

// loadRules reads a whole rules file; a bad line fails it all.
func loadRules(path string) (*ipvs.Config, error) {
	var r io.Reader = os.Stdin
	if path != "-" {
		f, err := os.Open(path)
		if err != nil {
			return nil, fmt.Errorf("read rules: %w", err)
		}
		defer f.Close()
		r = f
	}
	cfg, err := ipvsadm.ParseRules(r)
	if err != nil {
		return nil, fmt.Errorf("rules %s: %w", path, err)
	}
	return cfg, nil
}
