package provisioner

import (
	"context"
	"testing"
	"time"

	"github.com/migrahosting/cloudpods/provisioner/pve"
	"github.com/migrahosting/cloudpods/provisioner/pvetest"
)

const (
	cloneUPID = "UPID:pve:00001234:00005678:6A000000:vzclone:9000:cloudpods@pve!provisioner:"
	startUPID = "UPID:pve:00001235:00005679:6A000001:vzstart:9101:cloudpods@pve!provisioner:"
)

func TestFirstWaitExpectsWhatPVEsHistorySays(t *testing.T) {
	api := pvetest.New()
	t0 := time.Date(2026, 11, 1, 12, 0, 0, 300e6, time.UTC)
	// Clones of 9000 took 3 or 4 whole seconds by PVE's task list; one
	// failed early (ignored), and clones of another template took longer.
	for i, took := range []time.Duration{3 * time.Second, 3 * time.Second, 4 * time.Second, 3 * time.Second} {
		api.RecordTask("pve", "vzclone", "9000", t0.Add(time.Duration(i)*time.Minute), took, "OK")
	}
	api.RecordTask("pve", "vzclone", "9000", t0.Add(5*time.Minute), 200*time.Millisecond, "clone failed: out of space")
	api.RecordTask("pve", "vzclone", "9001", t0.Add(6*time.Minute), 30*time.Second, "OK")
	api.RecordTask("pve", "vzstart", "300", t0.Add(7*time.Minute), time.Second, "OK")

	var tt taskTimes
	e := tt.expect(context.Background(), api, "pve", cloneUPID)
	if e.Samples != 4 || e.Duration < 3*time.Second || e.Duration > 3500*time.Millisecond {
		t.Fatalf("clone expectation %+v, want about 3.25 s from 4 samples", e)
	}
	// Whole seconds: the spread is at least half a second over √n, twice.
	if e.Spread < 500*time.Millisecond || e.Spread > 2*time.Second {
		t.Errorf("spread %v", e.Spread)
	}
	var asked []pve.TaskFilter
	for _, c := range api.Calls() {
		if c.Method == "Tasks" {
			asked = append(asked, pve.TaskFilter{Type: c.Arg})
		}
	}
	if len(asked) != 1 || asked[0].Type != "vzclone" {
		t.Fatalf("history reads %+v, want one for vzclone", asked)
	}
	// The history is read once per kind and node.
	tt.expect(context.Background(), api, "pve", cloneUPID)
	if e := tt.expect(context.Background(), api, "pve", startUPID); e.Samples != 1 || e.Duration != time.Second || e.Spread != time.Second {
		t.Errorf("start expectation %+v, want 1 s ± 1 s from one sample", e)
	}
	if n := countCalls(api, "Tasks"); n != 2 {
		t.Errorf("%d history reads, want 2 (vzclone of 9000, vzstart)", n)
	}

	// What this process measures takes over: precise to milliseconds.
	for range 6 {
		tt.observe("pve", cloneUPID, pve.TaskObservation{LastRunning: 3010 * time.Millisecond, FirstStopped: 3040 * time.Millisecond})
	}
	e = tt.expect(context.Background(), api, "pve", cloneUPID)
	if d := e.Duration - 3025*time.Millisecond; d < -30*time.Millisecond || d > 30*time.Millisecond || e.Spread > 150*time.Millisecond {
		t.Errorf("after six waits of 3.025 s: %+v", e)
	}
}

func TestNoHistoryMeansABlindFirstWaitThenLearning(t *testing.T) {
	api := pvetest.New()
	var tt taskTimes
	if e := tt.expect(context.Background(), api, "pve", startUPID); e.Known() {
		t.Fatalf("expectation %+v from an empty history", e)
	}
	tt.observe("pve", startUPID, pve.TaskObservation{LastRunning: 980 * time.Millisecond, FirstStopped: 1020 * time.Millisecond})
	e := tt.expect(context.Background(), api, "pve", startUPID)
	if e.Samples != 1 || e.Duration != time.Second || e.Spread > 200*time.Millisecond {
		t.Errorf("after one wait: %+v", e)
	}
	// Another node has its own history and its own times.
	if e := tt.expect(context.Background(), api, "pve2", "UPID:pve2:00001236:00005680:6A000002:vzstart:9102:x@pve:"); e.Known() {
		t.Errorf("node pve2 expects %+v from node pve's waits", e)
	}
}

func countCalls(api *pvetest.Fake, method string) int {
	n := 0
	for _, c := range api.Calls() {
		if c.Method == method {
			n++
		}
	}
	return n
}
