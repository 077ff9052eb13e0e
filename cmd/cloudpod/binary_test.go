package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"testing"
)

// cloudpodBinary builds cmd/cloudpod with `go build` (without -race: the
// program an operator runs) into the test's own directory, for tests that
// need it as a program of its own: run through sudo, measured by its RSS,
// driven on a terminal, called from README's examples. The build cache
// makes a repeated build a link. The test skips where no Go toolchain is at
// hand.
func cloudpodBinary(t testing.TB, ldflags string) string {
	t.Helper()
	goTool, err := exec.LookPath("go")
	if err != nil {
		t.Skipf("no go command on PATH to build cloudpod with: %v", err)
	}
	out := filepath.Join(t.TempDir(), "cloudpod")
	cmd := exec.Command(goTool, "build", "-o", out, "-ldflags", ldflags, ".")
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build cloudpod: %v\n%s", err, b)
	}
	return out
}
