package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
)

func main() {
	// Installed as ipvsadm (make install links it), xlb is ipvsadm.
	if filepath.Base(os.Args[0]) == "ipvsadm" {
		os.Exit(ipvsadmClient(os.Args[1:], os.Stdin, os.Stdout, os.Stderr))
	}
	os.Exit(run(os.Args[1:], os.Stdin, os.Stdout, os.Stderr))
}

// clientUsage is what `xlb --xlb-help` prints: the parts of xlb's
// command line that are not ipvsadm's (`xlb -h` shows ipvsadm's usage,
// from the daemon).
const clientUsage = `usage: xlb run --iface IF [--iface IF2...] [--rules FILE] [--socket PATH|@NAME] [--socket-group GROUP] [--conns N] [--queues N]
       xlb [--socket PATH|@NAME] IPVSADM-ARGS...
       xlb ipvsadm IPVSADM-ARGS...      (or the binary run as ipvsadm: exactly ipvsadm 1.31)
       xlb [--socket PATH|@NAME] mark add|del MARK -t|-u ADDR[/PREFIX][:PORT[-PORT]]...
       xlb [--socket PATH|@NAME] mark list
       xlb [--socket PATH|@NAME] health [-o json]   (with xlb run --keepalived FILE)

The daemon listens on --socket (default @xlb, an abstract socket of its
network namespace); a client talks to the daemon of its own namespace, or
to --socket (first argument) or $XLB_SOCKET. See xlb run -h for its flags.
xlb mark gives frames the firewall marks of -f services (XDP runs before
netfilter could mark them); the rules are saved by -S as --xlb-mark lines.
`

// run dispatches to the daemon or to the ipvsadm client and returns the
// process's exit code.
func run(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	if len(args) > 0 && args[0] == "decap" {
		if err := decap(context.Background(), args[1:], stdout, stderr); err != nil {
			fmt.Fprintf(stderr, "xlb: %v\n", err)
			return 1
		}
		return 0
	}
	if len(args) > 0 && args[0] == "run" {
		err := daemon(args[1:], stdout, stderr)
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		if err != nil {
			fmt.Fprintf(stderr, "xlb: %v\n", err)
			return 1
		}
		return 0
	}
	if len(args) > 0 && args[0] == "ipvsadm" {
		return ipvsadmClient(args[1:], stdin, stdout, stderr)
	}
	if len(args) == 1 && args[0] == "--xlb-help" {
		io.WriteString(stdout, clientUsage)
		return 0
	}
	return client(args, stdin, stdout, stderr)
}
