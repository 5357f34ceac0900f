package ipvs

import (
	"fmt"
	"net/netip"
	"slices"
)

// MarkRule is one rule of xlb's firewall-mark classifier (`xlb mark add`):
// TCP or UDP frames to an address in Prefix and a port in PortLo..PortHi
// carry Mark, as `iptables -t mangle -A PREROUTING -p tcp -d PREFIX
// --dport LO:HI -j MARK --set-mark MARK` marks them for IPVS. XDP runs
// before netfilter, so xlb classifies itself.
//
// A frame matches the rule of the longest prefix that holds its address
// and a range that holds its port; rules of one prefix must not have
// overlapping ranges, so at most one matches.
type MarkRule struct {
	Mark   uint32
	Proto  Proto        // TCP or UDP
	Prefix netip.Prefix // masked: no host bits; IPv4 or IPv6, never IPv4-mapped
	PortLo uint16       // first port, 0 with PortHi 65535 for every port
	PortHi uint16       // last port, >= PortLo
}

// String formats r as `xlb mark` and the rules file write it:
// "1 -t 10.0.0.1/32:80-80", IPv6 as "[2001:db8::]/64:80-80".
func (r MarkRule) String() string {
	return fmt.Sprintf("%d %s", r.Mark, r.Selector())
}

// Selector is r without its mark: "-t 10.0.0.1/32:80-80".
func (r MarkRule) Selector() string {
	opt := "-t"
	if r.Proto == UDP {
		opt = "-u"
	}
	a := r.Prefix.Addr().String()
	if r.Prefix.Addr().Is6() {
		a = "[" + a + "]"
	}
	return fmt.Sprintf("%s %s/%d:%d-%d", opt, a, r.Prefix.Bits(), r.PortLo, r.PortHi)
}

// Overlaps reports whether r and o would both match some frame at the same
// prefix: same protocol and prefix, intersecting port ranges.
func (r MarkRule) Overlaps(o MarkRule) bool {
	return r.Proto == o.Proto && r.Prefix == o.Prefix && r.PortLo <= o.PortHi && o.PortLo <= r.PortHi
}

// Mark refusals. They are xlb's own (ipvsadm has no classifier).
var (
	ErrMarkExists = &Error{Msg: "Mark rule overlaps an existing rule"}
	ErrNoMark     = &Error{Msg: "No such mark rule"}
)

// checkMark validates one rule.
func checkMark(r MarkRule) error {
	switch {
	case r.Mark == 0:
		return ErrInvalid.with("mark rule %v: mark 0 means no mark: must be 1-4294967295", r)
	case r.Proto != TCP && r.Proto != UDP:
		return ErrInvalid.with("mark rule: protocol %d: must be TCP or UDP", r.Proto)
	case !r.Prefix.IsValid() || r.Prefix.Addr().Is4In6() || r.Prefix.Addr().Zone() != "":
		return ErrInvalid.with("mark rule %d: invalid prefix %v: must be IPv4 or IPv6", r.Mark, r.Prefix)
	case r.Prefix.Masked() != r.Prefix:
		return ErrInvalid.with("mark rule %d: prefix %v has host bits set (%v)", r.Mark, r.Prefix, r.Prefix.Masked())
	case r.PortLo > r.PortHi:
		return ErrInvalid.with("mark rule %d: port range %d-%d: first port above the last", r.Mark, r.PortLo, r.PortHi)
	}
	return nil
}

// AddMarks adds rules, all or none: each must be valid and overlap neither
// an existing rule nor another of rules. Errors: ErrInvalid,
// ErrMarkExists. On error c is unchanged.
func (c *Config) AddMarks(rules []MarkRule) error {
	if len(rules) == 0 {
		return ErrInvalid.with("mark rule: no selector (-t or -u ADDR[/PREFIX][:PORT[-PORT]])")
	}
	for i, r := range rules {
		if err := checkMark(r); err != nil {
			return err
		}
		for _, o := range c.Marks {
			if r.Overlaps(o) {
				return ErrMarkExists.with("rule %v overlaps %v", r, o)
			}
		}
		for _, o := range rules[:i] {
			if r.Overlaps(o) {
				return ErrMarkExists.with("rule %v overlaps %v", r, o)
			}
		}
	}
	c.Marks = append(c.Marks, rules...)
	return nil
}

// DeleteMarks removes the rules of mark that equal one of rules, or every
// rule of mark when rules is empty, all or none: each of rules must exist.
// Error: ErrNoMark. On error c is unchanged.
func (c *Config) DeleteMarks(mark uint32, rules []MarkRule) error {
	if len(rules) == 0 {
		n := len(c.Marks)
		c.Marks = slices.DeleteFunc(c.Marks, func(r MarkRule) bool { return r.Mark == mark })
		if len(c.Marks) == n {
			return ErrNoMark.with("mark %d has no rules", mark)
		}
		return nil
	}
	for _, r := range rules {
		if r.Mark != mark || !slices.Contains(c.Marks, r) {
			return ErrNoMark.with("rule %v", r)
		}
	}
	c.Marks = slices.DeleteFunc(c.Marks, func(r MarkRule) bool { return slices.Contains(rules, r) })
	return nil
}

// validateMarks checks c.Marks as AddMarks would add them one by one.
func (c *Config) validateMarks() error {
	var n Config
	for _, r := range c.Marks {
		if err := n.AddMarks([]MarkRule{r}); err != nil {
			return err
		}
	}
	return nil
}
