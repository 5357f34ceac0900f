package main

import (
	"bytes"
	"image/png"
	"math"
	"testing"
	"time"
)

// A simulated device under test: it forwards up to capacity pps without
// loss and drops the excess; the generator reaches at most genMax pps.
func dut(capacity, genMax float64) func(float64) (trial, error) {
	return func(target float64) (trial, error) {
		offered := min(target, genMax)
		return trial{target: target, offered: offered, delivered: min(offered, capacity)}, nil
	}
}

func TestSearchLossless(t *testing.T) {
	tests := []struct {
		name                 string
		hi, capacity, genMax float64
		steps                int
		want, tol            float64
		trials               int
	}{
		// Everything the generator offers is forwarded: one trial.
		{"at the ceiling", 1e6, 2e6, 2e6, 6, 1e6, 0, 1},
		// Bisection converges from below within hi/2^(steps-1).
		{"below the ceiling", 1e6, 0.6e6, 2e6, 8, 0.6e6, 1e6 / 128, 8},
		// The generator falls short of its target (the kernel forwards on
		// its CPU): what it did offer without loss counts, and the search
		// does not go above what it cannot offer.
		{"generator slowed", 1e6, 2e6, 0.3e6, 8, 0.3e6, 0, 8},
		{"nothing forwarded", 1e6, 0, 2e6, 4, 0, 0, 4},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, trials, err := searchLossless(tt.hi, tt.steps, dut(tt.capacity, tt.genMax))
			if err != nil {
				t.Fatal(err)
			}
			if got > tt.want+1e-9 || got < tt.want-tt.tol {
				t.Errorf("lossless rate = %.0f, want %.0f (-%.0f)", got, tt.want, tt.tol)
			}
			if len(trials) != tt.trials {
				t.Errorf("%d trials, want %d", len(trials), tt.trials)
			}
			for _, tr := range trials {
				if tr.lossless() && tr.offered > got {
					t.Errorf("a passing trial offered %.0f, above the result %.0f", tr.offered, got)
				}
			}
		})
	}
	if _, _, err := searchLossless(0, 3, dut(1, 1)); err == nil {
		t.Error("no error for a zero upper bound")
	}
}

func TestTrialPass(t *testing.T) {
	for _, tt := range []struct {
		tr   trial
		pass bool
	}{
		{trial{target: 1000, offered: 1000, delivered: 999}, true},    // 0.1%
		{trial{target: 1000, offered: 1000, delivered: 998.9}, false}, // 0.11%
		{trial{target: 1000, offered: 979, delivered: 979}, false},    // generator short by 2.1%
		{trial{target: 1000, offered: 981, delivered: 981}, true},
		{trial{target: 1000, offered: 0, delivered: 0}, false},
		{trial{target: 1000, offered: 1000, delivered: 1001}, true}, // ARP and others counted too
	} {
		if got := tt.tr.pass(); got != tt.pass {
			t.Errorf("%+v pass() = %v, want %v (loss %.4f)", tt.tr, got, tt.pass, tt.tr.loss())
		}
	}
}

func TestParseProcStat(t *testing.T) {
	in := "cpu  593021 3160 316000 544739 2175 0 40695 7 11 0\ncpu0 1 2 3 4 5 6 7 8 9 10\nintr 1\n"
	got, err := parseProcStat(in)
	if err != nil {
		t.Fatal(err)
	}
	// guest (11) is part of user already: not added again.
	if want := (cpuTimes{busy: 593021 + 3160 + 316000 + 0 + 40695 + 7, idle: 544739 + 2175}); got != want {
		t.Errorf("parseProcStat = %+v, want %+v", got, want)
	}
	for _, bad := range []string{"", "intr 1\n", "cpu  1 2 x 4 5 6 7 8\n", "cpu 1 2\n"} {
		if _, err := parseProcStat(bad); err == nil {
			t.Errorf("parseProcStat(%q): no error", bad)
		}
	}
}

func TestCPUAccounting(t *testing.T) {
	a, b := cpuTimes{busy: 1000}, cpuTimes{busy: 1300} // 300 ticks = 3 CPU-s
	if got := busyCores(a, b, 2*time.Second); math.Abs(got-1.5) > 1e-9 {
		t.Errorf("busyCores = %v, want 1.5", got)
	}
	if got := busyCores(b, a, time.Second); got != 0 {
		t.Errorf("busyCores of a counter that went back = %v, want 0", got)
	}
	// 1.5 cores busy, 0.5 of them before the traffic, 1 Mpps: 1000 ns.
	if got := cpuPerPacket(1.5, 0.5, 1e6); math.Abs(got-1000) > 1e-6 {
		t.Errorf("cpuPerPacket = %v, want 1000", got)
	}
	if got := cpuPerPacket(0.4, 0.5, 1e6); got != 0 {
		t.Errorf("cpuPerPacket below the background = %v, want 0", got)
	}
	if got := cpuPerPacket(1, 0, 0); got != 0 {
		t.Errorf("cpuPerPacket with nothing delivered = %v, want 0", got)
	}
}

func TestRateChart(t *testing.T) {
	img, err := rateChart("test", []chartSeries{
		{name: "a", points: []trial{{offered: 2e5, delivered: 2e5}, {offered: 1e5, delivered: 1e5}}},
		{name: "b", points: []trial{{offered: 3e5, delivered: 1e5}}},
		{name: "empty"},
	})
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := png.DecodeConfig(bytes.NewReader(img))
	if err != nil {
		t.Fatalf("not a PNG: %v", err)
	}
	if cfg.Width < 400 || cfg.Height < 200 {
		t.Errorf("chart is %dx%d", cfg.Width, cfg.Height)
	}
	if _, err := rateChart("none", nil); err == nil {
		t.Error("no error for a chart without points")
	}
}
