package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"sync"
	"syscall"
	"time"

	"github.com/xlbproject/xlb/dataplane"
	"github.com/xlbproject/xlb/internal/ipvs"
	"github.com/xlbproject/xlb/internal/ipvsadm"
)

// daemon runs `xlb run`.
func daemon(args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("xlb run", flag.ContinueOnError)
	fs.SetOutput(stderr)
	iface := fs.String("iface", "", "network interface to balance on (required)")
	rules := fs.String("rules", "", "rules file in ipvsadm save format (- for stdin)")
	queues := fs.Int("queues", 0, "RX queues to serve from queue 0 (0: all)")
	conns := fs.Int("conns", 1<<20, "connection entries per queue")
	sock := fs.String("socket", defaultSocket, "control socket for ipvsadm commands")
	synRate := fs.Int("syn-rate", 0, "TCP SYNs per second each source /24 (IPv6 /64) may send to services on an overloaded queue (0: 100)")
	synBurst := fs.Int("syn-burst", 0, "burst of --syn-rate (0: 20)")
	synAuto := fs.Int("syn-auto", 0, "SYNs per second on one queue that make XDP apply --syn-rate at once (0: 100000, -1: never)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *iface == "" {
		return errors.New("run: --iface is required")
	}
	cfg := &ipvs.Config{Timeouts: ipvs.DefaultTimeouts}
	if *rules != "" {
		var err error
		if cfg, err = loadRules(*rules); err != nil {
			return err
		}
	}

	log := slog.New(slog.NewTextHandler(stderr, nil))
	opts := dataplane.DefaultOptions(*iface)
	opts.Queues = *queues
	opts.ConnCapacity = *conns
	opts.SYNRate, opts.SYNBurst, opts.SYNAuto = *synRate, *synBurst, *synAuto
	opts.Logger = log
	dp, err := dataplane.New(opts)
	if err != nil {
		return err
	}
	defer dp.Close()
	if err := dp.Apply(cfg); err != nil {
		return fmt.Errorf("apply rules: %w", err)
	}
	if n := dp.WaitResolved(2 * time.Second); n > 0 {
		log.Warn("real servers without a resolved MAC: their frames are dropped until the kernel resolves them", "count", n)
	}
	srv := &server{dp: dp, cfg: cfg}
	ln, err := listenControl(*sock)
	if err != nil {
		return err
	}
	defer ln.Close()

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		srv.serve(ctx, ln)
	}()
	log.Info("xlb running", "interface", *iface, "services", len(cfg.Services), "socket", *sock)
	err = dp.Run(ctx)
	ln.Close()
	wg.Wait()
	writeStats(stdout, dp)
	if cerr := dp.Close(); cerr != nil {
		err = errors.Join(err, cerr)
	}
	log.Info("xlb stopped: xdp detached")
	return err
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

// writeStats prints the dataplane's counters, as the daemon does when it
// stops and `xlb --xlb-stats` does on demand.
func writeStats(w io.Writer, dp *dataplane.Dataplane) {
	st := dp.Stats()
	fmt.Fprintf(w, "xdp (%s):\n", dp.AttachMode())
	for r, n := range st.XDP.All() {
		if n != 0 {
			fmt.Fprintf(w, "  %-22s %d\n", r, n)
		}
	}
	fmt.Fprintln(w, "workers:")
	for c, n := range st.All() {
		if n != 0 {
			fmt.Fprintf(w, "  %-22s %d\n", c, n)
		}
	}
	k := st.Sockets
	fmt.Fprintf(w, "af_xdp sockets:\n  rx_dropped %d, rx_ring_full %d, fill_ring_empty %d, rx_invalid %d, tx_invalid %d\n",
		k.Rx_dropped, k.Rx_ring_full, k.Rx_fill_ring_empty_descs, k.Rx_invalid_descs, k.Tx_invalid_descs)
}
