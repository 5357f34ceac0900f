package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"strings"
	"time"

	"github.com/xlbproject/xlb/bpf"
	"github.com/xlbproject/xlb/dataplane"
	"github.com/xlbproject/xlb/director"
	"github.com/xlbproject/xlb/internal/ipvs"
	"github.com/xlbproject/xlb/internal/ipvsadm"
)

// controlPlane is what the control socket needs of the dataplane
// (*dataplane.Dataplane; a fake in tests): the director's Dataplane to
// apply configurations, and the figures listings show.
type controlPlane interface {
	director.Dataplane
	Zero(*ipvs.ServiceKey)
	DestStats(ipvs.ServiceKey, netip.AddrPort) (dataplane.DestStats, bool)
	Conns(context.Context, func(dataplane.Conn)) error
	Stats() dataplane.Stats
	AttachMode() bpf.AttachMode
	LocalAddrStats(netip.Addr) (conns, exhausted uint64)
}

// server answers ipvsadm command lines: it parses them, asks the
// director to change the configuration, and formats what ipvsadm would
// print. Clients are served concurrently; the director serialises the
// changes, and each listing formats one snapshot whole.
type server struct {
	dp  controlPlane
	dir *director.Director
	gid int // socket group allowed besides root; -1 for none
	log *slog.Logger
	hc  healthStatus // the health engine; nil without --keepalived
	ann *announcer   // BGP announcements (xlb run --bgp); nil without
	syn *syncDaemons // --start-daemon's sync daemons; nil: none can run
}

// handle runs one command line. A command that changes the
// configuration goes through the director, which applies it whole or
// not at all: a refused command changes nothing.
func (s *server) handle(req request) response {
	if len(req.Args) == 1 && req.Args[0] == "--xlb-stats" && !req.Ipvsadm {
		var b bytes.Buffer
		writeStats(&b, s.dp)
		if s.syn != nil {
			s.syn.writeStats(&b)
		}
		return response{Stdout: b.String()}
	}
	if len(req.Args) > 0 && req.Args[0] == "sysctl" && !req.Ipvsadm {
		return s.sysctl(req.Args[1:])
	}
	if len(req.Args) > 0 && req.Args[0] == "mark" && !req.Ipvsadm {
		return s.handleMark(req.Args[1:])
	}
	if len(req.Args) > 0 && req.Args[0] == "health" && !req.Ipvsadm {
		return s.handleHealth(req.Args[1:])
	}
	if len(req.Args) > 0 && (req.Args[0] == "drain" || req.Args[0] == "undrain") && !req.Ipvsadm {
		return s.drain(req.Args)
	}
	cmd, err := ipvsadm.Parse(req.Args)
	if err != nil {
		return errorResponse(err)
	}
	var out bytes.Buffer
	// Listings show what runs: the operator's configuration with the
	// health checker's overlays (see package director).
	cfg := s.dir.Applied()
	switch cmd.Kind {
	case ipvsadm.KindHelp:
		return response{Stdout: ipvsadm.Usage(ipvsadm.Program)}
	case ipvsadm.KindVersion:
		return response{Stdout: "ipvsadm v1.31 2019/12/24 (compiled with popt and IPVS v1.2.1)\n"}
	case ipvsadm.KindStartDaemon, ipvsadm.KindStopDaemon:
		syn := s.syn
		if syn == nil {
			syn = newSyncDaemons(nil, nil, s.log)
		}
		if err := syn.handle(&cmd); err != nil {
			return errorResponse(err)
		}
		return response{}
	case ipvsadm.KindList:
		if cmd.List.Daemon {
			if s.syn != nil {
				s.syn.writeList(&out)
			}
			return response{Stdout: out.String()}
		}
		if cmd.List.Connection {
			if err := s.writeConns(&out, cmd.List); err != nil {
				return response{Stderr: fmt.Sprintf("%v\n", err), Code: ipvsadm.ExitRuntime}
			}
			return response{Stdout: out.String()}
		}
		if err := ipvsadm.WriteList(&out, cfg, dpStats{s.dp, cfg}, cmd.List); err != nil {
			return errorResponse(err)
		}
		return response{Stdout: out.String()}
	case ipvsadm.KindGetLaddr:
		if err := ipvsadm.WriteLaddrs(&out, cfg, dpStats{s.dp, cfg}, cmd.List); err != nil {
			return errorResponse(err)
		}
		return response{Stdout: out.String()}
	case ipvsadm.KindSave:
		if err := ipvsadm.WriteSave(&out, cfg, cmd.List.Numeric); err != nil {
			return errorResponse(err)
		}
		return response{Stdout: out.String()}
	case ipvsadm.KindZero:
		// -Z changes counters, not the configuration: checked against a
		// copy (a missing service is an error), then done.
		if err := cmd.Apply(s.dir.Config().Clone()); err != nil {
			return errorResponse(err)
		}
		var k *ipvs.ServiceKey
		if cmd.Options&ipvsadm.OptService != 0 {
			k = &cmd.Service.Key
		}
		s.dp.Zero(k)
		return response{}
	}
	reason := "ipvsadm " + strings.Join(req.Args, " ")
	change := cmd.Apply
	if cmd.Kind == ipvsadm.KindRestore {
		reason = "ipvsadm -R"
		change = func(next *ipvs.Config) error { return ipvsadm.Restore(next, strings.NewReader(req.Stdin)) }
	}
	if err := s.dir.Change(reason, change); err != nil {
		return changeError(err)
	}
	return response{}
}

// changeError answers a refused change. ipvsadm's own refusals carry
// their exit code; any other (the dataplane's, the director's checks) is
// the kernel refusing the change, and ipvsadm exits 255 for those.
func changeError(err error) response {
	var e *ipvsadm.Error
	if errors.As(err, &e) {
		return errorResponse(err)
	}
	return response{Stderr: err.Error() + "\n", Code: ipvsadm.ExitKernel}
}

// sysctl is `xlb sysctl [-w] [NAME[=VALUE]...]`: the IPVS sysctls xlb
// implements, read and set as sysctl(8) does (net.ipv4.vs.NAME). With no
// name it lists them all. A bad assignment changes none of them.
func (s *server) sysctl(args []string) response {
	cur := s.dir.Sysctls()
	next := cur
	var out strings.Builder
	show := func(name string) bool {
		for _, l := range next.Lines() {
			if n, _, _ := strings.Cut(l, " = "); n == name || n == "net.ipv4.vs."+name {
				out.WriteString(l + "\n")
				return true
			}
		}
		return false
	}
	names := 0
	for _, a := range args {
		if a == "-w" {
			continue
		}
		names++
		if !strings.Contains(a, "=") {
			if !show(strings.ReplaceAll(a, "/", ".")) {
				return response{Stderr: fmt.Sprintf("sysctl: cannot stat %s: No such file or directory\n", a), Code: 255}
			}
			continue
		}
		if err := next.Set(a); err != nil {
			return response{Stderr: fmt.Sprintf("sysctl: %v\n", err), Code: 255}
		}
		name, _, _ := strings.Cut(a, "=")
		show(strings.ReplaceAll(strings.TrimSpace(name), "/", "."))
	}
	if names == 0 {
		for _, l := range next.Lines() {
			out.WriteString(l + "\n")
		}
	}
	if next != cur {
		s.dir.SetSysctls(next)
	}
	return response{Stdout: out.String()}
}

// reload replaces the configuration with the rules file's, as
// `ipvsadm -C; ipvsadm -R < file` would but atomically: a file that does
// not parse or that the dataplane refuses changes nothing.
func (s *server) reload(path string) error {
	next, err := loadRules(path)
	if err != nil {
		return err
	}
	if err := s.dir.Replace("reload "+path, next); err != nil {
		return fmt.Errorf("apply rules %s: %w", path, err)
	}
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
