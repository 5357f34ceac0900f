//go:build linux

package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/xlbproject/xlb/testenv"
)

// proc is a tool (trafgen, wrk, iperf3, xlb) running in a namespace in a
// process group of its own: a terminal's ^C reaches only the bench, which
// then stops the group itself (trafgen forks a worker per CPU, so
// signalling its first process alone would leave the worker sending).
type proc struct {
	name string
	cmd  *exec.Cmd
	out  syncBuffer // stdout and stderr, interleaved
	done chan struct{}
	err  error // Wait's result, set before done is closed
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// start runs name args inside h's namespace. `ip netns exec` execs the
// tool, so the process ID is the tool's and its group is the tool's.
func start(h *testenv.Host, name string, args ...string) (*proc, error) {
	p := &proc{name: name, cmd: h.Command(name, args...), done: make(chan struct{})}
	p.cmd.Stdout, p.cmd.Stderr = &p.out, &p.out
	p.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := p.cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s in %s: %w", name, h.NSName, err)
	}
	go func() {
		p.err = p.cmd.Wait()
		close(p.done)
	}()
	return p, nil
}

func (p *proc) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// stop sends sig to the process group, waits up to grace for the tool to
// exit, then kills the group. It returns the tool's exit error, or an
// error saying that it had to be killed.
func (p *proc) stop(sig syscall.Signal, grace time.Duration) error {
	if p.exited() {
		return p.err
	}
	syscall.Kill(-p.cmd.Process.Pid, sig)
	select {
	case <-p.done:
		return p.err
	case <-time.After(grace):
	}
	syscall.Kill(-p.cmd.Process.Pid, syscall.SIGKILL)
	<-p.done
	return fmt.Errorf("%s did not exit within %v of %v: killed", p.name, grace, sig)
}

// wait waits for the tool to exit on its own within limit, or for ctx;
// either way it is killed past that point. The bound keeps a hung tool
// from hanging the bench.
func (p *proc) wait(ctx context.Context, limit time.Duration) error {
	t := time.NewTimer(limit)
	defer t.Stop()
	select {
	case <-p.done:
		return p.err
	case <-ctx.Done():
		p.stop(syscall.SIGKILL, time.Second)
		return ctx.Err()
	case <-t.C:
		p.stop(syscall.SIGKILL, time.Second)
		return fmt.Errorf("%s still running after %v: killed", p.name, limit)
	}
}

// runTool runs a tool to completion within limit and returns its output.
func runTool(ctx context.Context, h *testenv.Host, limit time.Duration, name string, args ...string) (string, error) {
	p, err := start(h, name, args...)
	if err != nil {
		return "", err
	}
	if err := p.wait(ctx, limit); err != nil {
		return p.out.String(), fmt.Errorf("%s %s in %s: %w\n%s", name, strings.Join(args, " "), h.NSName, err, p.out.String())
	}
	return p.out.String(), nil
}

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

var errEarlyExit = errors.New("exited before the measurement window ended")
