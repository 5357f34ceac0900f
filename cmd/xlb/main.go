package main

import (
	"context"
	"fmt"
	"io"
	"os"
)

func main() {
	os.Exit(run(os.Args[1:], os.Stdin, os.Stdout, os.Stderr))
}

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
		if err := daemon(args[1:], stdout, stderr); err != nil {
			fmt.Fprintf(stderr, "xlb: %v\n", err)
			return 1
		}
		return 0
	}
	return client(args, stdin, stdout, stderr)
}
