package main

import (
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// rssKiB is a process's resident set size.
func rssKiB(t *testing.T, pid int) int {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Skipf("no /proc to read the RSS from: %v", err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			kib, _ := strconv.Atoi(strings.TrimSuffix(strings.TrimSpace(v), " kB"))
			return kib
		}
	}
	t.Fatalf("no VmRSS in /proc/%d/status", pid)
	return 0
}

// TestServeMemoryUnderAMethodFlood sends `cloudpod serve` (the built
// program, as an operator runs it) 10 000 requests without a token, each
// with a random 1 KB method name: its RSS stays within 5 MB of where it
// stood before the flood, and /metrics stays under 64 KB (the names are
// counted as one "other" series). A resource bound, not a timing test.
func TestServeMemoryUnderAMethodFlood(t *testing.T) {
	c := startCLI(t)
	dir := t.TempDir()
	args := append([]string{"--listen", "127.0.0.1:0", "--auth-file", writeTokens(t), "--state-dir", filepath.Join(dir, "jobs")}, c.flags...)
	srv := startServeProgram(t, cloudpodBinary(t, ""), []string{"PATH=" + os.Getenv("PATH"), "HOME=" + dir}, args)

	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 8}, Timeout: 10 * time.Second}
	send := func(method, path string) (int, error) {
		req, err := http.NewRequest(method, srv.url+path, nil)
		if err != nil {
			return 0, err
		}
		resp, err := client.Do(req)
		if err != nil {
			return 0, err
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return resp.StatusCode, nil
	}
	flood := func(n int, method func(i int) string) {
		t.Helper()
		var wg sync.WaitGroup
		errs := make(chan error, 8)
		for w := range 8 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := w; i < n; i += 8 {
					if _, err := send(method(i), []string{"/healthz", "/metrics", "/internal/proxmox/cloudpods"}[i%3]); err != nil {
						errs <- err
						return
					}
				}
			}()
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			t.Fatal(err)
		}
	}
	// Settle: the connections, buffers and heap a run of ordinary
	// requests needs.
	flood(2000, func(int) string { return http.MethodGet })
	before := rssKiB(t, srv.cmd.Process.Pid)
	rng := rand.New(rand.NewPCG(14, 14))
	var mu sync.Mutex
	flood(10000, func(int) string {
		mu.Lock()
		defer mu.Unlock()
		return randomMethodName(rng, 1024)
	})
	after := rssKiB(t, srv.cmd.Process.Pid)
	status, metrics := srv.call("GET", "/metrics", "")
	t.Logf("RSS %d KiB before the flood, %d KiB after; /metrics %d bytes", before, after, len(metrics))
	if after-before > 5<<10 {
		t.Errorf("RSS grew by %d KiB over 10 000 invented methods (from %d KiB), want at most 5 MB", after-before, before)
	}
	if status != http.StatusOK || len(metrics) >= 64<<10 {
		t.Errorf("/metrics: %d, %d bytes; want 200 and under 64 KB", status, len(metrics))
	}
	if !strings.Contains(string(metrics), `cloudpods_http_requests_total{method="other",route="unmatched",code="405"}`) {
		t.Errorf("the invented methods are not counted as other:\n%.2000s", metrics)
	}
}

// randomMethodName is an HTTP token of n random capital letters.
func randomMethodName(r *rand.Rand, n int) string {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte('A' + r.IntN(26))
	}
	return string(b)
}
