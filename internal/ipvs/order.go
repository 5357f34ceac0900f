package ipvs

import (
	"encoding/binary"
	"net/netip"
	"slices"
)

// KernelDests returns s's destinations in IPVS's list order: newest first
// (list_add at the head of svc->destinations). Schedulers see this order,
// and ipvsadm --nosort lists it.
func (s *Service) KernelDests() []Dest {
	d := slices.Clone(s.Dests)
	slices.Reverse(d)
	return d
}

// The address families as ipvsadm compares them (AF_INET, AF_INET6).
const (
	afInet  = 2
	afInet6 = 10
)

func family(ipv6 bool) int {
	if ipv6 {
		return afInet6
	}
	return afInet
}

// addrWords is an address as the four 32-bit words of union nf_inet_addr,
// in host order: an IPv4 address fills the first word, the rest are zero.
func addrWords(a netip.Addr) [4]uint32 {
	var w [4]uint32
	b := a.AsSlice() // nil for the zero Addr
	for i := 0; i+4 <= len(b); i += 4 {
		w[i/4] = binary.BigEndian.Uint32(b[i:])
	}
	return w
}

// diff32 is C's `int r = a - b` for unsigned 32-bit a and b: the
// difference wraps, so values more than 2^31 apart compare backwards.
func diff32(a, b uint32) int { return int(int32(a - b)) }

// compareAddrs is the address part of libipvs's ipvs_cmp_services and
// ipvs_cmp_dests: one word for IPv4, up to four for IPv6, each compared
// with diff32. The family of the first operand decides.
func compareAddrs(ipv6 bool, a, b [4]uint32) int {
	if !ipv6 {
		return diff32(a[0], b[0])
	}
	r := 0
	for i := 0; r == 0 && i < 4; i++ {
		r = diff32(a[i], b[i])
	}
	return r
}

// CompareServices orders service keys as ipvsadm lists them
// (libipvs ipvs_cmp_services): by firewall mark, family, protocol,
// address, port. Marks and addresses are compared by 32-bit unsigned
// subtraction read as a signed int, so 192.168.0.1 sorts before 10.0.0.1
// (their difference exceeds 2^31) and the order is not transitive.
func CompareServices(a, b ServiceKey) int {
	if r := diff32(a.FWMark, b.FWMark); r != 0 {
		return r
	}
	if r := family(a.IPv6()) - family(b.IPv6()); r != 0 {
		return r
	}
	if r := int(kernelProto(a)) - int(kernelProto(b)); r != 0 {
		return r
	}
	if r := compareAddrs(a.IPv6(), addrWords(a.Addr), addrWords(b.Addr)); r != 0 {
		return r
	}
	return int(a.Port) - int(b.Port)
}

// kernelProto is the protocol IPVS reports: TCP for firewall-mark services.
func kernelProto(k ServiceKey) Proto {
	if k.IsFWMark() {
		return TCP
	}
	return k.Proto
}

// CompareDests orders destinations as ipvsadm lists them
// (ipvs_cmp_dests): by address, then port, with CompareServices's
// wrapping comparison; a's family decides how many words are compared.
func CompareDests(a, b *Dest) int {
	if r := compareAddrs(a.Addr.Is6(), addrWords(a.Addr), addrWords(b.Addr)); r != 0 {
		return r
	}
	return int(a.Port) - int(b.Port)
}

// SortedServices returns svcs in ipvsadm's listing order. Because
// CompareServices is not a total order, the algorithm matters: this is
// glibc qsort's top-down merge sort, which ipvsadm's qsort runs. IPVS hands
// ipvsadm its services in hash-table order, which depends on kernel
// pointers; xlb starts from svcs's order.
func SortedServices(svcs []Service) []Service {
	out := slices.Clone(svcs)
	mergeSort(out, func(a, b *Service) int { return CompareServices(a.Key, b.Key) })
	return out
}

// SortedDests returns s's destinations in ipvsadm's listing order: the
// kernel list (newest first) merge-sorted with CompareDests.
func (s *Service) SortedDests() []Dest {
	out := s.KernelDests()
	mergeSort(out, CompareDests)
	return out
}

// mergeSort sorts s as glibc's msort_with_tmp does: split at n/2, sort
// both halves, merge taking from the left while cmp(left, right) <= 0.
func mergeSort[T any](s []T, cmp func(a, b *T) int) {
	tmp := make([]T, len(s))
	msort(s, tmp, cmp)
}

func msort[T any](b, tmp []T, cmp func(a, b *T) int) {
	n := len(b)
	if n <= 1 {
		return
	}
	n1 := n / 2
	b1, b2 := b[:n1], b[n1:]
	msort(b1, tmp, cmp)
	msort(b2, tmp, cmp)
	t := tmp[:0]
	i, j := 0, 0
	for i < len(b1) && j < len(b2) {
		if cmp(&b1[i], &b2[j]) <= 0 {
			t = append(t, b1[i])
			i++
		} else {
			t = append(t, b2[j])
			j++
		}
	}
	t = append(t, b1[i:]...)
	// What is left of b2 is already in place.
	copy(b, t)
}
