package health

import (
	"bufio"
	"bytes"
	"context"
	"crypto/md5"
	"crypto/tls"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"strconv"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// maxBody bounds the body read for a digest: 16 MiB, far more than a
// health page, so that a server streaming forever fails at the deadline
// rather than growing the director's memory.
const maxBody = 16 << 20

// noWeight is a probe result that leaves the weight as it is.
const noWeight = -1

// probe runs one check of the real server rs once. It returns the
// weight a misc_dynamic script set (noWeight otherwise) and the reason
// the check failed, nil if it passed. Each connection (each URL of an
// HTTP_GET) has connect_timeout to complete; a script has misc_timeout.
func (c *Check) probe(ctx context.Context, rs netip.AddrPort) (int32, error) {
	dst := c.target(rs)
	if c.Kind == HTTPGet || c.Kind == SSLGet {
		for i := range c.URLs {
			uctx, cancel := context.WithTimeout(ctx, c.ConnectTimeout)
			err := c.get(uctx, dst, &c.URLs[i])
			cancel()
			if err != nil {
				return noWeight, err
			}
		}
		return noWeight, nil
	}
	timeout := c.ConnectTimeout
	if c.Kind == MiscCheck {
		timeout = c.MiscTimeout
		if timeout == 0 {
			timeout = c.DelayLoop
		}
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	switch c.Kind {
	case TCPCheck:
		conn, err := c.dial(ctx, "tcp", dst)
		if err != nil {
			return noWeight, err
		}
		conn.Close()
		return noWeight, nil
	case UDPCheck:
		return noWeight, c.udp(ctx, dst)
	case PingCheck:
		return noWeight, c.ping(ctx, dst.Addr())
	case MiscCheck:
		return c.misc(ctx)
	}
	return noWeight, fmt.Errorf("run %s: unknown checker", c.Kind)
}

// dial connects to dst from the checker's source, interface and mark.
func (c *Check) dial(ctx context.Context, network string, dst netip.AddrPort) (net.Conn, error) {
	d := net.Dialer{Control: c.control}
	if c.BindTo.IsValid() || c.BindPort != 0 {
		src := netip.AddrPortFrom(c.BindTo, c.BindPort)
		if network == "udp" {
			d.LocalAddr = net.UDPAddrFromAddrPort(src)
		} else {
			d.LocalAddr = net.TCPAddrFromAddrPort(src)
		}
	}
	conn, err := d.DialContext(ctx, network, dst.String())
	if err != nil {
		return nil, fmt.Errorf("connect %s: %w", dst, unwrapOp(err))
	}
	if dl, ok := ctx.Deadline(); ok {
		conn.SetDeadline(dl)
	}
	return conn, nil
}

// control applies bind_if and fwmark to a probe's socket.
func (c *Check) control(_, _ string, rc syscall.RawConn) error {
	if c.BindIf == "" && c.FWMark == 0 {
		return nil
	}
	var serr error
	err := rc.Control(func(fd uintptr) {
		if c.BindIf != "" {
			if serr = unix.BindToDevice(int(fd), c.BindIf); serr != nil {
				serr = fmt.Errorf("bind to device %s: %w", c.BindIf, serr)
				return
			}
		}
		if c.FWMark != 0 {
			if serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_MARK, int(c.FWMark)); serr != nil {
				serr = fmt.Errorf("set fwmark %d: %w", c.FWMark, serr)
			}
		}
	})
	if err != nil {
		return err
	}
	return serr
}

// unwrapOp drops net.OpError's repetition of the addresses.
func unwrapOp(err error) error {
	var op *net.OpError
	if errors.As(err, &op) && op.Err != nil {
		if errors.Is(err, context.DeadlineExceeded) || op.Timeout() {
			return errTimeout
		}
		return op.Err
	}
	if errors.Is(err, context.DeadlineExceeded) {
		return errTimeout
	}
	return err
}

var errTimeout = errors.New("timeout")

// get fetches u as keepalived's HTTP_GET does: a new connection per URL,
// an HTTP/1.0 GET with keepalived's User-Agent, the status checked
// against status_code and the body's MD5 against digest.
func (c *Check) get(ctx context.Context, dst netip.AddrPort, u *URL) error {
	conn, err := c.dial(ctx, "tcp", dst)
	if err != nil {
		return err
	}
	defer conn.Close()
	host := u.VirtualHost
	if host == "" {
		host = c.VirtualHost
	}
	if c.Kind == SSLGet {
		tc := tls.Client(conn, &tls.Config{
			// keepalived does not verify the certificate: a health
			// check asks whether the server answers, not who it is.
			InsecureSkipVerify: true,
			ServerName:         sniName(c, host),
		})
		if err := tc.HandshakeContext(ctx); err != nil {
			return fmt.Errorf("tls handshake with %s: %w", dst, unwrapOp(err))
		}
		conn = tc
	}
	if host == "" {
		host = dst.Addr().String()
		if dst.Addr().Is6() {
			host = "[" + host + "]"
		}
		if p := dst.Port(); (c.Kind == HTTPGet && p != 80) || (c.Kind == SSLGet && p != 443) {
			host += ":" + strconv.Itoa(int(p))
		}
	}
	req := "GET " + u.Path + " HTTP/1.0\r\nUser-Agent: KeepAliveClient\r\nHost: " + host + "\r\n\r\n"
	if _, err := io.WriteString(conn, req); err != nil {
		return fmt.Errorf("send GET %s to %s: %w", u.Path, dst, unwrapOp(err))
	}
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		return fmt.Errorf("read reply to GET %s from %s: %w", u.Path, dst, unwrapOp(err))
	}
	defer resp.Body.Close()
	if !statusOK(u.StatusCodes, resp.StatusCode) {
		return fmt.Errorf("GET %s from %s: status %d", u.Path, dst, resp.StatusCode)
	}
	if u.Digest == "" {
		return nil
	}
	h := md5.New()
	n, err := io.Copy(h, io.LimitReader(resp.Body, maxBody+1))
	if err != nil {
		return fmt.Errorf("read body of %s from %s: %w", u.Path, dst, unwrapOp(err))
	}
	if n > maxBody {
		return fmt.Errorf("read body of %s from %s: longer than %d bytes", u.Path, dst, maxBody)
	}
	if got := hex.EncodeToString(h.Sum(nil)); got != u.Digest {
		return fmt.Errorf("GET %s from %s: digest %s, want %s", u.Path, dst, got, u.Digest)
	}
	return nil
}

func sniName(c *Check, host string) string {
	if c.EnableSNI {
		return host
	}
	return ""
}

// udp sends the payload and waits connect_timeout for a reply. An ICMP
// error (port unreachable) fails the check; silence passes unless a reply
// is required, as keepalived's UDP_CHECK.
func (c *Check) udp(ctx context.Context, dst netip.AddrPort) error {
	conn, err := c.dial(ctx, "udp", dst)
	if err != nil {
		return err
	}
	defer conn.Close()
	if _, err := conn.Write(c.Payload); err != nil {
		return fmt.Errorf("send to %s: %w", dst, unwrapOp(err))
	}
	buf := make([]byte, 65536)
	n, err := conn.Read(buf)
	if err != nil {
		if errors.Is(err, errTimeout) || errors.Is(unwrapOp(err), errTimeout) {
			if c.RequireReply {
				return fmt.Errorf("no reply from %s: %w", dst, errTimeout)
			}
			return nil
		}
		return fmt.Errorf("receive from %s: %w", dst, unwrapOp(err))
	}
	if !c.RequireReply {
		return nil
	}
	reply := buf[:n]
	switch {
	case n < c.MinReplyLen:
		return fmt.Errorf("reply from %s: %d bytes, want at least %d", dst, n, c.MinReplyLen)
	case c.MaxReplyLen > 0 && n > c.MaxReplyLen:
		return fmt.Errorf("reply from %s: %d bytes, want at most %d", dst, n, c.MaxReplyLen)
	case !bytes.HasPrefix(reply, c.ReplyPrefix):
		return fmt.Errorf("reply from %s does not start with %x", dst, c.ReplyPrefix)
	}
	return nil
}

// deadlineOf is ctx's deadline, or now plus d.
func deadlineOf(ctx context.Context, d time.Duration) time.Time {
	if dl, ok := ctx.Deadline(); ok {
		return dl
	}
	return time.Now().Add(d)
}
