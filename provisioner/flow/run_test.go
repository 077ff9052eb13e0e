package flow

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/migrahosting/cloudpods/provisioner/pve"
)

// trace records what a test flow did, in order: events as "step phase[:
// message]", and the steps' own doings ("run a", "undo a failed").
type trace struct {
	mu    sync.Mutex
	lines []string
}

func (t *trace) add(format string, args ...interface{}) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.lines = append(t.lines, fmt.Sprintf(format, args...))
}

func (t *trace) Report(e Event) {
	line := e.Step + " " + string(e.Phase)
	if e.Message != "" && e.Phase != PhaseDone {
		line += ": " + e.Message
	}
	t.add("%s", line)
}

func (t *trace) get() []string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return append([]string(nil), t.lines...)
}

// step is a test step that records its run and undo; undo says what it
// returns.
func step(tr *trace, name string, run error, undo *Outcome) Step {
	s := Step{Name: name, Run: func(context.Context) error {
		tr.add("run %s", name)
		return run
	}}
	if undo != nil {
		s.Undo = func(ctx context.Context, rb Rollback) Outcome {
			tr.add("undo %s %s at %s (ctx alive: %v)", name, rb.Cause, rb.Step, ctx.Err() == nil)
			return *undo
		}
	}
	return s
}

func newRun(tr *trace, stop <-chan struct{}) *Run {
	return New(Options{Kind: pve.LXC, VMID: func() int { return 9101 }, Reporter: tr, Stop: stop, Nothing: "nothing was created"})
}

func TestExecuteRunsStepsInOrder(t *testing.T) {
	tr := &trace{}
	r := newRun(tr, nil)
	noted := Step{Name: "c", Run: func(context.Context) error {
		r.Info("working")
		r.Warn("careful")
		r.Note("all set")
		return nil
	}}
	steps := []Step{step(tr, "a", nil, nil), {Name: "b", ReadOnly: true, Run: func(context.Context) error { return nil }}, noted}
	if err := r.Execute(context.Background(), steps); err != nil {
		t.Fatal(err)
	}
	want := []string{"a start", "run a", "a done", "b start", "b done", "c start", "c info: working", "c warn: careful", "c done"}
	if got := tr.get(); !reflect.DeepEqual(got, want) {
		t.Errorf("trace\n got %q\nwant %q", got, want)
	}
	if got := r.Warnings(); !reflect.DeepEqual(got, []string{"careful"}) {
		t.Errorf("warnings = %q", got)
	}
	if secs := r.Seconds(); len(secs) != 3 {
		t.Errorf("seconds = %v, want one per step", secs)
	}
}

// TestDoneMessages: a done event says the step's duration unless the step
// noted something else.
func TestDoneMessages(t *testing.T) {
	var events []Event
	r := New(Options{Reporter: ReporterFunc(func(e Event) { events = append(events, e) })})
	err := r.Execute(context.Background(), []Step{
		{Name: "timed", Run: func(context.Context) error { return nil }},
		{Name: "noted", Run: func(context.Context) error { r.Note("vol-1 (2 GiB)"); return nil }},
	})
	if err != nil {
		t.Fatal(err)
	}
	if m := events[1].Message; !strings.HasSuffix(m, "s") || events[1].Phase != PhaseDone {
		t.Errorf("timed step's done = %+v, want its duration", events[1])
	}
	if m := events[3].Message; m != "vol-1 (2 GiB)" {
		t.Errorf("noted step's done message = %q", m)
	}
}

// TestConvergence: a Check that finds the work done skips Run (and enters
// no undo); a Run that finds it done on the way reports a skip.
func TestConvergence(t *testing.T) {
	tr := &trace{}
	r := newRun(tr, nil)
	checked := step(tr, "checked", nil, &Outcome{Said: "undid checked"})
	checked.Check = func(context.Context) (string, error) { return "already there", nil }
	found := step(tr, "found", Skip("file in place"), nil)
	failing := step(tr, "failing", errors.New("boom"), nil)
	err := r.Execute(context.Background(), []Step{checked, found, failing})
	want := []string{"checked start", "checked skip: already there", "found start", "run found", "found skip: file in place",
		"failing start", "run failing", "failing fail: boom"}
	if got := tr.get(); !reflect.DeepEqual(got, want) {
		t.Errorf("trace\n got %q\nwant %q", got, want)
	}
	var se *StepError
	if !errors.As(err, &se) || se.RolledBack != "nothing was created" {
		t.Errorf("err = %v: the skipped step's undo must not run", err)
	}
}

// TestCheckFailure: a Check that cannot tell fails the step before it runs.
func TestCheckFailure(t *testing.T) {
	tr := &trace{}
	r := newRun(tr, nil)
	s := step(tr, "a", nil, &Outcome{Said: "undid a"})
	s.Check = func(context.Context) (string, error) { return "", errors.New("cannot read") }
	err := r.Execute(context.Background(), []Step{s})
	want := []string{"a start", "a fail: cannot read"}
	if got := tr.get(); !reflect.DeepEqual(got, want) {
		t.Errorf("trace\n got %q\nwant %q", got, want)
	}
	var se *StepError
	if !errors.As(err, &se) || se.Step != "a" || se.RolledBack != "nothing was created" {
		t.Errorf("err = %v", err)
	}
}

// TestRollbackLedger: on failure the undos of the steps that ran are
// called newest first, with a live context, until one leaves something
// behind; the error says what each did.
func TestRollbackLedger(t *testing.T) {
	lease := &Outcome{Aside: true, Said: "10.1.10.91 released in IPAM"}
	tests := []struct {
		name      string
		cloneUndo *Outcome
		failAt    string
		wantTrace []string
		wantSaid  string
		wantLeft  bool
	}{
		{name: "fails before the clone: only the reservation is given back", cloneUndo: &Outcome{Said: "rolled back"}, failAt: "preflight",
			wantTrace: []string{"undo reserve failed at preflight (ctx alive: true)"},
			wantSaid:  "nothing was created; 10.1.10.91 released in IPAM"},
		{name: "fails after the clone: clone undone, then the reservation", cloneUndo: &Outcome{Said: "rolled back: CT 9101 destroyed"}, failAt: "configure",
			wantTrace: []string{"undo clone failed at configure (ctx alive: true)", "undo reserve failed at configure (ctx alive: true)"},
			wantSaid:  "rolled back: CT 9101 destroyed; 10.1.10.91 released in IPAM"},
		{name: "a clone that cannot be undone keeps the reservation", cloneUndo: &Outcome{Left: true, Said: "rollback of CT 9101 failed"}, failAt: "configure",
			wantTrace: []string{"undo clone failed at configure (ctx alive: true)"},
			wantSaid:  "rollback of CT 9101 failed", wantLeft: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tr := &trace{}
			r := New(Options{Reporter: ReporterFunc(func(Event) {}), Nothing: "nothing was created", VMID: func() int { return 9101 }})
			boom := errors.New("boom")
			var steps []Step
			for _, name := range []string{"reserve", "preflight", "clone", "configure"} {
				var undo *Outcome
				switch name {
				case "reserve":
					undo = lease
				case "clone":
					undo = tt.cloneUndo
				}
				var fail error
				if name == tt.failAt {
					fail = boom
				}
				s := step(tr, name, fail, undo)
				s.ReadOnly = name == "preflight"
				steps = append(steps, s)
				if name == tt.failAt {
					break
				}
			}
			err := r.Execute(context.Background(), steps)
			var undos []string
			for _, l := range tr.get() {
				if strings.HasPrefix(l, "undo ") {
					undos = append(undos, l)
				}
			}
			if !reflect.DeepEqual(undos, tt.wantTrace) {
				t.Errorf("undos\n got %q\nwant %q", undos, tt.wantTrace)
			}
			var se *StepError
			if !errors.As(err, &se) || se.Step != tt.failAt || !errors.Is(err, boom) || se.RolledBack != tt.wantSaid || se.Left != tt.wantLeft {
				t.Fatalf("err = %#v", err)
			}
			if errors.Is(err, ErrLeftBehind) != tt.wantLeft {
				t.Errorf("errors.Is(err, ErrLeftBehind) = %v", !tt.wantLeft)
			}
			if want := "CT 9101: step " + tt.failAt + " failed: boom; " + tt.wantSaid; err.Error() != want {
				t.Errorf("message %q, want %q", err, want)
			}
		})
	}
}

// TestNothingOnlyWhileTrue: once a step without an undo has changed
// something, a failure no longer says nothing was changed.
func TestNothingOnlyWhileTrue(t *testing.T) {
	tr := &trace{}
	r := New(Options{Nothing: "nothing was destroyed"})
	err := r.Execute(context.Background(), []Step{step(tr, "shutdown", nil, nil), step(tr, "delete", errors.New("task failed"), nil)})
	var se *StepError
	if !errors.As(err, &se) || se.RolledBack != "" {
		t.Errorf("err = %v, want no claim about what is left", err)
	}
	r = New(Options{Nothing: "nothing was destroyed"})
	err = r.Execute(context.Background(), []Step{{Name: "inspect", ReadOnly: true, Run: func(context.Context) error { return nil }}, step(tr, "backup", errors.New("no storage"), nil)})
	if !errors.As(err, &se) || se.RolledBack != "nothing was destroyed" {
		t.Errorf("err = %v, want nothing was destroyed", err)
	}
}

// TestStopAtABoundary: a closed Stop ends the run before the next step
// (never before the first), and the undos hear it was an interruption.
func TestStopAtABoundary(t *testing.T) {
	tr := &trace{}
	stop := make(chan struct{})
	close(stop)
	r := newRun(tr, stop)
	kept := &Outcome{Left: true, Said: "CT 9101 exists, partly provisioned"}
	err := r.Execute(context.Background(), []Step{step(tr, "clone", nil, kept), step(tr, "configure", nil, nil)})
	want := []string{"clone start", "run clone", "clone done", "undo clone interrupted at configure (ctx alive: true)"}
	if got := tr.get(); !reflect.DeepEqual(got, want) {
		t.Errorf("trace\n got %q\nwant %q", got, want)
	}
	var se *StepError
	if !errors.Is(err, ErrInterrupted) || !errors.As(err, &se) || se.Step != "configure" || !se.Left {
		t.Fatalf("err = %v", err)
	}
	if want := "CT 9101: stopped on request before step configure; CT 9101 exists, partly provisioned"; err.Error() != want {
		t.Errorf("message %q, want %q", err, want)
	}
}

// TestAbortedMidStep: a step cut short by a cancelled context makes the
// undos only say what is there, with a context of their own.
func TestAbortedMidStep(t *testing.T) {
	tr := &trace{}
	r := newRun(tr, nil)
	ctx, cancel := context.WithCancel(context.Background())
	cut := Step{Name: "start", Run: func(context.Context) error {
		cancel()
		return fmt.Errorf("start: %w", context.Canceled)
	}}
	err := r.Execute(ctx, []Step{step(tr, "clone", nil, &Outcome{Left: true, Said: "CT 9101 may exist"}), cut})
	if got := tr.get(); got[len(got)-1] != "undo clone aborted at start (ctx alive: true)" {
		t.Errorf("trace %q", got)
	}
	if !errors.Is(err, context.Canceled) || !errors.Is(err, ErrLeftBehind) {
		t.Errorf("err = %v", err)
	}
}

// TestDryRun: read-only steps run for real, the others only plan; nothing
// is checked, run or undone that could change anything, and nothing is
// audited.
func TestDryRun(t *testing.T) {
	tr := &trace{}
	audited := false
	r := New(Options{Reporter: tr, Audit: func(error, time.Duration) { audited = true }})
	mutating := step(tr, "clone", errors.New("must not run"), &Outcome{Said: "must not undo"})
	mutating.Check = func(context.Context) (string, error) { tr.add("check clone"); return "", nil }
	mutating.Plan = func(context.Context) ([]Call, error) {
		return []Call{{Method: "POST", Path: "/nodes/pve/lxc/9000/clone"}, {Method: "GET", Path: "/nodes/pve/tasks/{upid}/status"}}, nil
	}
	unplanned := step(tr, "verify", errors.New("must not run"), nil)
	preflight := step(tr, "preflight", nil, nil)
	preflight.ReadOnly = true
	calls, err := r.DryRun(context.Background(), []Step{preflight, mutating, unplanned})
	if err != nil {
		t.Fatal(err)
	}
	if len(calls) != 2 || calls[0].Method != "POST" {
		t.Errorf("calls = %+v", calls)
	}
	want := []string{"preflight start", "run preflight", "preflight done"}
	if got := tr.get(); !reflect.DeepEqual(got, want) {
		t.Errorf("trace\n got %q\nwant %q", got, want)
	}
	if audited {
		t.Error("a dry run was audited")
	}

	failing := step(tr, "validate", errors.New("bad hostname"), nil)
	failing.ReadOnly = true
	_, err = New(Options{}).DryRun(context.Background(), []Step{failing, mutating})
	var se *StepError
	if !errors.As(err, &se) || se.Step != "validate" || se.RolledBack != "" {
		t.Errorf("err = %v", err)
	}
}

// TestRetryPolicyPerStep: Run.Retry is the run's policy adjusted by the
// running step's hook, and each retry is progress of that step.
func TestRetryPolicyPerStep(t *testing.T) {
	tr := &trace{}
	base := pve.RetryPolicy{Attempts: 2, Base: time.Millisecond, Max: time.Millisecond}
	r := New(Options{Reporter: tr, Retry: base})
	var seen []int
	transient := &pve.APIError{Method: "POST", Path: "/nodes/pve/lxc/9000/clone", Status: 500, Message: "CT is locked (disk)"}
	try := func(ctx context.Context) error {
		attempts := 0
		return r.Retry().Do(ctx, "clone", func(context.Context) error {
			attempts++
			if attempts < 3 {
				return transient
			}
			return nil
		}, nil)
	}
	err := r.Execute(context.Background(), []Step{
		{Name: "patient", Retry: func(p pve.RetryPolicy) pve.RetryPolicy { p.Attempts = 5; seen = append(seen, p.Attempts); return p }, Run: try},
		{Name: "default", Run: try},
	})
	var se *StepError
	if !errors.As(err, &se) || se.Step != "default" {
		t.Fatalf("err = %v: the patient step retries five times, the default one twice", err)
	}
	infos := 0
	for _, l := range tr.get() {
		if strings.HasPrefix(l, "patient info: clone: ") && strings.Contains(l, "retrying in") {
			infos++
		}
	}
	if infos != 2 || !reflect.DeepEqual(seen, []int{5}) {
		t.Errorf("%d retry events of the patient step (want 2), hook saw %v\n%q", infos, seen, tr.get())
	}
}

// TestAuditHearsTheOutcome: Execute calls the audit hook once, with the
// outcome.
func TestAuditHearsTheOutcome(t *testing.T) {
	var got []error
	r := New(Options{Audit: func(err error, took time.Duration) {
		if took < 0 {
			t.Errorf("took %s", took)
		}
		got = append(got, err)
	}})
	boom := errors.New("boom")
	err := r.Execute(context.Background(), []Step{{Name: "a", Run: func(context.Context) error { return boom }}})
	if len(got) != 1 || got[0] != err || !errors.Is(got[0], boom) {
		t.Errorf("audited %v, want once with %v", got, err)
	}
}

// liveTrace is a trace that shows progress as it happens.
type liveTrace struct{ trace }

func (*liveTrace) Live() bool { return true }

// TestProgressReachesLiveReportersOnly: a step's progress (from another
// goroutine, as a task log reader reports) reaches a live reporter as
// PhaseProgress of that step; for another reporter there is nothing to
// report to. Events carry the guest's name.
func TestProgressReachesLiveReportersOnly(t *testing.T) {
	live := &liveTrace{}
	var names []string
	r := New(Options{VMID: func() int { return 0 }, Name: "web-01", Reporter: ReporterFunc(func(e Event) {
		names = append(names, e.Name)
		live.Report(e)
	})})
	if r.Live() {
		t.Fatal("a ReporterFunc is not live")
	}
	r = New(Options{VMID: func() int { return 0 }, Name: "web-01", Reporter: live})
	err := r.Execute(context.Background(), []Step{{Name: "clone", Run: func(context.Context) error {
		show := r.Progress()
		if show == nil {
			return errors.New("no progress for a live reporter")
		}
		done := make(chan struct{})
		go func() { defer close(done); show("copying 45%") }()
		<-done
		return nil
	}}})
	if err != nil {
		t.Fatal(err)
	}
	if got, want := live.get(), []string{"clone start", "clone progress: copying 45%", "clone done"}; !reflect.DeepEqual(got, want) {
		t.Errorf("events %q, want %q", got, want)
	}
	quiet := &trace{}
	r = New(Options{Reporter: quiet, Name: "web-01"})
	_ = r.Execute(context.Background(), []Step{{Name: "clone", Run: func(context.Context) error {
		if r.Progress() != nil {
			t.Error("a reporter that is not live got a progress function")
		}
		return nil
	}}})
	r = New(Options{Name: "web-01", Reporter: ReporterFunc(func(e Event) { names = append(names, e.Name) })})
	_ = r.Execute(context.Background(), []Step{{Name: "a", Run: func(context.Context) error { return nil }}})
	if len(names) != 2 || names[0] != "web-01" || names[1] != "web-01" {
		t.Errorf("event names %q", names)
	}
}
