package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/xlbproject/xlb/metrics"
)

// listenMetrics opens --metrics' listener before XDP is attached, so a
// bad or busy address refuses the start and changes nothing.
func listenMetrics(addr string) (net.Listener, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("--metrics %s: %w", addr, err)
	}
	return ln, nil
}

// serveMetrics serves Prometheus' /metrics on ln until ctx is done.
// extra are more collectors (the health engine's).
func serveMetrics(ctx context.Context, ln net.Listener, src metrics.Source, log *slog.Logger, extra ...prometheus.Collector) {
	h, err := metrics.Handler(src, log, extra...)
	if err != nil {
		log.Error("metrics not served", "err", err)
		ln.Close()
		return
	}
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second, WriteTimeout: time.Minute,
		ErrorLog: slog.NewLogLogger(log.Handler(), slog.LevelWarn)}
	done := make(chan struct{})
	defer close(done)
	go func() {
		select {
		case <-ctx.Done():
			srv.Close()
		case <-done:
		}
	}()
	log.Info("serving metrics", "address", ln.Addr().String(), "path", "/metrics")
	if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
		log.Error("metrics server stopped", "err", err)
	}
}
