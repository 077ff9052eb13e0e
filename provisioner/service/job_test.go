package service

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/migrahosting/cloudpods/provisioner"
)

func TestApplyEvent(t *testing.T) {
	t0 := time.Unix(1700000000, 0)
	ev := func(sec int, step string, ph provisioner.Phase, msg string) provisioner.Event {
		return provisioner.Event{Time: t0.Add(time.Duration(sec) * time.Second), Step: step, Phase: ph, Message: msg}
	}
	tests := []struct {
		name     string
		events   []provisioner.Event
		steps    string // step:state:seconds:message …
		warnings int
	}{
		{"start then done", []provisioner.Event{ev(0, "clone", "start", ""), ev(3, "clone", "done", "3.00s")}, "clone:done:3:3.00s", 0},
		{"start then skip", []provisioner.Event{ev(0, "start", "start", ""), ev(1, "start", "skip", "already running")}, "start:skipped:1:already running", 0},
		{"still running", []provisioner.Event{ev(0, "validate", "start", ""), ev(0, "validate", "done", ""), ev(1, "clone", "start", "")}, "validate:done:0: clone:running:0:", 0},
		{"info lands on its step", []provisioner.Event{ev(0, "preflight", "start", ""), ev(1, "preflight", "info", "converging"), ev(2, "preflight", "done", "")}, "preflight:done:2:converging", 0},
		{"skip without start", []provisioner.Event{ev(5, "destroy", "skip", "CT 9101 does not exist")}, "destroy:skipped:0:CT 9101 does not exist", 0},
		{"warning outside a step", []provisioner.Event{ev(0, "inspect", "warn", "has 2 backups"), ev(1, "stop", "start", ""), ev(4, "stop", "done", "")}, "stop:done:3:", 1},
		{"rerun of a step", []provisioner.Event{ev(0, "verify", "start", ""), ev(1, "verify", "fail", "eth0"), ev(2, "rollback", "start", ""), ev(3, "rollback", "done", "")}, "verify:failed:1:eth0 rollback:done:1:", 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var j Job
			for _, e := range tt.events {
				j.applyEvent(e)
			}
			var got []string
			for _, s := range j.Steps {
				got = append(got, fmt.Sprintf("%s:%s:%g:%s", s.Step, s.State, s.Seconds, s.Message))
			}
			if strings.Join(got, " ") != tt.steps || len(j.Warnings) != tt.warnings {
				t.Errorf("steps %q warnings %v, want %q and %d warnings", strings.Join(got, " "), j.Warnings, tt.steps, tt.warnings)
			}
		})
	}
}
