//go:build linux

package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"regexp"
	"slices"
	"strings"
	"time"
)

// Queue scaling: xlb-dr and nft-fwd on the main topology (the
// director's veth has -director-queues queues, 1 by default) and on a
// second one whose director veth has -queue-scaling queues (one xlb
// worker per queue; veth hands each frame to the RX queue its peer's
// flow hash picked, as RSS does), alternated, every run freshly started:
// the lossless rate over 1000 flows and the CPU per packet at the first
// -cpu-rates rate. The frames each RX queue took are read from the
// director's `ethtool -S` and printed, so a run where one queue took
// everything shows.

// queueName names one queue-scaling run's results: "q2:xlb-dr".
func queueName(queues int, dp string) string { return fmt.Sprintf("q%d:%s", queues, dp) }

var queueDPs = []string{"nft-fwd", "xlb-dr"}

func (b *bench) measureQueues(ctx context.Context) (err error) {
	n := b.o.queueScaling
	if n <= 1 || n == b.o.queues {
		return nil
	}
	fmt.Fprintf(b.log, "== queue scaling: a second topology, the director's veth with %d queues\n", n)
	env, err := topology(b.o, fmt.Sprintf("xq%d", os.Getpid()%100000), n)
	if err != nil {
		return fmt.Errorf("build the %d-queue topology: %w", n, err)
	}
	defer func() {
		if cerr := env.Close(); cerr != nil {
			err = errors.Join(err, fmt.Errorf("tear down the %d-queue topology: %w", n, cerr))
		}
	}()
	qo := b.o
	qo.dps, qo.queues = queueDPs, n
	qb := &bench{o: qo, env: env, dir: b.dir, bin: b.bin, log: b.log, softirqd: b.softirqd, ceiling: b.ceiling,
		results: b.results, trials: map[string]map[int][]trial{}, drops: b.drops, guardWaits: map[string][]time.Duration{}}
	cleanup, err := qb.prepare(ctx)
	defer cleanup()
	if err != nil {
		return err
	}
	// -quick: only xlb on the second topology (the rounds above ran the
	// first), to check that it forwards.
	benches, dps := []*bench{b, qb}, queueDPs
	if b.o.quick {
		benches, dps = benches[1:], []string{"xlb-dr"}
	}
	for r := 1; r <= b.o.queueRounds; r++ {
		for _, qq := range benches {
			for _, name := range dps {
				if err := qq.queueRun(ctx, name); err != nil {
					return fmt.Errorf("queue scaling, %d queues, %s: %w", qq.o.queues, name, err)
				}
			}
		}
	}
	b.failures = append(b.failures, qb.failures...)
	return nil
}

// queueRun measures one configuration on b's topology.
func (b *bench) queueRun(ctx context.Context, name string) (err error) {
	var dp dataplane
	var x *xlbDP
	if name == "nft-fwd" {
		dp = &kernelDR{env: b.env}
	} else {
		if x, err = newXLB(b.env, "dr", b.bin, b.dir); err != nil {
			return err
		}
		x.suffix, x.conns = fmt.Sprintf("-q%d", b.o.queues), 1<<18
		dp = x
	}
	key := queueName(b.o.queues, name)
	if err := dp.Start(ctx); err != nil {
		return fmt.Errorf("start: %w", err)
	}
	defer func() {
		if serr := dp.Stop(); serr != nil {
			err = errors.Join(err, fmt.Errorf("stop: %w", serr))
		}
	}()
	if err := b.check(ctx, dp); err != nil {
		return fmt.Errorf("%s does not forward: %w", name, err)
	}
	pid := 0
	if x != nil {
		pid = x.p.Cmd.Process.Pid
	}
	q0 := b.queueFrames()
	if err := b.warm(ctx, 1000); err != nil {
		return err
	}
	best, trials, err := searchLossless(b.ceiling, b.o.steps, func(target float64) (trial, error) {
		return b.trial(ctx, 1000, target, false)
	})
	if err != nil {
		return err
	}
	most := 0.0
	for _, t := range trials {
		most = max(most, t.delivered)
	}
	b.record(key, "lossless_1000", best/1e6)
	b.record(key, "maxdeliv_1000", most/1e6)
	if _, err := b.cpuRunOn(ctx, key, cpuSpec{rate: b.o.cpuRates[0], flows: 1000, key: fmt.Sprintf("_%d", int(b.o.cpuRates[0]))}, false, pid); err != nil {
		return err
	}
	q1 := b.queueFrames()
	var spread []string
	for i := range q1 {
		if i < len(q0) {
			spread = append(spread, fmt.Sprintf("queue %d %d", i, q1[i]-q0[i]))
		}
	}
	if q1 == nil || slices.Equal(q0, q1) {
		spread = []string{"not counted (veth counts per queue only in its NAPI, which runs with XDP)"}
	}
	fmt.Fprintf(b.log, "        %-11s %d queues, 1k flows: lossless %.3f Mpps, most delivered %.3f Mpps; frames per RX queue: %s\n",
		name, b.o.queues, best/1e6, most/1e6, strings.Join(spread, ", "))
	if most <= 0 {
		b.failures = append(b.failures, fmt.Sprintf("%s, %d queues: no frame of the flood delivered", name, b.o.queues))
	}
	if x != nil {
		raw, st, err := x.Stats()
		if err != nil {
			return err
		}
		b.noteXLB(fmt.Sprintf("xlb-dr, %d queues", b.o.queues), raw, st)
	}
	return nil
}

var ethtoolRxQueue = regexp.MustCompile(`(?m)^\s*rx_queue_(\d+)_(?:xdp_)?packets:\s*(\d+)`)

// queueFrames reads the frames each of the director's eth0 RX queues
// received (veth's `ethtool -S`); nil if it cannot.
func (b *bench) queueFrames() []uint64 {
	out, err := b.env.Director.Command("ethtool", "-S", "eth0").Output()
	if err != nil {
		return nil
	}
	var v []uint64
	for _, m := range ethtoolRxQueue.FindAllStringSubmatch(string(out), -1) {
		var q int
		var n uint64
		fmt.Sscan(m[1], &q)
		fmt.Sscan(m[2], &n)
		for len(v) <= q {
			v = append(v, 0)
		}
		v[q] = n
	}
	return v
}
