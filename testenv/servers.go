//go:build linux

package testenv

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"time"
)

// startServers runs an HTTP server, UDP echo servers and the transfer
// sink (see Host.Transfer) on h, all answering with h's name, until the
// topology is closed. A UDP server answers from the address it was asked
// on only if its socket is bound to that address (an unbound one answers
// from the route's source, which a DR client rejects), so there is one UDP
// socket per address: h's own (IPv4 and IPv6) and each valid one of addrs
// (the VIPs on a DR real server). TCP listens on every address, IPv6 too
// when the topology has IPv6.
func (env *Env) startServers(h *Host, addrs ...netip.Addr) error {
	var ln, tln net.Listener
	var pcs []net.PacketConn
	tcp := "tcp4"
	if h.Addr6.IsValid() {
		tcp = "tcp" // [::] with IPv4-mapped addresses: both families
	}
	err := h.Do(func() (err error) {
		if ln, err = net.Listen(tcp, fmt.Sprintf(":%d", env.opts.HTTPPort)); err != nil {
			return fmt.Errorf("listen on tcp port %d in %s: %w", env.opts.HTTPPort, h.NSName, err)
		}
		if tln, err = net.Listen(tcp, fmt.Sprintf(":%d", env.opts.HashPort)); err != nil {
			return fmt.Errorf("listen on tcp port %d in %s: %w", env.opts.HashPort, h.NSName, err)
		}
		for _, a := range append([]netip.Addr{h.Addr, h.Addr6}, addrs...) {
			if !a.IsValid() {
				continue
			}
			pc, err := net.ListenPacket(udpNetwork(a), netip.AddrPortFrom(a, env.opts.UDPPort).String())
			if err != nil {
				return fmt.Errorf("listen on udp %v in %s: %w", netip.AddrPortFrom(a, env.opts.UDPPort), h.NSName, err)
			}
			pcs = append(pcs, pc)
		}
		return nil
	})
	if tln != nil {
		env.closers = append(env.closers, serveTransfers(tln, h.Name))
	}
	closeUDP := func() {
		for _, pc := range pcs {
			pc.Close()
		}
	}
	if err != nil {
		closeUDP()
		if ln != nil {
			ln.Close()
		}
		return err
	}
	srv := &http.Server{
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			io.WriteString(w, h.Name)
		}),
		ReadHeaderTimeout: 5 * time.Second,
	}
	go srv.Serve(ln)
	for _, pc := range pcs {
		go func() {
			buf := make([]byte, 2048)
			for {
				_, from, err := pc.ReadFrom(buf)
				if err != nil {
					return
				}
				pc.WriteTo([]byte(h.Name), from)
			}
		}()
	}
	env.closers = append(env.closers, func() error {
		closeUDP()
		return srv.Close() // closes ln too
	})
	return nil
}

// DialContext dials from inside h's namespace, from a local port no
// earlier dial of h used (see nextPort), so every dial is a new flow.
func (h *Host) DialContext(ctx context.Context, network, addr string) (net.Conn, error) {
	var c net.Conn
	err := h.Do(func() (err error) {
		d := net.Dialer{LocalAddr: localAddr(network, h.nextPort())}
		c, err = d.DialContext(ctx, network, addr)
		return err
	})
	return c, err
}

// Client source ports come from firstPort..lastPort in turn, below the
// kernel's ephemeral range: the kernel may hand a new socket a port whose
// flow is still in a load balancer's connection table, and that flow then
// goes where the old one went, as with IPVS, which makes a test of
// scheduling decisions flaky.
const firstPort, lastPort = 10000, 30000

func (h *Host) nextPort() uint16 {
	return uint16(firstPort + h.ports.Add(1)%(lastPort-firstPort))
}

func localAddr(network string, port uint16) net.Addr {
	if strings.HasPrefix(network, "udp") {
		return &net.UDPAddr{Port: int(port)}
	}
	return &net.TCPAddr{Port: int(port)}
}

// HTTPClient returns an HTTP client whose connections start in h's
// namespace. With keepAlive false every request opens a new connection.
func (h *Host) HTTPClient(keepAlive bool, timeout time.Duration) *http.Client {
	return &http.Client{
		Timeout: timeout,
		Transport: &http.Transport{
			DialContext:       h.DialContext,
			DisableKeepAlives: !keepAlive,
			MaxIdleConns:      1,
		},
	}
}

// Get fetches url with c and returns the body (a real server's name).
func Get(c *http.Client, url string) (string, error) {
	resp, err := c.Get(url)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return "", fmt.Errorf("read body of %s: %w", url, err)
	}
	if resp.StatusCode != http.StatusOK {
		return "", fmt.Errorf("get %s: status %s", url, resp.Status)
	}
	return string(b), nil
}

// QueryUDP sends one datagram from a new socket in h to addr and returns
// the answer (a real server's name). Each call is a new UDP flow.
func (h *Host) QueryUDP(addr netip.AddrPort, timeout time.Duration) (string, error) {
	c, err := h.DialContext(context.Background(), udpNetwork(addr.Addr()), addr.String())
	if err != nil {
		return "", err
	}
	defer c.Close()
	return exchangeUDP(c, timeout)
}

// UDPConn opens a UDP socket in h connected to addr, for several queries
// on one flow (see ExchangeUDP).
func (h *Host) UDPConn(addr netip.AddrPort) (net.Conn, error) {
	return h.DialContext(context.Background(), udpNetwork(addr.Addr()), addr.String())
}

// udpNetwork is "udp4" or "udp6" for a's family.
func udpNetwork(a netip.Addr) string {
	if a.Is4() || a.Is4In6() {
		return "udp4"
	}
	return "udp6"
}

// ExchangeUDP sends one query on c and returns the answer.
func ExchangeUDP(c net.Conn, timeout time.Duration) (string, error) {
	return exchangeUDP(c, timeout)
}

// exchangeUDP retries a lost datagram a few times, as a DNS client would.
func exchangeUDP(c net.Conn, timeout time.Duration) (string, error) {
	buf := make([]byte, 256)
	const tries = 3
	var err error
	for i := 0; i < tries; i++ {
		if _, err = c.Write([]byte("who")); err != nil {
			return "", fmt.Errorf("send udp to %v: %w", c.RemoteAddr(), err)
		}
		c.SetReadDeadline(time.Now().Add(timeout / tries))
		var n int
		n, err = c.Read(buf)
		if err == nil {
			return string(buf[:n]), nil
		}
		var ne net.Error
		if !errors.As(err, &ne) || !ne.Timeout() {
			break
		}
	}
	return "", fmt.Errorf("query udp %v: %w", c.RemoteAddr(), err)
}

// UDPListen opens a UDP socket in h bound to a: a client port that a
// tunnelled or forwarded reply must reach.
func (h *Host) UDPListen(a netip.AddrPort) (*net.UDPConn, error) {
	var c *net.UDPConn
	err := h.Do(func() (err error) {
		c, err = net.ListenUDP(udpNetwork(a.Addr()), net.UDPAddrFromAddrPort(a))
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("listen on udp %v in %s: %w", a, h.NSName, err)
	}
	return c, nil
}
