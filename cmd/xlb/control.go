package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"os"
	"time"
)

const defaultSocket = "/run/xlb.sock"

// request is one ipvsadm command line sent to the daemon; response is
// what ipvsadm would have printed and its exit code.
type request struct {
	Args  []string `json:"args"`
	Stdin string   `json:"stdin,omitempty"` // for -R
}

type response struct {
	Stdout string `json:"stdout"`
	Stderr string `json:"stderr"`
	Code   int    `json:"code"`
}

// listenControl opens the daemon's control socket, replacing a stale one.
func listenControl(path string) (net.Listener, error) {
	if c, err := net.DialTimeout("unix", path, 200*time.Millisecond); err == nil {
		c.Close()
		return nil, fmt.Errorf("control socket %s: another xlb daemon is running", path)
	}
	os.Remove(path)
	ln, err := net.Listen("unix", path)
	if err != nil {
		return nil, fmt.Errorf("listen on control socket %s: %w", path, err)
	}
	if err := os.Chmod(path, 0o600); err != nil {
		ln.Close()
		return nil, fmt.Errorf("restrict control socket %s: %w", path, err)
	}
	return ln, nil
}

// serve answers control requests, one at a time, until ctx ends or ln is
// closed.
func (s *server) serve(ctx context.Context, ln net.Listener) {
	go func() {
		<-ctx.Done()
		ln.Close()
	}()
	for {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		s.handleConn(c)
	}
}

func (s *server) handleConn(c net.Conn) {
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	var req request
	if err := json.NewDecoder(bufio.NewReader(io.LimitReader(c, 16<<20))).Decode(&req); err != nil {
		json.NewEncoder(c).Encode(response{Stderr: fmt.Sprintf("bad request: %v\n", err), Code: 2})
		return
	}
	json.NewEncoder(c).Encode(s.handle(req))
}

// client sends an ipvsadm command line to the daemon and prints its
// answer.
func client(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	path := os.Getenv("XLB_SOCKET")
	if path == "" {
		path = defaultSocket
	}
	if len(args) > 0 && (args[0] == "--socket" || args[0] == "-socket") && len(args) > 1 {
		path, args = args[1], args[2:]
	}
	req := request{Args: args}
	if isRestore(args) {
		b, err := io.ReadAll(stdin)
		if err != nil {
			fmt.Fprintf(stderr, "xlb: read rules from stdin: %v\n", err)
			return 1
		}
		req.Stdin = string(b)
	}
	resp, err := call(path, req)
	if err != nil {
		fmt.Fprintf(stderr, "xlb: %v\nIs the daemon running (xlb run --iface IF)?\n", err)
		return 1
	}
	io.WriteString(stdout, resp.Stdout)
	io.WriteString(stderr, resp.Stderr)
	return resp.Code
}

func call(path string, req request) (response, error) {
	var resp response
	c, err := net.DialTimeout("unix", path, 2*time.Second)
	if err != nil {
		return resp, fmt.Errorf("connect to daemon at %s: %w", path, err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(15 * time.Second))
	if err := json.NewEncoder(c).Encode(req); err != nil {
		return resp, fmt.Errorf("send to daemon: %w", err)
	}
	if err := json.NewDecoder(c).Decode(&resp); err != nil {
		return resp, fmt.Errorf("read daemon answer: %w", err)
	}
	return resp, nil
}

func isRestore(args []string) bool {
	for _, a := range args {
		if a == "-R" || a == "--restore" {
			return true
		}
	}
	return false
}
