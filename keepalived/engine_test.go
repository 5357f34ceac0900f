package keepalived

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"sync"
	"testing"
	"time"

	"github.com/xlbproject/xlb/health"
)

// TestImportedChecksRun imports a keepalived.conf whose checkers point at
// loopback servers and runs them: the refusing server is taken out, the
// answering one stays in.
func TestImportedChecksRun(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}))
	defer srv.Close()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closed := ln.Addr().(*net.TCPAddr).Port
	ln.Close()
	good := srv.Listener.Addr().(*net.TCPAddr).Port
	src := fmt.Sprintf(`virtual_server 10.0.0.1 80 {
    delay_loop 0.1
    lb_kind NAT
    real_server 127.0.0.1 %d {
        HTTP_GET {
            url {
                path /
                status_code 200
            }
            connect_timeout 1
            delay_before_retry 0.05
            warmup 0
        }
    }
    real_server 127.0.0.1 %d {
        TCP_CHECK {
            delay_before_retry 0.05
            warmup 0
        }
    }
}
`, good, closed)
	res, err := Parse("k.conf", []byte(src), files{}.opts())
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	last := map[netip.AddrPort]health.Transition{}
	sink := health.SinkFunc(func(_ context.Context, b []health.Transition) error {
		mu.Lock()
		defer mu.Unlock()
		for _, tr := range b {
			last[tr.Dest] = tr
		}
		return nil
	})
	opts := health.DefaultOptions()
	opts.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	e, err := health.New(res.Health, sink, opts)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { e.Run(ctx); close(done) }()
	defer func() { cancel(); <-done }()
	bad := netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), uint16(closed))
	ok := netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), uint16(good))
	deadline := time.Now().Add(3 * time.Second)
	for {
		mu.Lock()
		b, g := last[bad], last[ok]
		mu.Unlock()
		if !b.Present && b.Dest == bad && g.Present && g.Weight == 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("refusing server %+v, answering server %+v: want out and in", b, g)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
