package main

import (
	"context"
	"fmt"
	"strings"
	"syscall"
	"testing"

	"github.com/migrahosting/cloudpods/ipam"
	"github.com/migrahosting/cloudpods/provisioner"
	"github.com/migrahosting/cloudpods/provisioner/pve"
)

func TestExitCodes(t *testing.T) {
	step := func(err error, left bool) error {
		return &provisioner.StepError{Step: provisioner.StepClone, VMID: 9101, Err: err, Left: left}
	}
	locked := &pve.APIError{Method: "POST", Path: "/nodes/pve/lxc/9000/clone", Status: 500, Message: "CT is locked (disk)"}
	refused := &pve.TransportError{Method: "GET", Path: "/access/permissions", Err: syscall.ECONNREFUSED}
	slow := &pve.TransportError{Method: "GET", Path: "/access/permissions", Err: fmt.Errorf("awaiting headers: %w", context.DeadlineExceeded)}
	tests := []struct {
		name string
		err  error
		want int
	}{
		{"ok", nil, exitOK},
		{"usage", fmt.Errorf("%w: --ip: not an address", errUsage), exitUsage},
		{"invalid spec", step(fmt.Errorf("hostname: %w", provisioner.ErrInvalidSpec), false), exitUsage},
		{"interrupted with a CT left", step(fmt.Errorf("%w before step start", provisioner.ErrInterrupted), true), exitInterrupted},
		{"rollback failed", step(&pve.APIError{Method: "POST", Status: 500, Message: "startup failed"}, true), exitLeftBehind},
		{"conflict", step(fmt.Errorf("vmid taken: %w", provisioner.ErrConflict), false), exitConflict},
		{"bad token", step(&pve.APIError{Status: 401, Message: "authentication failure"}, false), exitAuth},
		{"preflight", step(fmt.Errorf("storage full: %w", provisioner.ErrPreflight), false), exitPreflight},
		{"task timeout", step(fmt.Errorf("task: %w", pve.ErrWaitTimeout), false), exitTimeout},
		{"lock held past the wait", step(fmt.Errorf("clone: gave up: %w", locked), false), exitBusy},
		{"no answer", step(refused, false), exitUnreachable},
		{"HTTP timeout", step(slow, false), exitTimeout},
		{"refused", fmt.Errorf("destroy CT 9000: %w", provisioner.ErrRefused), exitRefused},
		{"registry corrupt", step(fmt.Errorf("IPAM: %w", &ipam.RegistryError{Path: "/var/lib/cloudpods/ipam.json", Problem: "is empty (0 bytes)"}), false), exitRegistry},
		{"plain failure", step(&pve.TaskError{Type: "vzstart", ExitStatus: "startup for container '9101' failed"}, false), exitFailed},
	}
	seen := map[int]bool{}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := exitCode(tt.err); got != tt.want {
				t.Errorf("exitCode(%v) = %d, want %d", tt.err, got, tt.want)
			}
			if tt.want != exitOK {
				s := exitSentences[tt.want]
				if s == "" || strings.Count(s, ". ") > 0 || !strings.HasSuffix(s, ".") {
					t.Errorf("exit %d has no one-sentence meaning: %q", tt.want, s)
				}
			}
		})
		seen[tt.want] = true
	}
	for code := range exitSentences {
		if !seen[code] {
			t.Errorf("exit %d is never produced by the table above", code)
		}
	}
}
