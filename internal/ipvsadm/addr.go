package ipvsadm

import (
	"bufio"
	"math"
	"net/netip"
	"os"
	"strconv"
	"strings"
	"sync"

	"github.com/xlbproject/xlb/internal/ipvs"
)

// isSpace is C's isspace in the C locale.
func isSpace(c byte) bool {
	return c == ' ' || c == '\t' || c == '\n' || c == '\v' || c == '\f' || c == '\r'
}

func isDigit(c byte) bool { return '0' <= c && c <= '9' }

// strtol is C's strtol(s, &end, 10) on a 64-bit long: leading white space,
// an optional sign, decimal digits. n is the number of bytes parsed (0 if
// there were no digits) and rangeErr reports overflow (errno ERANGE).
func strtol(s string) (v int64, n int, rangeErr bool) {
	i := 0
	for i < len(s) && isSpace(s[i]) {
		i++
	}
	neg := false
	if i < len(s) && (s[i] == '+' || s[i] == '-') {
		neg = s[i] == '-'
		i++
	}
	start := i
	var u uint64
	for i < len(s) && isDigit(s[i]) {
		d := uint64(s[i] - '0')
		if u > (math.MaxUint64-d)/10 {
			u = math.MaxUint64
		} else {
			u = u*10 + d
		}
		i++
	}
	if i == start {
		return 0, 0, false
	}
	switch {
	case !neg && u > math.MaxInt64:
		return math.MaxInt64, i, true
	case neg && u > 1<<63:
		return math.MinInt64, i, true
	case neg:
		return int64(-u), i, false
	}
	return int64(u), i, false
}

// stringToNumber is ipvsadm's string_to_number: the whole of s a decimal
// number in min..max, else ok is false.
func stringToNumber(s string, min, max int64) (int64, bool) {
	v, n, rangeErr := strtol(s)
	if n == 0 || n != len(s) || rangeErr || v < min || v > max {
		return 0, false
	}
	return v, true
}

// atoi is C's atoi: (int)strtol(s, NULL, 10), ignoring what follows the
// digits.
func atoi(s string) int32 {
	v, _, _ := strtol(s)
	return int32(v)
}

// inetAton is glibc's inet_aton: one to four parts separated by dots,
// each decimal, 0x-hexadecimal or 0-octal; the last part fills the
// remaining bytes ("10.1" is 10.0.0.1). It stops at white space.
func inetAton(s string) (netip.Addr, bool) {
	var parts [3]uint32
	np := 0
	i := 0
	var val uint64
	for {
		if i >= len(s) || !isDigit(s[i]) {
			return netip.Addr{}, false
		}
		// strtoul(s+i, &end, 0)
		base := uint64(10)
		j := i
		if s[j] == '0' {
			if j+1 < len(s) && (s[j+1] == 'x' || s[j+1] == 'X') && j+2 < len(s) && isHex(s[j+2]) {
				base, j = 16, j+2
			} else {
				base = 8
			}
		}
		val = 0
		for ; j < len(s); j++ {
			d, ok := digitVal(s[j], base)
			if !ok {
				break
			}
			val = val*base + d
			if val > math.MaxUint32 {
				return netip.Addr{}, false
			}
		}
		i = j
		if i < len(s) && s[i] == '.' {
			if np > 2 || val > 0xff {
				return netip.Addr{}, false
			}
			parts[np] = uint32(val)
			np++
			i++
			continue
		}
		break
	}
	if i < len(s) && !isSpace(s[i]) {
		return netip.Addr{}, false
	}
	max := [4]uint64{0xffffffff, 0xffffff, 0xffff, 0xff}[np]
	if val > max {
		return netip.Addr{}, false
	}
	a := uint32(val)
	for k := 0; k < np; k++ {
		a |= parts[k] << (24 - 8*k)
	}
	return netip.AddrFrom4([4]byte{byte(a >> 24), byte(a >> 16), byte(a >> 8), byte(a)}), true
}

func isHex(c byte) bool {
	_, ok := digitVal(c, 16)
	return ok
}

func digitVal(c byte, base uint64) (uint64, bool) {
	var d uint64
	switch {
	case isDigit(c):
		d = uint64(c - '0')
	case 'a' <= c && c <= 'f':
		d = uint64(c-'a') + 10
	case 'A' <= c && c <= 'F':
		d = uint64(c-'A') + 10
	default:
		return 0, false
	}
	return d, d < base
}

// inetPton6 is inet_pton(AF_INET6, s): an IPv6 address without zone.
func inetPton6(s string) (netip.Addr, bool) {
	a, err := netip.ParseAddr(s)
	if err != nil || !a.Is6() || a.Zone() != "" {
		return netip.Addr{}, false
	}
	return a, true
}

// inetPton4 is inet_pton(AF_INET, s): a dotted quad.
func inetPton4(s string) (netip.Addr, bool) {
	a, err := netip.ParseAddr(s)
	if err != nil || !a.Is4() {
		return netip.Addr{}, false
	}
	return a, true
}

// What parseService found (SERVICE_ADDR, SERVICE_PORT).
const (
	foundAddr = 1 << iota
	foundPort
)

// parseService is ipvsadm's parse_service: "addr", "addr:port",
// "[v6addr]:port" or a bare IPv6 address, the port a number or a service
// name for proto. It reproduces ipvsadm's oddities: "[1.2.3.4]:80" drops
// the port, "::1:80" is an address. Host names are not resolved.
func parseService(buf string, proto ipvs.Proto) (addr netip.Addr, port uint16, found int) {
	if allDigits(buf) {
		return addr, 0, 0
	}
	portStr, hasPort := "", false
	if buf[0] == '[' {
		buf = buf[1:]
		i := strings.IndexByte(buf, ']')
		if i < 0 || i+1 >= len(buf) || buf[i+1] != ':' {
			return addr, 0, 0
		}
		buf, portStr, hasPort = buf[:i], buf[i+2:], true
	}
	if a, ok := inetPton6(buf); ok {
		addr = a
	} else {
		hasPort = false
		if i := strings.LastIndexByte(buf, ':'); i >= 0 {
			buf, portStr, hasPort = buf[:i], buf[i+1:], true
		}
		a, ok := inetAton(buf)
		if !ok {
			return netip.Addr{}, 0, 0
		}
		addr = a
	}
	found = foundAddr
	if hasPort {
		found |= foundPort
		if n, ok := stringToNumber(portStr, 0, 65535); ok {
			port = uint16(n)
		} else if p, ok := serviceToPort(portStr, proto); ok {
			port = p
		} else {
			return netip.Addr{}, 0, 0
		}
	}
	return addr, port, found
}

// allDigits is ipvsadm's str_is_digit: true for "" too.
func allDigits(s string) bool {
	for i := 0; i < len(s); i++ {
		if !isDigit(s[i]) {
			return false
		}
	}
	return true
}

// Port names. getservbyname/getservbyport read /etc/services; xlb reads it
// too if it is there, and otherwise uses a small table of the usual names.

type servEntry struct {
	name    string
	aliases []string
	port    uint16
	proto   string // "tcp", "udp", "sctp"
}

var builtinServices = func() []servEntry {
	var out []servEntry
	for _, e := range []struct {
		name    string
		port    uint16
		aliases []string
	}{
		{"ftp-data", 20, nil}, {"ftp", 21, nil}, {"ssh", 22, nil},
		{"telnet", 23, nil}, {"smtp", 25, []string{"mail"}},
		{"domain", 53, nil}, {"http", 80, []string{"www"}},
		{"kerberos", 88, nil}, {"pop3", 110, []string{"pop-3"}},
		{"sunrpc", 111, []string{"portmapper"}}, {"ntp", 123, nil},
		{"imap2", 143, []string{"imap"}}, {"snmp", 161, nil},
		{"ldap", 389, nil}, {"https", 443, nil},
		{"submissions", 465, []string{"ssmtp", "smtps"}},
		{"syslog", 514, nil}, {"submission", 587, nil},
		{"ldaps", 636, nil}, {"imaps", 993, nil}, {"pop3s", 995, nil},
		{"openvpn", 1194, nil}, {"mysql", 3306, nil},
		{"postgresql", 5432, []string{"postgres"}},
		{"http-alt", 8080, []string{"webcache"}},
	} {
		for _, p := range []string{"tcp", "udp"} {
			out = append(out, servEntry{e.name, e.aliases, e.port, p})
		}
	}
	return out
}()

// services is the port-name table: /etc/services if readable, else the
// built-in one. Tests replace it with the built-in table.
var services = sync.OnceValue(func() []servEntry {
	f, err := os.Open("/etc/services")
	if err != nil {
		return builtinServices
	}
	defer f.Close()
	t := parseServices(bufio.NewScanner(f))
	if len(t) == 0 {
		return builtinServices
	}
	return t
})

// parseServices reads services(5) lines: "name port/proto [aliases] [# ...]".
func parseServices(sc *bufio.Scanner) []servEntry {
	var out []servEntry
	for sc.Scan() {
		line := sc.Text()
		if i := strings.IndexByte(line, '#'); i >= 0 {
			line = line[:i]
		}
		f := strings.Fields(line)
		if len(f) < 2 {
			continue
		}
		pn, proto, ok := strings.Cut(f[1], "/")
		if !ok {
			continue
		}
		p, err := strconv.ParseUint(pn, 10, 16)
		if err != nil {
			continue
		}
		out = append(out, servEntry{f[0], f[2:], uint16(p), proto})
	}
	return out
}

func protoName(p ipvs.Proto) string {
	switch p {
	case ipvs.TCP:
		return "tcp"
	case ipvs.UDP:
		return "udp"
	case ipvs.SCTP:
		return "sctp"
	}
	return ""
}

// serviceToPort is getservbyname(name, proto) for TCP, UDP and SCTP.
func serviceToPort(name string, proto ipvs.Proto) (uint16, bool) {
	pn := protoName(proto)
	if pn == "" {
		return 0, false
	}
	for _, e := range services() {
		if e.proto != pn {
			continue
		}
		if e.name == name {
			return e.port, true
		}
		for _, a := range e.aliases {
			if a == name {
				return e.port, true
			}
		}
	}
	return 0, false
}

// portToService is getservbyport(port, proto): the official name.
func portToService(port uint16, proto ipvs.Proto) (string, bool) {
	pn := protoName(proto)
	if pn == "" {
		return "", false
	}
	for _, e := range services() {
		if e.proto == pn && e.port == port {
			return e.name, true
		}
	}
	return "", false
}
