package health

import (
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/xlbproject/xlb/internal/ipvs"
)

// Kind is a checker type, named as keepalived names its blocks.
type Kind uint8

const (
	TCPCheck  Kind = iota + 1 // TCP_CHECK: a TCP connect
	HTTPGet                   // HTTP_GET: GET each URL, check status and digest
	SSLGet                    // SSL_GET: HTTP_GET over TLS
	UDPCheck                  // UDP_CHECK: send a datagram, optionally require a reply
	PingCheck                 // PING_CHECK: ICMP or ICMPv6 echo
	MiscCheck                 // MISC_CHECK: run a script, its exit status decides
)

var kindNames = [...]string{TCPCheck: "TCP_CHECK", HTTPGet: "HTTP_GET", SSLGet: "SSL_GET",
	UDPCheck: "UDP_CHECK", PingCheck: "PING_CHECK", MiscCheck: "MISC_CHECK"}

func (k Kind) String() string {
	if int(k) < len(kindNames) && kindNames[k] != "" {
		return kindNames[k]
	}
	return "Kind(" + strconv.Itoa(int(k)) + ")"
}

// MarshalText makes a Kind read as its keepalived name in JSON.
func (k Kind) MarshalText() ([]byte, error) { return []byte(k.String()), nil }

// UnmarshalText reads a keepalived checker name, so that `xlb health -o
// json` reads back into a Status.
func (k *Kind) UnmarshalText(b []byte) error {
	for i, n := range kindNames {
		if n != "" && n == string(b) {
			*k = Kind(i)
			return nil
		}
	}
	return fmt.Errorf("unmarshal checker kind: %w: unknown checker %q", ErrInvalid, b)
}

// Keepalived's defaults (keepalived.conf(5), check_api.c).
const (
	DefaultConnectTimeout   = 5 * time.Second  // connect_timeout
	DefaultDelayLoop        = 60 * time.Second // delay_loop of a virtual_server
	DefaultDelayBeforeRetry = 1 * time.Second  // delay_before_retry
	DefaultRetry            = 1                // retry, except MISC_CHECK
	DefaultMiscRetry        = 0                // retry of MISC_CHECK
	DefaultRise             = 1                // xlb's rise: recovery on the first success, as keepalived
	DefaultQuorum           = 1                // quorum of a virtual_server
)

// WarmupDelayLoop, as Check.Warmup, is keepalived's default warmup: a
// random first delay of up to the checker's delay_loop.
const WarmupDelayLoop time.Duration = -1

// StatusRange is an inclusive range of HTTP status codes.
type StatusRange struct{ Min, Max int }

// URL is one url block of HTTP_GET or SSL_GET. Every URL of a checker
// must pass for the check to pass.
type URL struct {
	Path string
	// Digest is the MD5 of the body as lowercase hex, as keepalived's
	// genhash prints it; "" checks no body.
	Digest string
	// StatusCodes are the accepted status codes; none accepts any 2xx,
	// keepalived's default.
	StatusCodes []StatusRange
	// VirtualHost is the Host header; "" is the checker's VirtualHost,
	// else the connect address (with :port unless 80 or 443).
	VirtualHost string
}

// Check is one checker of a real server, as a keepalived checker block
// describes it. Start from NewCheck, which fills in keepalived's
// defaults.
type Check struct {
	Kind Kind

	// ConnectIP and ConnectPort override the real server's address
	// and port (connect_ip, connect_port).
	ConnectIP   netip.Addr
	ConnectPort uint16
	// BindTo and BindPort are the probe's source (bindto, bind_port);
	// BindIf binds it to an interface (bind_if); FWMark marks its
	// packets (fwmark, SO_MARK).
	BindTo   netip.Addr
	BindPort uint16
	BindIf   string
	FWMark   uint32

	ConnectTimeout   time.Duration // connect_timeout: the whole probe's deadline
	DelayLoop        time.Duration // delay_loop: interval between checks; 0 is the service's
	Retry            int           // retry: failed checks of a healthy server retried before it is down
	DelayBeforeRetry time.Duration // delay_before_retry: interval while retrying
	Warmup           time.Duration // warmup: random first delay of up to this; WarmupDelayLoop by default
	// Rise is xlb's addition (HAProxy's "rise"): the successes in a row
	// that bring a failed server back. Keepalived brings it back on the
	// first, so the default is 1.
	Rise int

	// HTTP_GET and SSL_GET.
	URLs        []URL
	VirtualHost string // virtualhost for every URL without its own
	EnableSNI   bool   // enable_sni: send VirtualHost as TLS server name

	// UDP_CHECK.
	Payload      []byte // payload; empty sends an empty datagram
	RequireReply bool   // require_reply: no reply within connect_timeout fails
	ReplyPrefix  []byte // require_reply's hex string: the reply must start with it
	MinReplyLen  int    // min_reply_length
	MaxReplyLen  int    // max_reply_length; 0 is no limit

	// MISC_CHECK.
	MiscPath    string        // misc_path: program and arguments, split as a shell would without expansion
	MiscTimeout time.Duration // misc_timeout; 0 is the delay_loop
	MiscDynamic bool          // misc_dynamic: exit 2..255 sets the weight to exit-2
}

// NewCheck returns a checker of kind k with keepalived's defaults.
func NewCheck(k Kind) Check {
	c := Check{
		Kind:             k,
		ConnectTimeout:   DefaultConnectTimeout,
		Retry:            DefaultRetry,
		DelayBeforeRetry: DefaultDelayBeforeRetry,
		Warmup:           WarmupDelayLoop,
		Rise:             DefaultRise,
	}
	if k == MiscCheck {
		c.Retry = DefaultMiscRetry
	}
	return c
}

// RealServer is a real server of a virtual service and its checkers.
type RealServer struct {
	Addr   netip.AddrPort
	Weight int32 // the configured weight, restored on recovery
	// InhibitOnFailure keeps a failed server with weight 0, so that its
	// connections drain, instead of removing it (inhibit_on_failure).
	InhibitOnFailure bool
	// Checks must all pass for the server to be healthy; a server
	// without checks is always healthy, as in keepalived.
	Checks []Check
	// NotifyUp and NotifyDown are run when the server comes up or goes
	// down (notify_up, notify_down).
	NotifyUp, NotifyDown string
}

// VirtualService is a virtual service whose real servers are checked.
type VirtualService struct {
	Key ipvs.ServiceKey
	// Also are more services that share these real servers and their
	// checkers (the other members of a keepalived virtual_server_group):
	// every transition of Key is sent for each of them too.
	Also []ipvs.ServiceKey
	// DelayLoop is the interval of checkers without their own;
	// DefaultDelayLoop when 0.
	DelayLoop time.Duration
	// Alpha starts every checked server as failed until its first
	// success (alpha); otherwise servers start healthy, as in
	// keepalived.
	Alpha bool
	Reals []RealServer

	// Quorum is the sum of the healthy servers' weights the service
	// needs (quorum, 1 by default); Hysteresis widens it both ways:
	// quorum is lost below Quorum-Hysteresis and regained at
	// Quorum+Hysteresis (hysteresis). QuorumUp and QuorumDown are run
	// when it is regained and lost (quorum_up, quorum_down).
	Quorum     int64
	Hysteresis int64
	QuorumUp   string
	QuorumDown string

	// Sorry is the sorry server (sorry_server), zero for none, with its
	// forwarding method. While quorum is lost it is added with
	// SorryWeight and the real servers are taken out; with
	// SorryInhibit it is kept with weight 0 the rest of the time
	// (sorry_server_inhibit) rather than removed.
	Sorry        netip.AddrPort
	SorryFwd     ipvs.Fwd
	SorryWeight  int32
	SorryInhibit bool
}

// Config is every checked virtual service.
type Config struct {
	Services []VirtualService
}

// ErrInvalid is wrapped by every error of Validate.
var ErrInvalid = errors.New("invalid health check")

// Validate checks cfg and states each rule that is broken.
func (cfg *Config) Validate() error {
	seen := map[ipvs.ServiceKey]bool{}
	for i := range cfg.Services {
		vs := &cfg.Services[i]
		for _, k := range append([]ipvs.ServiceKey{vs.Key}, vs.Also...) {
			if seen[k] {
				return fmt.Errorf("%w: service %s listed twice", ErrInvalid, KeyString(k))
			}
			seen[k] = true
		}
		if err := vs.Validate(); err != nil {
			return fmt.Errorf("service %s: %w", KeyString(vs.Key), err)
		}
	}
	return nil
}

// Validate checks one service and its real servers and checkers.
func (vs *VirtualService) Validate() error {
	if vs.DelayLoop < 0 {
		return fmt.Errorf("%w: delay_loop %v: must not be negative", ErrInvalid, vs.DelayLoop)
	}
	if vs.Quorum < 0 || vs.Hysteresis < 0 {
		return fmt.Errorf("%w: quorum %d hysteresis %d: must not be negative", ErrInvalid, vs.Quorum, vs.Hysteresis)
	}
	dests := map[netip.AddrPort]bool{}
	for i := range vs.Reals {
		rs := &vs.Reals[i]
		if !rs.Addr.Addr().IsValid() {
			return fmt.Errorf("%w: real server %d has no address", ErrInvalid, i)
		}
		if dests[rs.Addr] {
			return fmt.Errorf("%w: real server %s listed twice", ErrInvalid, rs.Addr)
		}
		dests[rs.Addr] = true
		if rs.Weight < 0 || rs.Weight > ipvs.MaxWeight {
			return fmt.Errorf("%w: real server %s weight %d: must be 0..%d", ErrInvalid, rs.Addr, rs.Weight, ipvs.MaxWeight)
		}
		for j := range rs.Checks {
			if err := rs.Checks[j].Validate(); err != nil {
				return fmt.Errorf("real server %s: %s: %w", rs.Addr, rs.Checks[j].Kind, err)
			}
		}
	}
	if vs.Sorry.Addr().IsValid() && dests[vs.Sorry] {
		return fmt.Errorf("%w: sorry server %s is also a real server", ErrInvalid, vs.Sorry)
	}
	if vs.SorryWeight < 0 || vs.SorryWeight > ipvs.MaxWeight {
		return fmt.Errorf("%w: sorry server weight %d: must be 0..%d", ErrInvalid, vs.SorryWeight, ipvs.MaxWeight)
	}
	return nil
}

// Validate checks one checker's settings.
func (c *Check) Validate() error {
	if int(c.Kind) >= len(kindNames) || c.Kind == 0 {
		return fmt.Errorf("%w: unknown checker kind %d", ErrInvalid, c.Kind)
	}
	switch {
	case c.ConnectTimeout <= 0:
		return fmt.Errorf("%w: connect_timeout %v: must be positive", ErrInvalid, c.ConnectTimeout)
	case c.DelayLoop < 0:
		return fmt.Errorf("%w: delay_loop %v: must not be negative", ErrInvalid, c.DelayLoop)
	case c.Retry < 0:
		return fmt.Errorf("%w: retry %d: must not be negative", ErrInvalid, c.Retry)
	case c.DelayBeforeRetry < 0:
		return fmt.Errorf("%w: delay_before_retry %v: must not be negative", ErrInvalid, c.DelayBeforeRetry)
	case c.Warmup < 0 && c.Warmup != WarmupDelayLoop:
		return fmt.Errorf("%w: warmup %v: must not be negative", ErrInvalid, c.Warmup)
	case c.Rise < 1:
		return fmt.Errorf("%w: rise %d: must be at least 1", ErrInvalid, c.Rise)
	case c.MiscTimeout < 0:
		return fmt.Errorf("%w: misc_timeout %v: must not be negative", ErrInvalid, c.MiscTimeout)
	}
	switch c.Kind {
	case HTTPGet, SSLGet:
		if len(c.URLs) == 0 {
			return fmt.Errorf("%w: no url", ErrInvalid)
		}
		for _, u := range c.URLs {
			if !strings.HasPrefix(u.Path, "/") {
				return fmt.Errorf("%w: url path %q: must start with /", ErrInvalid, u.Path)
			}
			if u.Digest != "" && !isMD5Hex(u.Digest) {
				return fmt.Errorf("%w: digest %q: must be 32 lowercase hex digits (an MD5)", ErrInvalid, u.Digest)
			}
			for _, r := range u.StatusCodes {
				if r.Min < 100 || r.Max > 999 || r.Min > r.Max {
					return fmt.Errorf("%w: status_code %d-%d: must be within 100..999", ErrInvalid, r.Min, r.Max)
				}
			}
		}
	case UDPCheck:
		if c.MinReplyLen < 0 || c.MaxReplyLen < 0 || (c.MaxReplyLen > 0 && c.MinReplyLen > c.MaxReplyLen) {
			return fmt.Errorf("%w: reply length %d..%d: must be a range of non-negative lengths", ErrInvalid, c.MinReplyLen, c.MaxReplyLen)
		}
	case MiscCheck:
		if len(splitWords(c.MiscPath)) == 0 {
			return fmt.Errorf("%w: misc_path is empty", ErrInvalid)
		}
	}
	return nil
}

func isMD5Hex(s string) bool {
	return len(s) == 32 && !strings.ContainsFunc(s, func(r rune) bool {
		return !('0' <= r && r <= '9' || 'a' <= r && r <= 'f')
	})
}

// statusOK reports whether code is accepted by ranges (any 2xx if none).
func statusOK(ranges []StatusRange, code int) bool {
	if len(ranges) == 0 {
		return 200 <= code && code <= 299
	}
	return slices.ContainsFunc(ranges, func(r StatusRange) bool { return r.Min <= code && code <= r.Max })
}

// target is the address a check of the real server rs probes.
func (c *Check) target(rs netip.AddrPort) netip.AddrPort {
	a, p := rs.Addr(), rs.Port()
	if c.ConnectIP.IsValid() {
		a = c.ConnectIP
	}
	if c.ConnectPort != 0 {
		p = c.ConnectPort
	}
	return netip.AddrPortFrom(a, p)
}

// KeyString is a service key as ipvsadm -S names it: "tcp 10.0.0.1:80",
// "udp [::1]:53", "fwmark 5" (IPv6: "fwmark 5 ipv6").
func KeyString(k ipvs.ServiceKey) string {
	if k.IsFWMark() {
		if k.IPv6() {
			return "fwmark " + strconv.FormatUint(uint64(k.FWMark), 10) + " ipv6"
		}
		return "fwmark " + strconv.FormatUint(uint64(k.FWMark), 10)
	}
	p := "proto" + strconv.Itoa(int(k.Proto))
	switch k.Proto {
	case ipvs.TCP:
		p = "tcp"
	case ipvs.UDP:
		p = "udp"
	case ipvs.SCTP:
		p = "sctp"
	}
	return p + " " + netip.AddrPortFrom(k.Addr, k.Port).String()
}

// splitWords splits a command line into words at blanks, as keepalived
// splits misc_path and notify scripts: '...' and "..." quote, a backslash
// outside single quotes takes the next byte as it is, and nothing is
// expanded (no shell runs).
func splitWords(s string) []string {
	var words []string
	var w strings.Builder
	in := false
	var quote byte
	esc := false
	// Bytes, not runes: the delimiters are ASCII, and other bytes, valid
	// UTF-8 or not, are copied as they are.
	for i := 0; i < len(s); i++ {
		r := s[i]
		switch {
		case esc:
			w.WriteByte(r)
			esc = false
		case r == '\\' && quote != '\'':
			esc, in = true, true
		case quote != 0:
			if r == quote {
				quote = 0
			} else {
				w.WriteByte(r)
			}
		case r == '\'' || r == '"':
			quote, in = r, true
		case r == ' ' || r == '\t' || r == '\n':
			if in {
				words = append(words, w.String())
				w.Reset()
				in = false
			}
		default:
			w.WriteByte(r)
			in = true
		}
	}
	if in {
		words = append(words, w.String())
	}
	return words
}
