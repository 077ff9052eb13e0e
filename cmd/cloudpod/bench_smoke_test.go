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
