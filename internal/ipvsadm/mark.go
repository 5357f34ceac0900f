package ipvsadm

import (
	"errors"
	"fmt"
	"io"
	"net/netip"
	"slices"
	"strconv"
	"strings"

	"github.com/xlbproject/xlb/internal/ipvs"
)

// MarkLine is the first word of a rules-file line that holds firewall-mark
// classifier rules (`xlb mark add`), as -S writes them:
//
//	--xlb-mark 1 -t 10.0.0.1/32:80-80 -t 10.0.0.1/32:443-443
//
// ipvsadm has no such option, so ipvsadm's own -S never writes one, and
// ipvsadm -R refuses the line rather than misreading it.
const MarkLine = "--xlb-mark"

// MarkOp is what an `xlb mark` command does.
type MarkOp string

const (
	MarkAdd  MarkOp = "add"
	MarkDel  MarkOp = "del"
	MarkList MarkOp = "list"
)

// MarkCommand is a parsed `xlb mark` command line.
type MarkCommand struct {
	Op    MarkOp
	Mark  uint32
	Rules []ipvs.MarkRule // add: at least one; del: none for all of Mark's
}

// markUsage is what a bad `xlb mark` command line prints.
const markUsage = "usage: xlb mark add MARK -t|-u ADDR[/PREFIX][:PORT[-PORT]]...\n" +
	"       xlb mark del MARK [-t|-u ADDR[/PREFIX][:PORT[-PORT]]...]\n" +
	"       xlb mark list\n" +
	"IPv6 addresses in brackets when a port follows: -t [2001:db8::]/64:80"

func markError(format string, args ...any) *Error {
	return &Error{Code: ExitUsage, Msg: "xlb mark: " + fmt.Sprintf(format, args...) + "\n" + markUsage}
}

// ParseMark parses the arguments of `xlb mark` (after the word "mark").
// A refusal is an *Error with ExitUsage that names the bad word.
func ParseMark(args []string) (MarkCommand, error) {
	var c MarkCommand
	if len(args) == 0 {
		return c, markError("no command")
	}
	c.Op = MarkOp(args[0])
	switch c.Op {
	case MarkList:
		if len(args) > 1 {
			return c, markError("list takes no arguments: %q", args[1])
		}
		return c, nil
	case MarkAdd, MarkDel:
	default:
		return c, markError("unknown command %q: must be add, del or list", args[0])
	}
	mark, rules, err := ParseMarkRules(args[1:])
	if err != nil {
		return c, markError("%v", err)
	}
	if c.Op == MarkAdd && len(rules) == 0 {
		return c, markError("add %d: no selector", mark)
	}
	c.Mark, c.Rules = mark, rules
	return c, nil
}

// ParseMarkRules parses "MARK [-t|-u SELECTOR]...", the arguments of
// `xlb mark add` and of a rules file's --xlb-mark line.
func ParseMarkRules(args []string) (uint32, []ipvs.MarkRule, error) {
	if len(args) == 0 {
		return 0, nil, errors.New("no mark")
	}
	mark, err := parseMarkValue(args[0])
	if err != nil {
		return 0, nil, err
	}
	var rules []ipvs.MarkRule
	for i := 1; i < len(args); i += 2 {
		var proto ipvs.Proto
		switch args[i] {
		case "-t", "--tcp-service":
			proto = ipvs.TCP
		case "-u", "--udp-service":
			proto = ipvs.UDP
		default:
			return 0, nil, fmt.Errorf("%q: want -t or -u before each selector", args[i])
		}
		if i+1 >= len(args) {
			return 0, nil, fmt.Errorf("%s: missing ADDR[/PREFIX][:PORT[-PORT]]", args[i])
		}
		r, err := ParseMarkSelector(args[i+1])
		if err != nil {
			return 0, nil, err
		}
		r.Mark, r.Proto = mark, proto
		rules = append(rules, r)
	}
	return mark, rules, nil
}

// parseMarkValue parses a mark as ipvsadm's -f does: decimal, or 0x hex,
// 1 to 2^32-1.
func parseMarkValue(s string) (uint32, error) {
	v, err := strconv.ParseUint(s, 0, 32)
	if err != nil || v == 0 {
		return 0, fmt.Errorf("invalid mark %q: must be 1-4294967295", s)
	}
	return uint32(v), nil
}

// ParseMarkSelector parses ADDR[/PREFIX][:PORT[-PORT]]; an IPv6 address
// is bracketed when a port follows ([2001:db8::1]/128:80, or
// [2001:db8::/64]:80), and may be bare without one (2001:db8::/64). No
// prefix is the host's (/32, /128); no port is every port (0-65535). The
// rule's Mark and Proto are left for the caller.
func ParseMarkSelector(s string) (ipvs.MarkRule, error) {
	var r ipvs.MarkRule
	addr, ports := s, ""
	if strings.HasPrefix(s, "[") {
		end := strings.IndexByte(s, ']')
		if end < 0 {
			return r, fmt.Errorf("selector %q: missing ']'", s)
		}
		addr, rest := s[1:end], s[end+1:]
		hasPort := false
		switch {
		case strings.HasPrefix(rest, "/"): // [ADDR]/PREFIX[:PORTS]
			if strings.Contains(addr, "/") {
				return r, fmt.Errorf("selector %q: two prefix lengths", s)
			}
			var bits string
			bits, ports, hasPort = strings.Cut(rest[1:], ":")
			addr += "/" + bits
		case strings.HasPrefix(rest, ":"):
			ports, hasPort = rest[1:], true
		case rest != "":
			return r, fmt.Errorf("selector %q: want '/' or ':' after ']'", s)
		}
		if hasPort && ports == "" {
			return r, fmt.Errorf("selector %q: empty port", s)
		}
		return finishSelector(s, addr, ports, true)
	}
	if strings.Count(s, ":") > 1 {
		return finishSelector(s, s, "", true) // bare IPv6, no port
	}
	if a, p, ok := strings.Cut(s, ":"); ok {
		if p == "" {
			return r, fmt.Errorf("selector %q: empty port", s)
		}
		addr, ports = a, p
	}
	return finishSelector(s, addr, ports, false)
}

func finishSelector(s, addr, ports string, v6 bool) (ipvs.MarkRule, error) {
	var r ipvs.MarkRule
	var p netip.Prefix
	var err error
	if strings.Contains(addr, "/") {
		p, err = netip.ParsePrefix(addr)
	} else {
		var a netip.Addr
		if a, err = netip.ParseAddr(addr); err == nil {
			if a.Zone() != "" {
				return r, fmt.Errorf("selector %q: address with a zone", s)
			}
			p = netip.PrefixFrom(a, a.BitLen())
		}
	}
	switch {
	case err != nil:
		return r, fmt.Errorf("selector %q: invalid address or prefix %q", s, addr)
	case p.Addr().Zone() != "":
		return r, fmt.Errorf("selector %q: address with a zone", s)
	case p.Addr().Is4In6():
		return r, fmt.Errorf("selector %q: IPv4-mapped IPv6 address: write it as IPv4", s)
	case v6 && !p.Addr().Is6():
		return r, fmt.Errorf("selector %q: brackets around an IPv4 address", s)
	case p.Masked() != p:
		return r, fmt.Errorf("selector %q: prefix %v has host bits set: did you mean %v?", s, p, p.Masked())
	}
	r.Prefix, r.PortLo, r.PortHi = p, 0, 65535
	if ports == "" {
		return r, nil
	}
	lo, hi, isRange := strings.Cut(ports, "-")
	if !isRange {
		hi = lo
	}
	l, err1 := strconv.ParseUint(lo, 10, 16)
	h, err2 := strconv.ParseUint(hi, 10, 16)
	if err1 != nil || err2 != nil {
		return r, fmt.Errorf("selector %q: invalid port or range %q: ports are 0-65535", s, ports)
	}
	if l > h {
		return r, fmt.Errorf("selector %q: port range %d-%d: first port above the last", s, l, h)
	}
	r.PortLo, r.PortHi = uint16(l), uint16(h)
	return r, nil
}

// Apply carries out an add or del on cfg; on error cfg is unchanged.
func (c MarkCommand) Apply(cfg *ipvs.Config) error {
	var err error
	switch c.Op {
	case MarkAdd:
		err = cfg.AddMarks(c.Rules)
	case MarkDel:
		err = cfg.DeleteMarks(c.Mark, c.Rules)
	default:
		return &Error{Code: ExitUsage, Msg: fmt.Sprintf("xlb mark %s does not change the configuration", c.Op)}
	}
	return markKernelError(err)
}

// markKernelError words a model refusal with its detail: the marks are
// xlb's own, so there is no ipvsadm text to match.
func markKernelError(err error) error {
	if err == nil {
		return nil
	}
	var ie *ipvs.Error
	if errors.As(err, &ie) {
		msg := "xlb mark: " + ie.Msg
		if ie.Detail != "" {
			msg += ": " + ie.Detail
		}
		return &Error{Code: ExitRuntime, Msg: msg, Err: ie}
	}
	return &Error{Code: ExitRuntime, Msg: err.Error(), Err: err}
}

// restoreMarks applies a rules file's --xlb-mark line (args without the
// word): its rules are added, but a rule already there, the same, is
// left alone, so that restoring a -S output twice is not an error.
func restoreMarks(cfg *ipvs.Config, args []string) error {
	_, rules, err := ParseMarkRules(args)
	if err != nil {
		return &Error{Code: ExitUsage, Msg: MarkLine + ": " + err.Error()}
	}
	rules = slices.DeleteFunc(rules, func(r ipvs.MarkRule) bool { return slices.Contains(cfg.Marks, r) })
	if len(rules) == 0 {
		return nil
	}
	return markKernelError(cfg.AddMarks(rules))
}

// writeSaveMarks writes cfg's mark rules as -S does: one --xlb-mark line
// per mark, its rules in the order added, marks in the order first seen.
func writeSaveMarks(w io.Writer, cfg *ipvs.Config) {
	var marks []uint32
	for _, r := range cfg.Marks {
		if !slices.Contains(marks, r.Mark) {
			marks = append(marks, r.Mark)
		}
	}
	for _, m := range marks {
		io.WriteString(w, MarkLine+" "+strconv.FormatUint(uint64(m), 10))
		for _, r := range cfg.Marks {
			if r.Mark == m {
				io.WriteString(w, " "+r.Selector())
			}
		}
		io.WriteString(w, "\n")
	}
}

// WriteMarks lists cfg's mark rules for `xlb mark list`: a header, then
// one rule a line, by mark and in the order added.
func WriteMarks(w io.Writer, cfg *ipvs.Config) error {
	ew := &errWriter{w: w}
	rules := slices.Clone(cfg.Marks)
	slices.SortStableFunc(rules, func(a, b ipvs.MarkRule) int {
		switch {
		case a.Mark < b.Mark:
			return -1
		case a.Mark > b.Mark:
			return 1
		}
		return 0
	})
	fmt.Fprintf(ew, "%-10s %-4s %-44s %s\n", "Mark", "Prot", "Prefix", "Ports")
	for _, r := range rules {
		proto := "TCP"
		if r.Proto == ipvs.UDP {
			proto = "UDP"
		}
		fmt.Fprintf(ew, "%-10d %-4s %-44s %d-%d\n", r.Mark, proto, r.Prefix, r.PortLo, r.PortHi)
	}
	return ew.err
}
