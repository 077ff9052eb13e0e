package main

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"
)

// Tests that need `cloudpod` as a program of its own — run through sudo,
// measured by its RSS, driven on a terminal — build it once per test
// process with `go build` (without -race: what an operator runs), each
// variant of link flags into its own file.

var binaries struct {
	mu    sync.Mutex
	dir   string
	built map[string]string // ldflags → path
	err   map[string]error
}

// cloudpodBinary is the path of cmd/cloudpod built with ldflags; the test
// skips where no Go toolchain is at hand.
func cloudpodBinary(t testing.TB, ldflags string) string {
	t.Helper()
	binaries.mu.Lock()
	defer binaries.mu.Unlock()
	if p, ok := binaries.built[ldflags]; ok {
		return p
	}
	if err, ok := binaries.err[ldflags]; ok {
		t.Fatalf("building cloudpod: %v", err)
	}
	goTool, err := exec.LookPath("go")
	if err != nil {
		t.Skipf("no go command on PATH to build cloudpod with: %v", err)
	}
	if binaries.dir == "" {
		// Kept for the whole test process (TestMain removes it): a
		// test's TempDir would go with the first test.
		if binaries.dir, err = os.MkdirTemp("", "cloudpod-bin-"); err != nil {
			t.Fatal(err)
		}
		// Others (sudo's target user) must reach the binaries.
		if err := os.Chmod(binaries.dir, 0o755); err != nil {
			t.Fatal(err)
		}
		binaries.built, binaries.err = map[string]string{}, map[string]error{}
	}
	out := filepath.Join(binaries.dir, fmt.Sprintf("cloudpod-%d", len(binaries.built)))
	cmd := exec.Command(goTool, "build", "-o", out, "-ldflags", ldflags, ".")
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if b, err := cmd.CombinedOutput(); err != nil {
		binaries.err[ldflags] = err
		t.Fatalf("go build cloudpod: %v\n%s", err, b)
	}
	binaries.built[ldflags] = out
	return out
}

// removeBinaries is TestMain's cleanup.
func removeBinaries() {
	if binaries.dir != "" {
		_ = os.RemoveAll(binaries.dir)
	}
}
