package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"strings"
	"sync"
	"time"

	"github.com/xlbproject/xlb/bpf"
	"github.com/xlbproject/xlb/dataplane"
	"github.com/xlbproject/xlb/internal/ipvs"
	"github.com/xlbproject/xlb/internal/ipvsadm"
)

// controlPlane is what the control socket needs of the dataplane
// (*dataplane.Dataplane; a fake in tests).
type controlPlane interface {
	Apply(*ipvs.Config) error
	Zero(*ipvs.ServiceKey)
	DestStats(ipvs.ServiceKey, netip.AddrPort) (dataplane.DestStats, bool)
	Conns(context.Context, func(dataplane.Conn)) error
	Stats() dataplane.Stats
	AttachMode() bpf.AttachMode
	LocalAddrStats(netip.Addr) (conns, exhausted uint64)
}

// server answers ipvsadm command lines against the running dataplane.
// Clients are served concurrently: commands that change the
// configuration hold mu for writing, one at a time; listings hold it for
// reading, so they see one configuration whole.
type server struct {
	dp  controlPlane
	gid int // socket group allowed besides root; -1 for none
	log *slog.Logger

	mu  sync.RWMutex
	cfg *ipvs.Config // the applied configuration; replaced, never changed in place
}

// handle runs one command line. A command that changes the
// configuration is applied to a copy first; the dataplane takes the copy
// whole or not at all, so a refused command changes nothing.
func (s *server) handle(req request) response {
	if len(req.Args) == 1 && req.Args[0] == "--xlb-stats" {
		var b bytes.Buffer
		writeStats(&b, s.dp)
		return response{Stdout: b.String()}
	}
	if len(req.Args) > 0 && req.Args[0] == "mark" {
		return s.handleMark(req.Args[1:])
	}
	cmd, err := ipvsadm.Parse(req.Args)
	if err != nil {
		return errorResponse(err)
	}
	var out bytes.Buffer
	switch cmd.Kind {
	case ipvsadm.KindHelp:
		return response{Stdout: ipvsadm.Usage(ipvsadm.Program)}
	case ipvsadm.KindVersion:
		return response{Stdout: "ipvsadm v1.31 2019/12/24 (compiled with popt and IPVS v1.2.1)\n"}
	case ipvsadm.KindList:
		if cmd.List.Connection {
			if err := s.writeConns(&out, cmd.List); err != nil {
				return response{Stderr: fmt.Sprintf("%v\n", err), Code: ipvsadm.ExitRuntime}
			}
			return response{Stdout: out.String()}
		}
		s.mu.RLock()
		defer s.mu.RUnlock()
		if err := ipvsadm.WriteList(&out, s.cfg, dpStats{s.dp, s.cfg}, cmd.List); err != nil {
			return errorResponse(err)
		}
		return response{Stdout: out.String()}
	case ipvsadm.KindGetLaddr:
		s.mu.RLock()
		defer s.mu.RUnlock()
		if err := ipvsadm.WriteLaddrs(&out, s.cfg, dpStats{s.dp, s.cfg}, cmd.List); err != nil {
			return errorResponse(err)
		}
		return response{Stdout: out.String()}
	case ipvsadm.KindSave:
		s.mu.RLock()
		defer s.mu.RUnlock()
		if err := ipvsadm.WriteSave(&out, s.cfg, cmd.List.Numeric); err != nil {
			return errorResponse(err)
		}
		return response{Stdout: out.String()}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	next := s.cfg.Clone()
	if cmd.Kind == ipvsadm.KindRestore {
		if err := ipvsadm.Restore(next, strings.NewReader(req.Stdin)); err != nil {
			return errorResponse(err)
		}
		return s.apply(next)
	}
	if err := cmd.Apply(next); err != nil {
		return errorResponse(err)
	}
	if cmd.Kind == ipvsadm.KindZero {
		var k *ipvs.ServiceKey
		if cmd.Options&ipvsadm.OptService != 0 {
			k = &cmd.Service.Key
		}
		s.dp.Zero(k)
		return response{}
	}
	return s.apply(next)
}

// apply installs next; the caller holds mu for writing.
func (s *server) apply(next *ipvs.Config) response {
	if err := s.dp.Apply(next); err != nil {
		return response{Stderr: fmt.Sprintf("%v\n", err), Code: ipvsadm.ExitRuntime}
	}
	s.cfg = next
	return response{}
}

// reload replaces the configuration with the rules file's, as
// `ipvsadm -C; ipvsadm -R < file` would but atomically: a file that does
// not parse or that the dataplane refuses changes nothing.
func (s *server) reload(path string) error {
	next, err := loadRules(path)
	if err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.dp.Apply(next); err != nil {
		return fmt.Errorf("apply rules %s: %w", path, err)
	}
	s.cfg = next
	return nil
}

func errorResponse(err error) response {
	var e *ipvsadm.Error
	if errors.As(err, &e) {
		return response{Stderr: e.Msg + "\n", Code: e.Code}
	}
	return response{Stderr: err.Error() + "\n", Code: ipvsadm.ExitRuntime}
}

// writeConns lists connection entries as ipvsadm -L -c does.
func (s *server) writeConns(out *bytes.Buffer, opts ipvsadm.ListOptions) error {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	var conns []ipvsadm.Conn
	err := s.dp.Conns(ctx, func(c dataplane.Conn) {
		conns = append(conns, ipvsadm.Conn{
			Proto: c.Proto, Client: c.Client, Virtual: c.Virtual, Dest: c.Dest,
			State: c.State, Expires: uint(c.Expires / time.Second),
		})
	})
	if err != nil {
		return fmt.Errorf("list connections: %w", err)
	}
	return ipvsadm.WriteConns(out, conns, opts)
}

// dpStats feeds listings with the dataplane's per-destination figures.
// A service's statistics are the sum of its current destinations' (IPVS
// keeps a separate sum that also remembers deleted destinations).
type dpStats struct {
	dp  controlPlane
	cfg *ipvs.Config
}

// LocalAddr gives -G's figures of a FULLNAT local address. The pool
// counts per address, whichever service the connection belongs to.
func (s dpStats) LocalAddr(_ ipvs.ServiceKey, a netip.Addr) ipvsadm.LaddrCounters {
	conns, exhausted := s.dp.LocalAddrStats(a)
	return ipvsadm.LaddrCounters{Conflicts: exhausted, Conns: uint32(conns)}
}

func (s dpStats) Service(k ipvs.ServiceKey) ipvsadm.Counters {
	var sum ipvsadm.Counters
	svc := s.cfg.Service(k)
	if svc == nil {
		return sum
	}
	for i := range svc.Dests {
		c := s.Dest(k, &svc.Dests[i]).Counters
		sum.Conns += c.Conns
		sum.InPkts += c.InPkts
		sum.OutPkts += c.OutPkts
		sum.InBytes += c.InBytes
		sum.OutBytes += c.OutBytes
		sum.CPS += c.CPS
		sum.InPPS += c.InPPS
		sum.OutPPS += c.OutPPS
		sum.InBPS += c.InBPS
		sum.OutBPS += c.OutBPS
	}
	return sum
}

func (s dpStats) Dest(k ipvs.ServiceKey, d *ipvs.Dest) ipvsadm.DestStats {
	st, ok := s.dp.DestStats(k, netip.AddrPortFrom(d.Addr, d.Port))
	if !ok {
		return ipvsadm.DestStats{}
	}
	return ipvsadm.DestStats{
		ActiveConns:  uint32(st.ActiveConns),
		InactConns:   uint32(st.InactConns),
		PersistConns: uint32(st.PersistConns),
		Counters: ipvsadm.Counters{
			Conns: st.Conns, InPkts: st.InPkts, OutPkts: st.OutPkts, InBytes: st.InBytes, OutBytes: st.OutBytes,
			CPS: st.CPS, InPPS: st.InPPS, OutPPS: st.OutPPS, InBPS: st.InBPS, OutBPS: st.OutBPS,
		},
	}
}
