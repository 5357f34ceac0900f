//go:build linux

package main

import (
	"strings"
	"testing"

	"github.com/xlbproject/xlb/testenv"
)

// With --busy-poll, xlb sets the interface's napi_defer_hard_irqs and
// gro_flush_timeout for the time it runs, forwards (the worker's syscalls
// and the flush timer run veth's NAPI), and puts the values back at exit.
func TestDRBusyPoll(t *testing.T) {
	testenv.RequireRoot(t)
	env := testenv.New(t, testenv.DefaultOptions())
	read := func(name string) string {
		t.Helper()
		out, err := env.Director.Command("cat", "/sys/class/net/eth0/"+name).CombinedOutput()
		if err != nil {
			t.Fatalf("read %s: %v %s", name, err, out)
		}
		return strings.TrimSpace(string(out))
	}
	defer0, flush0 := read("napi_defer_hard_irqs"), read("gro_flush_timeout")
	d := startXLB(t, env, drRules(env, "rr"), "--busy-poll", "20", "--busy-poll-budget", "64")
	if got, got2 := read("napi_defer_hard_irqs"), read("gro_flush_timeout"); got != "2" || got2 != "200000" {
		t.Errorf("while xlb runs: napi_defer_hard_irqs %s, gro_flush_timeout %s; want 2, 200000", got, got2)
	}
	requireTraffic(t, env, d.Output.String)
	if err := d.stop(); err != nil {
		t.Fatalf("stop: %v\n%s", err, d.Output.String())
	}
	if got, got2 := read("napi_defer_hard_irqs"), read("gro_flush_timeout"); got != defer0 || got2 != flush0 {
		t.Errorf("after exit: napi_defer_hard_irqs %s, gro_flush_timeout %s; want %s, %s as before", got, got2, defer0, flush0)
	}
}
