package bgp

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"slices"
	"sync"
	"time"

	api "github.com/osrg/gobgp/v3/api"
	gobgplog "github.com/osrg/gobgp/v3/pkg/log"
	"github.com/osrg/gobgp/v3/pkg/server"
	"google.golang.org/protobuf/types/known/anypb"
)

// ErrClosed is returned by a Speaker's methods after Close.
var ErrClosed = errors.New("bgp speaker closed")

// connectRetry is how long the speaker waits between attempts to open a
// session. gobgp's default is 120 s: a director started before its
// router would then stay out of the ECMP group for two minutes.
const connectRetry = 5 * time.Second

// flushWait bounds how long Close waits for its withdrawals to be sent
// before it tears the sessions down.
const flushWait = time.Second

// Speaker is an embedded gobgp BGP speaker that originates host routes for
// VIPs. It is safe for concurrent use.
type Speaker struct {
	srv *server.BgpServer
	cfg Config
	log *slog.Logger

	mu     sync.Mutex
	routes map[netip.Prefix]*api.Path // announced, with the path sent
	closed bool
}

// Start validates cfg, starts the speaker and configures its peers; the
// sessions come up in the background. ctx bounds the start only. log may
// be nil.
func Start(ctx context.Context, cfg Config, log *slog.Logger) (*Speaker, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	s := &Speaker{
		srv:    server.NewBgpServer(server.LoggerOption(&logAdapter{log: log})),
		cfg:    cfg,
		log:    log,
		routes: make(map[netip.Prefix]*api.Path),
	}
	go s.srv.Serve()
	listen := int32(cfg.ListenPort)
	if listen == 0 {
		listen = -1 // gobgp: do not listen
	}
	if err := s.srv.StartBgp(ctx, &api.StartBgpRequest{Global: &api.Global{
		Asn: cfg.AS, RouterId: cfg.RouterID.String(), ListenPort: listen,
	}}); err != nil {
		s.srv.Stop()
		return nil, fmt.Errorf("start bgp speaker: %w", err)
	}
	for _, p := range cfg.Peers {
		if err := s.srv.AddPeer(ctx, &api.AddPeerRequest{Peer: s.peer(p)}); err != nil {
			s.srv.Stop()
			return nil, fmt.Errorf("add bgp peer %v: %w", p, err)
		}
	}
	return s, nil
}

func (s *Speaker) peer(p Peer) *api.Peer {
	hold := uint64(s.cfg.HoldTime / time.Second)
	gr := s.cfg.GracefulRestart > 0
	ap := &api.Peer{
		Conf: &api.PeerConf{NeighborAddress: p.Addr.String(), PeerAsn: p.AS},
		Timers: &api.Timers{Config: &api.TimersConfig{
			HoldTime: hold, KeepaliveInterval: max(hold/3, 1),
			ConnectRetry: uint64(connectRetry / time.Second),
		}},
		Transport: &api.Transport{RemotePort: uint32(p.Port)},
	}
	if gr {
		// RFC 4724: the restart time this speaker asks its peers to keep
		// its routes for when the session drops without a NOTIFICATION.
		ap.GracefulRestart = &api.GracefulRestart{
			Enabled: true, RestartTime: uint32(s.cfg.GracefulRestart / time.Second),
		}
	}
	for _, afi := range []api.Family_Afi{api.Family_AFI_IP, api.Family_AFI_IP6} {
		as := &api.AfiSafi{Config: &api.AfiSafiConfig{
			Family: &api.Family{Afi: afi, Safi: api.Family_SAFI_UNICAST}, Enabled: true,
		}}
		if gr {
			as.MpGracefulRestart = &api.MpGracefulRestart{Config: &api.MpGracefulRestartConfig{Enabled: true}}
		}
		ap.AfiSafis = append(ap.AfiSafis, as)
	}
	return ap
}

// hostPrefix checks that p is a /32 or /128 and returns it masked.
func hostPrefix(p netip.Prefix) (netip.Prefix, error) {
	if !p.IsValid() || p.Bits() != p.Addr().BitLen() || p.Addr().Zone() != "" {
		return netip.Prefix{}, fmt.Errorf("prefix %v: must be a /32 or /128", p)
	}
	if p.Addr().Is4In6() {
		return netip.Prefix{}, fmt.Errorf("prefix %v: IPv4-mapped: give the IPv4 /32", p)
	}
	return p, nil
}

// HostPrefix is the /32 or /128 of a.
func HostPrefix(a netip.Addr) netip.Prefix {
	return netip.PrefixFrom(a.Unmap(), a.Unmap().BitLen())
}

func (s *Speaker) path(p netip.Prefix, nh netip.Addr) (*api.Path, error) {
	nlri, err := anypb.New(&api.IPAddressPrefix{Prefix: p.Addr().String(), PrefixLen: uint32(p.Bits())})
	if err != nil {
		return nil, err
	}
	origin, err := anypb.New(&api.OriginAttribute{Origin: 0}) // IGP
	if err != nil {
		return nil, err
	}
	if p.Addr().Is4() {
		if !nh.IsValid() {
			nh = s.cfg.NextHop
		}
		if !nh.IsValid() {
			nh = netip.IPv4Unspecified() // gobgp: the session's local address
		}
		if !nh.Is4() {
			return nil, fmt.Errorf("nexthop %v for %v: must be IPv4", nh, p)
		}
		a, err := anypb.New(&api.NextHopAttribute{NextHop: nh.String()})
		if err != nil {
			return nil, err
		}
		return &api.Path{
			Family: &api.Family{Afi: api.Family_AFI_IP, Safi: api.Family_SAFI_UNICAST},
			Nlri:   nlri, Pattrs: []*anypb.Any{origin, a},
		}, nil
	}
	if !nh.IsValid() {
		nh = s.cfg.NextHop6
	}
	if !nh.IsValid() {
		nh = netip.IPv6Unspecified()
	}
	if !nh.Is6() || nh.Is4In6() {
		return nil, fmt.Errorf("nexthop %v for %v: must be IPv6", nh, p)
	}
	fam := &api.Family{Afi: api.Family_AFI_IP6, Safi: api.Family_SAFI_UNICAST}
	mp, err := anypb.New(&api.MpReachNLRIAttribute{Family: fam, NextHops: []string{nh.String()}, Nlris: []*anypb.Any{nlri}})
	if err != nil {
		return nil, err
	}
	return &api.Path{Family: fam, Nlri: nlri, Pattrs: []*anypb.Any{origin, mp}}, nil
}

// Announce originates p, a /32 or /128, with next hop nh (invalid: the
// configured NextHop/NextHop6, else the session's local address).
// Announcing an announced prefix again replaces its next hop.
func (s *Speaker) Announce(ctx context.Context, p netip.Prefix, nh netip.Addr) error {
	p, err := hostPrefix(p)
	if err != nil {
		return fmt.Errorf("announce %v: %w", p, err)
	}
	path, err := s.path(p, nh)
	if err != nil {
		return fmt.Errorf("announce %v: %w", p, err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return fmt.Errorf("announce %v: %w", p, ErrClosed)
	}
	if _, err := s.srv.AddPath(ctx, &api.AddPathRequest{Path: path}); err != nil {
		return fmt.Errorf("announce %v: %w", p, err)
	}
	s.routes[p] = path
	return nil
}

// Withdraw stops originating p. Withdrawing a prefix that is not
// announced does nothing.
func (s *Speaker) Withdraw(ctx context.Context, p netip.Prefix) error {
	p, err := hostPrefix(p)
	if err != nil {
		return fmt.Errorf("withdraw %v: %w", p, err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return fmt.Errorf("withdraw %v: %w", p, ErrClosed)
	}
	return s.withdrawLocked(ctx, p)
}

func (s *Speaker) withdrawLocked(ctx context.Context, p netip.Prefix) error {
	path, ok := s.routes[p]
	if !ok {
		return nil
	}
	if err := s.srv.DeletePath(ctx, &api.DeletePathRequest{Family: path.Family, Path: path}); err != nil {
		return fmt.Errorf("withdraw %v: %w", p, err)
	}
	delete(s.routes, p)
	return nil
}

// Announced returns the prefixes the speaker originates, sorted.
func (s *Speaker) Announced() []netip.Prefix {
	s.mu.Lock()
	defer s.mu.Unlock()
	ps := make([]netip.Prefix, 0, len(s.routes))
	for p := range s.routes {
		ps = append(ps, p)
	}
	slices.SortFunc(ps, comparePrefix)
	return ps
}

func comparePrefix(a, b netip.Prefix) int {
	if c := a.Addr().Compare(b.Addr()); c != 0 {
		return c
	}
	return a.Bits() - b.Bits()
}

// PeerStatus is one session's state.
type PeerStatus struct {
	Peer        Peer
	Established bool
	State       string // BGP FSM state: "idle", "active", "established", ...
	// UpdatesSent counts the UPDATE messages sent on the session.
	UpdatesSent uint64
}

// Peers reports the state of every configured session.
func (s *Speaker) Peers(ctx context.Context) ([]PeerStatus, error) {
	byAddr := make(map[string]*api.Peer)
	if err := s.srv.ListPeer(ctx, &api.ListPeerRequest{}, func(p *api.Peer) {
		byAddr[p.GetConf().GetNeighborAddress()] = p
	}); err != nil {
		return nil, fmt.Errorf("list bgp peers: %w", err)
	}
	out := make([]PeerStatus, 0, len(s.cfg.Peers))
	for _, p := range s.cfg.Peers {
		st := PeerStatus{Peer: p, State: "unknown"}
		if ap := byAddr[p.Addr.String()]; ap != nil {
			ss := ap.GetState().GetSessionState()
			st.Established = ss == api.PeerState_ESTABLISHED
			st.State = map[api.PeerState_SessionState]string{
				api.PeerState_UNKNOWN: "unknown", api.PeerState_IDLE: "idle", api.PeerState_CONNECT: "connect",
				api.PeerState_ACTIVE: "active", api.PeerState_OPENSENT: "opensent",
				api.PeerState_OPENCONFIRM: "openconfirm", api.PeerState_ESTABLISHED: "established",
			}[ss]
			st.UpdatesSent = ap.GetState().GetMessages().GetSent().GetUpdate()
		}
		out = append(out, st)
	}
	return out, nil
}

// Close withdraws every announced prefix, waits (up to a second) until
// the withdrawals went out on every established session, then closes the
// sessions with a Cease NOTIFICATION and stops the speaker. The router
// drops the routes on the NOTIFICATION anyway; the explicit withdrawal
// makes the order independent of the router's graceful restart handling.
// A director calls Close before it detaches its XDP program. Close is
// idempotent.
func (s *Speaker) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil
	}
	s.closed = true
	ctx, cancel := context.WithTimeout(context.Background(), 5*flushWait)
	defer cancel()
	before, _ := s.Peers(ctx)
	var errs []error
	n := len(s.routes)
	for p := range s.routes {
		if err := s.withdrawLocked(ctx, p); err != nil {
			errs = append(errs, err)
		}
	}
	if n > 0 {
		s.waitSent(ctx, before)
	}
	if err := s.srv.StopBgp(ctx, &api.StopBgpRequest{}); err != nil {
		errs = append(errs, fmt.Errorf("stop bgp speaker: %w", err))
	}
	return errors.Join(errs...)
}

// waitSent waits until every session established in before has sent
// another UPDATE (the withdrawals), or flushWait passes.
func (s *Speaker) waitSent(ctx context.Context, before []PeerStatus) {
	deadline := time.Now().Add(flushWait)
	for time.Now().Before(deadline) {
		now, err := s.Peers(ctx)
		if err != nil {
			return
		}
		done := true
		for i, b := range before {
			if b.Established && i < len(now) && now[i].Established && now[i].UpdatesSent <= b.UpdatesSent {
				done = false
			}
		}
		if done {
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// logAdapter sends gobgp's log lines to slog.
type logAdapter struct{ log *slog.Logger }

func (l *logAdapter) attrs(f gobgplog.Fields) []any {
	a := make([]any, 0, 2*len(f))
	for k, v := range f {
		a = append(a, k, v)
	}
	return a
}

func (l *logAdapter) Panic(msg string, f gobgplog.Fields) {
	l.log.Error("bgp: "+msg, l.attrs(f)...)
	panic("bgp: " + msg)
}

func (l *logAdapter) Fatal(msg string, f gobgplog.Fields) {
	// gobgp calls Fatal only for its gRPC listener, which xlb does not start.
	l.log.Error("bgp: "+msg, l.attrs(f)...)
	panic("bgp: " + msg)
}

func (l *logAdapter) Error(msg string, f gobgplog.Fields) { l.log.Error("bgp: "+msg, l.attrs(f)...) }
func (l *logAdapter) Warn(msg string, f gobgplog.Fields)  { l.log.Warn("bgp: "+msg, l.attrs(f)...) }
func (l *logAdapter) Info(msg string, f gobgplog.Fields)  { l.log.Info("bgp: "+msg, l.attrs(f)...) }
func (l *logAdapter) Debug(msg string, f gobgplog.Fields) { l.log.Debug("bgp: "+msg, l.attrs(f)...) }
func (l *logAdapter) SetLevel(gobgplog.LogLevel)          {}
func (l *logAdapter) GetLevel() gobgplog.LogLevel {
	// gobgp skips building debug fields unless asked for them.
	if l.log.Enabled(context.Background(), slog.LevelDebug) {
		return gobgplog.DebugLevel
	}
	return gobgplog.InfoLevel
}
