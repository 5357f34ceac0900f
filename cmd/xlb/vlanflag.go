package main

import (
	"fmt"
	"strconv"
	"strings"
)

// vlanList is the repeatable --vlan flag: VLAN IDs, each 1-4094, also
// comma-separated.
type vlanList []uint16

func (v *vlanList) String() string {
	s := make([]string, len(*v))
	for i, id := range *v {
		s[i] = strconv.Itoa(int(id))
	}
	return strings.Join(s, ",")
}

func (v *vlanList) Set(s string) error {
	for _, f := range strings.Split(s, ",") {
		id, err := strconv.ParseUint(strings.TrimSpace(f), 10, 16)
		if err != nil || id < 1 || id > 4094 {
			return fmt.Errorf("invalid vlan %q: must be 1-4094", f)
		}
		*v = append(*v, uint16(id))
	}
	return nil
}

// ifaceList is the repeatable --iface flag: interface names, in order,
// each once.
type ifaceList []string

func (l *ifaceList) String() string { return strings.Join(*l, ",") }

func (l *ifaceList) Set(s string) error {
	if s == "" {
		return fmt.Errorf("invalid interface %q: empty name", s)
	}
	for _, n := range *l {
		if n == s {
			return fmt.Errorf("invalid interface %q: given twice", s)
		}
	}
	*l = append(*l, s)
	return nil
}
