//go:build linux

package testenv

import (
	"bytes"
	"context"
	"fmt"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"time"
)

// Proc is a program (xlb, trafgen, wrk, iperf3, ...) running in a host's
// namespace in a process group of its own: a terminal's ^C reaches only
// the caller, which stops the group itself (trafgen forks a worker per
// CPU, so signalling its first process alone would leave the worker
// sending). Output keeps stdout and stderr interleaved; Stdout has stdout
// alone.
type Proc struct {
	Name   string
	Cmd    *exec.Cmd
	Output SyncBuffer // stdout and stderr, interleaved
	Stdout SyncBuffer // stdout alone
	done   chan struct{}
	err    error // Wait's result, set before done is closed
}

// SyncBuffer is a bytes.Buffer safe for one writer and concurrent readers.
type SyncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *SyncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *SyncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// Start runs name args inside h's namespace. `ip netns exec` execs the
// program, so the process ID and group are the program's.
func (h *Host) Start(name string, args ...string) (*Proc, error) {
	p := &Proc{Name: name, Cmd: h.Command(name, args...), done: make(chan struct{})}
	p.Cmd.Stdout = teeWriter{&p.Stdout, &p.Output}
	p.Cmd.Stderr = &p.Output
	p.Cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := p.Cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s in %s: %w", name, h.NSName, err)
	}
	go func() {
		p.err = p.Cmd.Wait()
		close(p.done)
	}()
	return p, nil
}

type teeWriter struct{ a, b *SyncBuffer }

func (t teeWriter) Write(p []byte) (int, error) {
	t.a.Write(p)
	return t.b.Write(p)
}

// Exited reports whether the program has exited.
func (p *Proc) Exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// Err is the program's exit error once it has exited.
func (p *Proc) Err() error {
	if !p.Exited() {
		return nil
	}
	return p.err
}

// Stop sends sig to the process group, waits up to grace for the program
// to exit, then kills the group. It returns the program's exit error, or
// an error saying that it had to be killed.
func (p *Proc) Stop(sig syscall.Signal, grace time.Duration) error {
	if p.Exited() {
		return p.err
	}
	syscall.Kill(-p.Cmd.Process.Pid, sig)
	select {
	case <-p.done:
		return p.err
	case <-time.After(grace):
	}
	syscall.Kill(-p.Cmd.Process.Pid, syscall.SIGKILL)
	<-p.done
	return fmt.Errorf("%s did not exit within %v of %v: killed", p.Name, grace, sig)
}

// Wait waits for the program to exit on its own within limit, or for
// ctx; either way it is killed past that point, so a hung program cannot
// hang the caller.
func (p *Proc) Wait(ctx context.Context, limit time.Duration) error {
	t := time.NewTimer(limit)
	defer t.Stop()
	select {
	case <-p.done:
		return p.err
	case <-ctx.Done():
		p.Stop(syscall.SIGKILL, time.Second)
		return ctx.Err()
	case <-t.C:
		p.Stop(syscall.SIGKILL, time.Second)
		return fmt.Errorf("%s still running after %v: killed", p.Name, limit)
	}
}

// Run runs a program in h to completion within limit and returns its
// output.
func (h *Host) Run(ctx context.Context, limit time.Duration, name string, args ...string) (string, error) {
	p, err := h.Start(name, args...)
	if err != nil {
		return "", err
	}
	if err := p.Wait(ctx, limit); err != nil {
		return p.Output.String(), fmt.Errorf("%s %s in %s: %w\n%s", name, strings.Join(args, " "), h.NSName, err, p.Output.String())
	}
	return p.Output.String(), nil
}
