package main

import (
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"
)

// A trial is one step of the rate search: the rate asked of the
// generator, the rate it achieved (frames it sent per second of the
// trial) and the rate the real servers received.
type trial struct {
	target, offered, delivered float64 // frames per second
}

// lossMax is RFC 2544's throughput criterion as the issue states it:
// the offered rate counts as forwarded if at most 0.1% is lost.
const lossMax = 0.001

// achievedMin: a trial whose generator fell short of its target by more
// than this did not offer the target (on veths the kernel's forwarding
// runs on the sender's CPU and slows it, and other work takes the CPU):
// it still counts at the rate it did offer if it lost nothing, but the
// search goes no higher.
const achievedMin = 0.98

func (t trial) loss() float64 {
	if t.offered <= 0 {
		return 1
	}
	return max(0, 1-t.delivered/t.offered)
}

// lossless: at most lossMax of the offered frames lost.
func (t trial) lossless() bool {
	return t.offered > 0 && t.loss() <= lossMax+1e-12
}

// pass: lossless at the target rate.
func (t trial) pass() bool {
	return t.lossless() && t.offered >= achievedMin*t.target
}

// searchLossless finds the highest offered rate in (0, hi] that is
// forwarded losslessly, by bisection on the target: at most steps
// trials, so the answer is within hi/2^(steps-1) of the true one. hi
// itself is tried first. It returns the highest offered rate of a
// lossless trial (0 if none was) and every trial in order.
func searchLossless(hi float64, steps int, run func(target float64) (trial, error)) (float64, []trial, error) {
	if hi <= 0 || steps < 1 {
		return 0, nil, fmt.Errorf("invalid rate search: upper bound %v, %d steps", hi, steps)
	}
	var trials []trial
	lo, best := 0.0, 0.0
	rate := hi
	for i := 0; i < steps; i++ {
		t, err := run(rate)
		if err != nil {
			return best, trials, err
		}
		trials = append(trials, t)
		if t.lossless() {
			best = max(best, t.offered)
		}
		if t.pass() {
			lo = rate
			if rate == hi {
				break
			}
		} else {
			hi = rate
		}
		rate = (lo + hi) / 2
	}
	return best, trials, nil
}

// CPU time from /proc/stat's first line ("cpu  user nice system idle
// iowait irq softirq steal guest guest_nice", in USER_HZ ticks, summed
// over every CPU).
type cpuTimes struct {
	busy, idle uint64 // ticks; busy is everything but idle and iowait
}

func parseProcStat(s string) (cpuTimes, error) {
	line, _, _ := strings.Cut(s, "\n")
	f := strings.Fields(line)
	if len(f) < 8 || f[0] != "cpu" {
		return cpuTimes{}, errors.New("parse /proc/stat: no cpu line")
	}
	var c cpuTimes
	// guest and guest_nice are already counted in user and nice.
	for i, v := range f[1:min(len(f), 9)] {
		n, err := strconv.ParseUint(v, 10, 64)
		if err != nil {
			return cpuTimes{}, fmt.Errorf("parse /proc/stat: %w", err)
		}
		if i == 3 || i == 4 {
			c.idle += n
		} else {
			c.busy += n
		}
	}
	return c, nil
}

func readProcStat() (cpuTimes, error) {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return cpuTimes{}, err
	}
	return parseProcStat(string(b))
}

// userHZ is the unit of /proc/stat: 100 on every Linux architecture Go
// supports.
const userHZ = 100

// busyCores is the average number of busy CPUs between a and b, over d.
func busyCores(a, b cpuTimes, d time.Duration) float64 {
	if d <= 0 || b.busy < a.busy {
		return 0
	}
	return float64(b.busy-a.busy) / userHZ / d.Seconds()
}

// cpuPerPacket is the CPU-ns all CPUs spent per packet delivered at
// rate pps while cores CPUs were busy, background of them with other
// work (measured just before, with no traffic).
func cpuPerPacket(cores, background, rate float64) float64 {
	if rate <= 0 {
		return 0
	}
	return max(0, cores-background) / rate * 1e9
}
