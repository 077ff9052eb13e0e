package main

import (
	"context"
	"os"
	"strings"
	"testing"
)

// TestMain lets tests run the CLI as a child process of the test binary
// (CLOUDPODS_CLI_CHILD=1), so a child's signals, exit code and peak RSS are
// the CLI's own.
func TestMain(m *testing.M) {
	if os.Getenv("CLOUDPODS_CLI_CHILD") == "1" {
		os.Exit(execute(context.Background(), nil, os.Args[1:], os.Stdin, os.Stdout, os.Stderr))
	}
	os.Exit(m.Run())
}

func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
