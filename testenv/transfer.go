//go:build linux

package testenv

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"
	"math/rand/v2"
	"net"
	"net/netip"
	"strings"
	"sync"
	"time"
)

// BulkBytes is the size of the bulk transfer check: 16 MiB over
// one TCP connection through the VIP, compared by hash.
const BulkBytes = 16 << 20

// The transfer protocol, spoken by every real server on Options.HashPort
// (and by the selftest server on its port):
//
//	client -> server: 8-byte big-endian D, then the upload until FIN
//	server -> client: its name and "\n", the SHA-256 of the upload
//	                  (32 bytes), D random bytes, their SHA-256 (32 bytes)
//
// The server answers only after the client's FIN, so an upload that lost
// or changed a byte is caught by the first hash and a download by the
// second. Random bytes defeat any compression and hit every byte value.

// serveTransfers serves the transfer protocol on ln and returns the
// function that stops it and waits for its connections.
func serveTransfers(ln net.Listener, name string) func() error {
	var wg sync.WaitGroup
	var mu sync.Mutex
	conns := map[net.Conn]bool{}
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns[c] = true
			mu.Unlock()
			wg.Add(1)
			go func() {
				defer wg.Done()
				serveTransfer(c, name)
				mu.Lock()
				delete(conns, c)
				mu.Unlock()
				c.Close()
			}()
		}
	}()
	return func() error {
		ln.Close()
		mu.Lock()
		for c := range conns {
			c.Close()
		}
		mu.Unlock()
		wg.Wait()
		return nil
	}
}

func serveTransfer(c net.Conn, name string) {
	// Bounded: a client that never finishes cannot pin the goroutine.
	c.SetDeadline(time.Now().Add(2 * time.Minute))
	var hdr [8]byte
	if _, err := io.ReadFull(c, hdr[:]); err != nil {
		return
	}
	down := binary.BigEndian.Uint64(hdr[:])
	up := sha256.New()
	if _, err := io.Copy(up, c); err != nil {
		return
	}
	w := bufio.NewWriterSize(c, 64<<10)
	fmt.Fprintf(w, "%s\n", name)
	w.Write(up.Sum(nil))
	dh := sha256.New()
	if err := copyRandom(io.MultiWriter(w, dh), int64(down), uint64(down)); err != nil {
		return
	}
	w.Write(dh.Sum(nil))
	w.Flush()
}

// copyRandom writes n pseudo-random bytes (ChaCha8 from seed) to w.
func copyRandom(w io.Writer, n int64, seed uint64) error {
	var key [32]byte
	binary.LittleEndian.PutUint64(key[:], seed)
	binary.LittleEndian.PutUint64(key[8:], uint64(time.Now().UnixNano()))
	_, err := io.CopyN(w, rand.NewChaCha8(key), n)
	return err
}

// Transfer opens one TCP connection from h to dst (through a VIP, or to
// a server directly), uploads up random bytes, downloads down random
// bytes, and checks both by SHA-256 against the server's transfer sink.
// It returns the name of the server that answered. Any corruption,
// truncation or stall past timeout is an error.
func (h *Host) Transfer(dst netip.AddrPort, up, down int64, timeout time.Duration) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	c, err := h.DialContext(ctx, tcpNetwork(dst.Addr()), dst.String())
	if err != nil {
		return "", fmt.Errorf("transfer to %v: %w", dst, err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(timeout))
	fail := func(what string, err error) (string, error) {
		return "", fmt.Errorf("transfer %d up, %d down to %v: %s: %w", up, down, dst, what, err)
	}
	var hdr [8]byte
	binary.BigEndian.PutUint64(hdr[:], uint64(down))
	uh := sha256.New()
	bw := bufio.NewWriterSize(c, 64<<10)
	bw.Write(hdr[:])
	if err := copyRandom(io.MultiWriter(bw, uh), up, uint64(up)); err != nil {
		return fail("upload", err)
	}
	if err := bw.Flush(); err != nil {
		return fail("upload", err)
	}
	if err := c.(*net.TCPConn).CloseWrite(); err != nil {
		return fail("close upload", err)
	}
	br := bufio.NewReaderSize(c, 64<<10)
	name, err := br.ReadString('\n')
	if err != nil {
		return fail("read server name", err)
	}
	name = strings.TrimSuffix(name, "\n")
	if err := expectSum(br, uh); err != nil {
		return name, fmt.Errorf("transfer to %v (%s): upload: %w", dst, name, err)
	}
	dh := sha256.New()
	if n, err := io.CopyN(dh, br, down); err != nil {
		return name, fmt.Errorf("transfer to %v (%s): download: %d of %d bytes: %w", dst, name, n, down, err)
	}
	if err := expectSum(br, dh); err != nil {
		return name, fmt.Errorf("transfer to %v (%s): download: %w", dst, name, err)
	}
	return name, nil
}

// SendRandom is Transfer with an upload only: n random bytes sent through
// dst and compared, ipvs.sh's check.
func (h *Host) SendRandom(dst netip.AddrPort, n int64, timeout time.Duration) (string, error) {
	return h.Transfer(dst, n, 0, timeout)
}

var errHashMismatch = errors.New("sha-256 mismatch: bytes were lost or changed")

func expectSum(r io.Reader, h hash.Hash) error {
	var got [sha256.Size]byte
	if _, err := io.ReadFull(r, got[:]); err != nil {
		return fmt.Errorf("read hash: %w", err)
	}
	if want := h.Sum(nil); !bytes.Equal(got[:], want) {
		return fmt.Errorf("%w: got %s, want %s", errHashMismatch, hex.EncodeToString(got[:]), hex.EncodeToString(want))
	}
	return nil
}

func tcpNetwork(a netip.Addr) string {
	if a.Is4() || a.Is4In6() {
		return "tcp4"
	}
	return "tcp6"
}
