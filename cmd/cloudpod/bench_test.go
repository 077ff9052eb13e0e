package main

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/migrahosting/cloudpods/fixtures/pvesim"
)

// TestMain lets the benchmark run the CLI as a child process of the test
// binary, so its peak RSS is the CLI's own, not the simulator's.
func TestMain(m *testing.M) {
	if os.Getenv("CLOUDPODS_CLI_CHILD") == "1" {
		os.Exit(execute(context.Background(), nil, os.Args[1:], os.Stdin, os.Stdout, os.Stderr))
	}
	os.Exit(m.Run())
}

// BenchmarkBatchCreate provisions N pods (CLOUDPODS_BENCH_N, default 20)
// with `cloudpod create --count N` against pvesim with realistic task
// durations (clone 3 s, start 1 s) scaled by CLOUDPODS_BENCH_SCALE (default
// 0.1), and reports the makespan against the lower bound PVE's locks allow.
func BenchmarkBatchCreate(b *testing.B) {
	n := envInt("CLOUDPODS_BENCH_N", 20)
	scale := 0.1
	if v := os.Getenv("CLOUDPODS_BENCH_SCALE"); v != "" {
		scale, _ = strconv.ParseFloat(v, 64)
	}
	for i := 0; i < b.N; i++ {
		r := runBatchBench(b, n, scale)
		b.ReportMetric(r.makespan.Seconds(), "makespan_s")
		b.ReportMetric(r.lowerBound.Seconds(), "lowerbound_s")
		b.ReportMetric(r.makespan.Seconds()/r.lowerBound.Seconds(), "ratio")
		b.ReportMetric(float64(r.addedLatency.Milliseconds()), "added_ms/wait")
		b.ReportMetric(r.requestsPerPod, "requests/pod")
		b.ReportMetric(float64(r.peakRSSKiB)/1024, "peakRSS_MiB")
		fmt.Fprint(os.Stdout, r.table(n, scale))
	}
}

type benchResult struct {
	makespan, lowerBound, addedLatency, maxAddedLatency time.Duration
	waits                                               int
	requestsPerPod                                      float64
	peakRSSKiB                                          int64
}

func (r benchResult) table(n int, scale float64) string {
	var s strings.Builder
	fmt.Fprintf(&s, "\n| pods | task scale | makespan | lower bound | ratio | client-added latency per task wait (mean / max) | requests per pod | peak RSS |\n")
	fmt.Fprintf(&s, "|---|---|---|---|---|---|---|---|\n")
	fmt.Fprintf(&s, "| %d | %.2f | %.2f s | %.2f s | %.3f | %.1f ms / %.1f ms over %d waits | %.1f | %.1f MiB |\n",
		n, scale, r.makespan.Seconds(), r.lowerBound.Seconds(), r.makespan.Seconds()/r.lowerBound.Seconds(),
		float64(r.addedLatency.Microseconds())/1000, float64(r.maxAddedLatency.Microseconds())/1000, r.waits, r.requestsPerPod, float64(r.peakRSSKiB)/1024)
	return s.String()
}

func runBatchBench(b *testing.B, n int, scale float64) benchResult {
	b.Helper()
	dir := b.TempDir()
	const tokenID, secret = "cloudpods@pve!bench", "b3nch-0000-4000-8000-000000000000"
	sim, err := pvesim.Start(context.Background(), pvesim.Config{
		Listen: "127.0.0.1:0", Scale: scale, DataDir: filepath.Join(dir, "sim"),
		Tokens:        []pvesim.Token{{ID: tokenID, Secret: secret}},
		TaskDurations: map[string]time.Duration{"vzclone": 3 * time.Second, "vzstart": time.Second},
	})
	if err != nil {
		b.Fatal(err)
	}
	defer sim.Close()
	tokenFile := filepath.Join(dir, "token")
	if err := os.WriteFile(tokenFile, []byte(secret), 0o600); err != nil {
		b.Fatal(err)
	}
	cmd := exec.Command(os.Args[0], "create", "--count", strconv.Itoa(n), "--host", "bench", "--vmid", "auto", "--ip", "auto",
		"--concurrency", strconv.Itoa(n), "--output", "json",
		"--pve-url", sim.URL(), "--token-id", tokenID, "--token-file", tokenFile, "--fingerprint", sim.Fingerprint(),
		"--ipam-file", filepath.Join(dir, "ipam.json"), "--audit-log", filepath.Join(dir, "audit.log"))
	cmd.Env = append(os.Environ(), "CLOUDPODS_CLI_CHILD=1")
	start := time.Now()
	out, err := cmd.CombinedOutput()
	makespan := time.Since(start)
	if err != nil {
		b.Fatalf("batch create: %v\n%s", err, lastLines(string(out), 20))
	}
	if p := os.Getenv("CLOUDPODS_BENCH_EVENTS"); p != "" {
		_ = os.WriteFile(p, out, 0o644)
	}
	rss := cmd.ProcessState.SysUsage().(*syscall.Rusage).Maxrss

	timings := sim.TaskTimings()
	var cloneTotal time.Duration
	var lastCloneEnd time.Time
	var tail time.Duration
	r := benchResult{makespan: makespan, peakRSSKiB: rss}
	sort.Slice(timings, func(i, j int) bool { return timings[i].Start.Before(timings[j].Start) })
	for _, t := range timings {
		if t.Type == "vzclone" {
			cloneTotal += t.End.Sub(t.Start)
			if t.End.After(lastCloneEnd) {
				lastCloneEnd = t.End
			}
		}
		if !t.FirstSeenStopped.IsZero() {
			added := t.FirstSeenStopped.Sub(t.End)
			r.addedLatency += added
			r.maxAddedLatency = max(r.maxAddedLatency, added)
			r.waits++
		}
	}
	// The last pod's tail is its start task: nothing else after the last
	// clone has to take PVE time.
	for _, t := range timings {
		if t.Type == "vzstart" && !t.Start.Before(lastCloneEnd) {
			tail = max(tail, t.End.Sub(t.Start))
		}
	}
	r.lowerBound = cloneTotal + tail
	if r.waits > 0 {
		r.addedLatency /= time.Duration(r.waits)
	}
	total := 0
	for _, c := range sim.Requests() {
		total += c
	}
	r.requestsPerPod = float64(total) / float64(n)
	for vmid := 9101; vmid < 9101+n; vmid++ {
		if g, ok := sim.Guest(vmid); !ok || g.Status != "running" {
			b.Fatalf("CT %d is not running after the batch", vmid)
		}
	}
	return r
}

func envInt(key string, def int) int {
	if v, err := strconv.Atoi(os.Getenv(key)); err == nil && v > 0 {
		return v
	}
	return def
}

func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
