//go:build linux

package main

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/xlbproject/xlb/testenv"
)

// sleep waits d or until ctx ends.
func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// nft loads an nftables script in h's namespace.
func nft(h *testenv.Host, script string) error {
	p := h.Command("nft", "-f", "-")
	p.Stdin = strings.NewReader(script)
	out, err := p.CombinedOutput()
	if err != nil {
		return fmt.Errorf("nft in %s: %w: %s\nscript:\n%s", h.NSName, err, out, script)
	}
	return nil
}
