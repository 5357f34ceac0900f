package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"sync"
	"time"

	"github.com/xlbproject/xlb/bgp"
	"github.com/xlbproject/xlb/internal/ipvs"
	"github.com/xlbproject/xlb/internal/ipvsadm"
)

// bgpPoll is how often the announcer looks for a newly applied
// configuration. The director publishes immutable snapshots, so a new
// pointer is a change; 200 ms is well under the router's own convergence
// (~100-400 ms measured with FRR) and costs nothing between changes.
const bgpPoll = 200 * time.Millisecond

// announcer keeps the BGP announcements equal to bgp.Prefixes(applied
// configuration, draining) while xlb runs.
type announcer struct {
	sp      *bgp.Speaker
	rec     *bgp.Reconciler
	applied func() *ipvs.Config
	log     *slog.Logger
	delay   time.Duration // Config.ShutdownDelay

	once sync.Once
	stop chan struct{}
	done chan struct{}
}

func openFile(name string) (io.ReadCloser, error) { return os.Open(name) }

// startAnnouncer starts the speaker and announces what applied returns;
// a nil cfg (no --bgp flags) gives a nil announcer, whose methods do
// nothing.
func startAnnouncer(cfg *bgp.Config, applied func() *ipvs.Config, log *slog.Logger) (*announcer, error) {
	if cfg == nil {
		return nil, nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	sp, err := bgp.Start(ctx, *cfg, log)
	if err != nil {
		return nil, err
	}
	a := &announcer{sp: sp, rec: bgp.NewReconciler(sp), applied: applied, log: log, delay: cfg.ShutdownDelay,
		stop: make(chan struct{}), done: make(chan struct{})}
	go a.run()
	log.Info("bgp speaker started", "as", cfg.AS, "router-id", cfg.RouterID.String(), "peers", len(cfg.Peers))
	return a, nil
}

func (a *announcer) run() {
	defer close(a.done)
	var last *ipvs.Config
	t := time.NewTicker(bgpPoll)
	defer t.Stop()
	for {
		if cfg := a.applied(); cfg != last {
			last = cfg
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			if err := a.rec.Apply(ctx, cfg); err != nil {
				// Retried on the next change; the failed ones stay in
				// the reconciler's books.
				a.log.Error("bgp announce", "err", err)
			}
			cancel()
			a.log.Info("bgp announcing", "prefixes", len(a.rec.Announced()))
		}
		select {
		case <-a.stop:
			return
		case <-t.C:
		}
	}
}

// Close withdraws every VIP and stops the speaker. The daemon calls it on
// a stop signal before the dataplane stops and XDP is detached, so the
// router moves the flows to the other directors while this one still
// forwards. Idempotent; nil-safe.
func (a *announcer) Close() {
	if a == nil {
		return
	}
	a.once.Do(func() {
		close(a.stop)
		<-a.done
		if err := a.sp.Close(); err != nil {
			a.log.Error("bgp withdraw", "err", err)
		}
		a.log.Info("bgp withdrawn and stopped")
		if a.delay > 0 {
			// Keep forwarding while the routers move the flows away.
			time.Sleep(a.delay)
		}
	})
}

// SetDraining withdraws every VIP (true) or announces them again from the
// applied configuration (false): what `xlb drain` and `xlb undrain` call.
// Nil-safe.
func (a *announcer) SetDraining(draining bool) error {
	if a == nil {
		return nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	return a.rec.SetDraining(ctx, draining)
}

// drain is `xlb drain` and `xlb undrain`: withdraw every VIP from the
// routers, so that new flows go to the other directors while this one
// keeps forwarding the flows it has, and announce them again. The state
// lasts until undrain or the daemon's exit.
func (s *server) drain(args []string) response {
	if len(args) != 1 {
		return response{Stderr: fmt.Sprintf("%s: unexpected argument %q\n", args[0], args[1]), Code: ipvsadm.ExitRuntime}
	}
	if s.ann == nil {
		return response{Stderr: args[0] + ": no BGP speaker (xlb run --bgp or --bgp-*): nothing to withdraw\n", Code: ipvsadm.ExitRuntime}
	}
	if err := s.ann.SetDraining(args[0] == "drain"); err != nil {
		return errorResponse(fmt.Errorf("%s: %w", args[0], err))
	}
	s.log.Info("bgp "+args[0], "announced", len(s.ann.rec.Announced()))
	return response{}
}
