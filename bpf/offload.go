//go:build linux

package bpf

import (
	"bytes"
	"errors"
	"fmt"
	"net"
	"runtime"
	"unsafe"

	"golang.org/x/sys/unix"
)

// rx-vlan offload: a NIC that strips VLAN tags into the RX descriptor hides
// them from an XDP program that is not device-bound, and always from one
// attached in generic mode (the tag sits in skb metadata). Attach turns
// the offload off, as `ethtool -K IF rxvlan off rx-vlan-stag-hw-parse off`
// does, so that tags stay in the frame, and its link's Close restores it.

// errOffloadFixed: the driver does not let rx-vlan offload be turned off.
var errOffloadFixed = errors.New("fixed on by the driver")

// Netdev feature names (ETH_SS_FEATURES strings) of receive VLAN offload.
// ETH_SS_FEATURES and ETH_GSTRING_LEN, linux/ethtool.h.
const (
	ethSSFeatures = 4
	ethGStringLen = 32
)

var vlanRxFeatures = []string{"rx-vlan-hw-parse", "rx-vlan-stag-hw-parse"}

type ifreqData struct {
	name [unix.IFNAMSIZ]byte
	data unsafe.Pointer
	_    [16]byte // rest of struct ifreq
}

func ethtool(ifname string, data unsafe.Pointer) error {
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	var ifr ifreqData
	copy(ifr.name[:], ifname)
	ifr.data = data
	_, _, errno := unix.Syscall(unix.SYS_IOCTL, uintptr(fd), unix.SIOCETHTOOL, uintptr(unsafe.Pointer(&ifr)))
	runtime.KeepAlive(&ifr)
	if errno != 0 {
		return errno
	}
	return nil
}

// featureIndices returns the bit index of each name in the interface's
// feature strings, -1 if it has none.
func featureIndices(ifname string, names []string) ([]int, error) {
	info := struct {
		cmd      uint32
		reserved uint32
		mask     uint64
		count    uint32
	}{cmd: unix.ETHTOOL_GSSET_INFO, mask: 1 << ethSSFeatures}
	if err := ethtool(ifname, unsafe.Pointer(&info)); err != nil {
		return nil, fmt.Errorf("count features: %w", err)
	}
	n := int(info.count)
	buf := make([]byte, 12+n*ethGStringLen)
	*(*uint32)(unsafe.Pointer(&buf[0])) = unix.ETHTOOL_GSTRINGS
	*(*uint32)(unsafe.Pointer(&buf[4])) = ethSSFeatures
	*(*uint32)(unsafe.Pointer(&buf[8])) = uint32(n)
	if err := ethtool(ifname, unsafe.Pointer(&buf[0])); err != nil {
		return nil, fmt.Errorf("read feature names: %w", err)
	}
	idx := make([]int, len(names))
	for i := range idx {
		idx[i] = -1
	}
	for i := 0; i < n; i++ {
		s := buf[12+i*ethGStringLen : 12+(i+1)*ethGStringLen]
		if z := bytes.IndexByte(s, 0); z >= 0 {
			s = s[:z]
		}
		for j, name := range names {
			if string(s) == name {
				idx[j] = i
			}
		}
	}
	return idx, nil
}

// features reads the active feature bits as blocks of 32.
func features(ifname string, blocks int) ([]uint32, error) {
	buf := make([]uint32, 2+4*blocks) // cmd, size, {available, requested, active, never_changed}...
	buf[0], buf[1] = unix.ETHTOOL_GFEATURES, uint32(blocks)
	if err := ethtool(ifname, unsafe.Pointer(&buf[0])); err != nil {
		return nil, fmt.Errorf("read features: %w", err)
	}
	active := make([]uint32, blocks)
	for i := range active {
		active[i] = buf[2+4*i+2]
	}
	return active, nil
}

// setFeatures sets the bits idx to on.
func setFeatures(ifname string, idx []int, on bool) error {
	max := 0
	for _, i := range idx {
		max = maxInt(max, i)
	}
	blocks := max/32 + 1
	buf := make([]uint32, 2+2*blocks) // cmd, size, {valid, requested}...
	buf[0], buf[1] = unix.ETHTOOL_SFEATURES, uint32(blocks)
	for _, i := range idx {
		buf[2+2*(i/32)] |= 1 << (i % 32)
		if on {
			buf[2+2*(i/32)+1] |= 1 << (i % 32)
		}
	}
	if err := ethtool(ifname, unsafe.Pointer(&buf[0])); err != nil {
		return fmt.Errorf("set features: %w", err)
	}
	return nil
}

func maxInt(a, b int) int {
	if a > b {
		return a
	}
	return b
}

// disableVLANOffload turns receive VLAN offload off on ifindex and returns
// the function that turns back on what it turned off. An interface without
// the features (loopback) is left alone; one whose offload cannot be
// turned off is an error.
func disableVLANOffload(ifindex int) (restore func() error, err error) {
	ifc, err := net.InterfaceByIndex(ifindex)
	if err != nil {
		return nil, fmt.Errorf("disable rx-vlan offload: %w", err)
	}
	idx, err := featureIndices(ifc.Name, vlanRxFeatures)
	if err != nil {
		if errors.Is(err, unix.EOPNOTSUPP) {
			return func() error { return nil }, nil
		}
		return nil, fmt.Errorf("disable rx-vlan offload on %s: %w", ifc.Name, err)
	}
	var have []int
	for _, i := range idx {
		if i >= 0 {
			have = append(have, i)
		}
	}
	noop := func() error { return nil }
	if len(have) == 0 {
		return noop, nil
	}
	max := 0
	for _, i := range have {
		max = maxInt(max, i)
	}
	active, err := features(ifc.Name, max/32+1)
	if err != nil {
		return nil, fmt.Errorf("disable rx-vlan offload on %s: %w", ifc.Name, err)
	}
	var on []int
	for _, i := range have {
		if active[i/32]&(1<<(i%32)) != 0 {
			on = append(on, i)
		}
	}
	if len(on) == 0 {
		return noop, nil
	}
	if err := setFeatures(ifc.Name, on, false); err != nil {
		return nil, fmt.Errorf("disable rx-vlan offload on %s: %w", ifc.Name, err)
	}
	// SFEATURES may accept a request it cannot honour (a fixed feature):
	// check that the offload is really off.
	if active, err = features(ifc.Name, max/32+1); err != nil {
		return nil, fmt.Errorf("disable rx-vlan offload on %s: %w", ifc.Name, err)
	}
	for _, i := range on {
		if active[i/32]&(1<<(i%32)) != 0 {
			setFeatures(ifc.Name, on, true)
			return nil, fmt.Errorf("disable rx-vlan offload on %s: %s: %w", ifc.Name, vlanRxFeatures[indexOf(idx, i)], errOffloadFixed)
		}
	}
	name := ifc.Name
	return func() error {
		if err := setFeatures(name, on, true); err != nil {
			return fmt.Errorf("restore rx-vlan offload on %s: %w", name, err)
		}
		return nil
	}, nil
}

func indexOf(s []int, v int) int {
	for i, x := range s {
		if x == v {
			return i
		}
	}
	return 0
}
