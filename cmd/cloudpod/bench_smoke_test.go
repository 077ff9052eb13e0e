package main

import (
	"bytes"
	"context"
	"math"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/migrahosting/cloudpods/fixtures/bench"
)

// TestBenchHarnessSmoke runs the benchmark harness (`make bench`) on a tiny
// batch at a small scale, the CLI being this test binary: the harness runs,
// measures what it should, and its tables hold the figures. Speed is not
// judged here; make bench measures it.
func TestBenchHarnessSmoke(t *testing.T) {
	if testing.Short() {
		t.Skip("starts two simulators and two child processes")
	}
	const pods, guests = 2, 30
	rep, err := bench.Run(context.Background(), bench.Options{
		Setting: bench.Setting{Pods: pods, Clone: 3 * time.Second, Start: time.Second, Scale: 0.02,
			RequestTime: time.Millisecond, RequestWorkers: 3},
		Guests:   []int{0, guests},
		Cloudpod: bench.Cloudpod{Command: []string{os.Args[0]}, Env: []string{"CLOUDPODS_CLI_CHILD=1"}},
		WorkDir:  t.TempDir(),
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.Scenarios) != 2 {
		t.Fatalf("%d scenarios, want 2", len(rep.Scenarios))
	}
	for _, sc := range rep.Scenarios {
		cp, an := sc.Runs[0], sc.Runs[1]
		m := cp.Metrics
		if cp.Tool != "cloudpod" || m == nil || an.Metrics != nil || an.Skipped == "" {
			t.Fatalf("%d guests: runs %+v", sc.Guests, sc.Runs)
		}
		if math.Abs(m.LowerBoundS-0.02*(pods*3+1)) > 1e-9 || m.MakespanS < m.LowerBoundS {
			t.Errorf("%d guests: makespan %.3f s, lower bound %.3f s", sc.Guests, m.MakespanS, m.LowerBoundS)
		}
		// Every pod's clone and start was waited for, and a status read
		// saw each stopped no earlier than its configured end.
		if m.Waits != 2*pods || m.StatusRequests < m.Waits || m.WaitLatencyMeanMS < 0 || m.WaitLatencyMaxMS < m.WaitLatencyMeanMS {
			t.Errorf("%d guests: waits %d, status requests %d, latency %.1f/%.1f ms", sc.Guests, m.Waits, m.StatusRequests, m.WaitLatencyMeanMS, m.WaitLatencyMaxMS)
		}
		// The first inventory read covers the listing and every guest that
		// existed before the batch (the template included).
		if m.FirstInventoryRequests < sc.Guests+2 || m.Requests <= m.FirstInventoryRequests || m.PeakRSSMiB <= 0 {
			t.Errorf("%d guests: first inventory read %d calls of %d, RSS %.1f MiB", sc.Guests, m.FirstInventoryRequests, m.Requests, m.PeakRSSMiB)
		}
	}
	var md bytes.Buffer
	rep.WriteMarkdown(&md)
	for _, want := range []string{"### empty cluster", "### 30 existing guests", "| makespan / lower bound |", "skipped, not requested", "n/a: the target is at scale 1"} {
		if !strings.Contains(md.String(), want) {
			t.Errorf("report lacks %q:\n%s", want, md.String())
		}
	}
}

// TestBenchClusterSmoke runs the cluster benchmark (`make bench-cluster`)
// on three nodes at a small scale: both runs place 9 pods on every node,
// the shared template alone clones one pod at a time and the copies clone
// on several nodes at once. Whether the makespan beats the one-node bound
// is make bench-cluster's to measure, not this test's.
func TestBenchClusterSmoke(t *testing.T) {
	if testing.Short() {
		t.Skip("starts two simulators and child processes")
	}
	rep, err := bench.RunCluster(context.Background(), bench.ClusterOptions{
		Setting: bench.Setting{Pods: 9, Clone: 3 * time.Second, Start: time.Second, Scale: 0.02,
			RequestTime: time.Millisecond, RequestWorkers: 3},
		Nodes:    []string{"pve", "pve2", "pve3"},
		Cloudpod: bench.Cloudpod{Command: []string{os.Args[0]}, Env: []string{"CLOUDPODS_CLI_CHILD=1"}},
		WorkDir:  t.TempDir(),
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.Runs) != 2 {
		t.Fatalf("%d runs, want 2", len(rep.Runs))
	}
	alone, copies := rep.Runs[0], rep.Runs[1]
	for _, r := range rep.Runs {
		if len(r.PodsPerNode) != 3 || math.Abs(r.Metrics.LowerBoundS-0.02*(9*3+1)) > 1e-9 || r.Metrics.Waits != 18 {
			t.Errorf("%s: pods per node %v, lower bound %.3f s, %d waits", r.Name, r.PodsPerNode, r.Metrics.LowerBoundS, r.Metrics.Waits)
		}
	}
	if alone.MaxClonesAtOnce != 1 || alone.Routes["target"] == 0 || alone.Setup != "" {
		t.Errorf("the shared template alone: %d clones at once, routes %v, setup %q", alone.MaxClonesAtOnce, alone.Routes, alone.Setup)
	}
	if copies.MaxClonesAtOnce < 2 || copies.Routes["copy"] == 0 || !strings.Contains(copies.Setup, "template copy") {
		t.Errorf("with copies: %d clones at once, routes %v, setup %q", copies.MaxClonesAtOnce, copies.Routes, copies.Setup)
	}
	var md bytes.Buffer
	rep.WriteMarkdown(&md)
	for _, want := range []string{"3-node cluster", "| makespan / one-node lower bound |", "`cloudpod template copy 9000 --all-nodes`", "--node auto"} {
		if !strings.Contains(md.String(), want) {
			t.Errorf("report lacks %q:\n%s", want, md.String())
		}
	}
}
