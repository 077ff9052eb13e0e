package flow

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/migrahosting/cloudpods/provisioner/pve"
)

// Options set up one run of a flow.
type Options struct {
	// Kind and VMID name the guest the flow works on, in events and
	// errors. VMID is read at every event: a create learns its VMID in a
	// step (IPAM picks it). Nil reads as 0.
	Kind pve.GuestKind
	VMID func() int
	// Name is the guest's name (a pod's hostname), in events.
	Name string
	// Reporter hears every event; nil drops them.
	Reporter Reporter
	// Stop asks the run to stop at the next step boundary (SIGINT, a
	// service shutting down); cancelling ctx aborts mid-step instead.
	Stop <-chan struct{}
	// Retry is the operation-level retry policy steps take from
	// Run.Retry; every retry is reported as progress of the step running.
	Retry pve.RetryPolicy
	// UndoBudget bounds unwinding the ledger, which runs even when ctx
	// has ended (a timeout); 0 means a minute.
	UndoBudget time.Duration
	// Nothing is what a failed or stopped run says when nothing it did
	// remains: no undo had anything to report and no step that has no
	// undo changed anything ("nothing was created").
	Nothing string
	// Audit, when set, hears the outcome of Execute once it is known, with
	// the run's duration (a dry run is not audited).
	Audit  func(err error, took time.Duration)
	Logger logrus.FieldLogger
	// Now is the clock of events and the audit; nil is time.Now.
	Now func() time.Time
}

// Run is one execution of a flow: it emits the events, times the steps,
// keeps the ledger of undos, and turns a failure or a stop into a
// *StepError that says what was left. Steps call back into it (Warn, Info,
// Note, Retry) while they run; a Run is used by one goroutine at a time.
type Run struct {
	opts     Options
	log      logrus.FieldLogger
	start    time.Time
	current  *Step
	note     string
	seconds  map[string]float64
	warnings []string
	ledger   []ledgerEntry
	// changed: a step without an undo changed something, so the Nothing
	// phrase would no longer be true.
	changed bool
}

type ledgerEntry struct {
	step string
	undo func(ctx context.Context, rb Rollback) Outcome
}

// New prepares a run.
func New(opts Options) *Run {
	if opts.Reporter == nil {
		opts.Reporter = nopReporter{}
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.VMID == nil {
		opts.VMID = func() int { return 0 }
	}
	if opts.UndoBudget <= 0 {
		opts.UndoBudget = time.Minute
	}
	log := opts.Logger
	if log == nil {
		l := logrus.New()
		l.SetOutput(io.Discard)
		log = l
	}
	return &Run{opts: opts, log: log, start: opts.Now(), seconds: map[string]float64{}}
}

// Execute runs steps in order. It stops at the first failure, or at a step
// boundary once Stop is closed; either way it unwinds the ledger and
// returns a *StepError saying what is left.
func (r *Run) Execute(ctx context.Context, steps []Step) (err error) {
	if r.opts.Audit != nil {
		defer func() { r.opts.Audit(err, r.opts.Now().Sub(r.start)) }()
	}
	for i := range steps {
		s := &steps[i]
		if i > 0 && r.stopRequested() {
			said, left := r.unwind(ctx, Rollback{Cause: Interrupted, Step: s.Name})
			return r.stepError(s.Name, fmt.Errorf("%w before step %s", ErrInterrupted, s.Name), said, left)
		}
		if err := r.runStep(ctx, s); err != nil {
			rb := Rollback{Cause: Failed, Step: s.Name, Err: err}
			if errors.Is(err, context.Canceled) {
				rb.Cause = Aborted
			}
			said, left := r.unwind(ctx, rb)
			return r.stepError(s.Name, err, said, left)
		}
	}
	return nil
}

// DryRun derives a dry run from the same steps: ReadOnly steps run for
// real (with their events), every other step contributes its Plan. Nothing
// is changed and nothing enters the ledger.
func (r *Run) DryRun(ctx context.Context, steps []Step) ([]Call, error) {
	var calls []Call
	for i := range steps {
		s := &steps[i]
		if i > 0 && r.stopRequested() {
			return nil, r.stepError(s.Name, fmt.Errorf("%w before step %s", ErrInterrupted, s.Name), "", false)
		}
		if s.ReadOnly {
			if err := r.runStep(ctx, s); err != nil {
				return nil, r.stepError(s.Name, err, "", false)
			}
			continue
		}
		if s.Plan == nil {
			continue
		}
		r.current = s
		planned, err := s.Plan(ctx)
		r.current = nil
		if err != nil {
			return nil, r.stepError(s.Name, err, "", false)
		}
		calls = append(calls, planned...)
	}
	return calls, nil
}

func (r *Run) runStep(ctx context.Context, s *Step) error {
	r.current, r.note = s, ""
	defer func() { r.current = nil }()
	t0 := time.Now()
	took := func() float64 {
		d := time.Since(t0).Seconds()
		r.seconds[s.Name] = d
		return d
	}
	r.Event(s.Name, PhaseStart, "")
	if s.Check != nil {
		why, err := s.Check(ctx)
		if err == nil && why != "" {
			took()
			r.Event(s.Name, PhaseSkip, why)
			return nil
		}
		if err != nil {
			took()
			r.Event(s.Name, PhaseFail, err.Error())
			return err
		}
	}
	if s.Undo != nil {
		r.ledger = append(r.ledger, ledgerEntry{step: s.Name, undo: s.Undo})
	}
	err := s.Run(ctx)
	d := took()
	var skip *skipped
	switch {
	case errors.As(err, &skip):
		r.Event(s.Name, PhaseSkip, skip.why)
		return nil
	case err != nil:
		r.Event(s.Name, PhaseFail, err.Error())
		return err
	}
	if !s.ReadOnly && s.Undo == nil {
		r.changed = true
	}
	note := r.note
	if note == "" {
		note = fmt.Sprintf("%.2fs", d)
	}
	r.Event(s.Name, PhaseDone, note)
	return nil
}

// unwind runs the ledger newest first, until an undo leaves something
// behind, and says what happened.
func (r *Run) unwind(ctx context.Context, rb Rollback) (said string, left bool) {
	// The rollback must run even when ctx is what failed (a timeout).
	uctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), r.opts.UndoBudget)
	defer cancel()
	// What the undos report (a retry, a warning) is progress of the step
	// the run ended at.
	r.current = &Step{Name: rb.Step}
	defer func() { r.current = nil }()
	var main, asides []string
	for i := len(r.ledger) - 1; i >= 0; i-- {
		e := r.ledger[i]
		o := e.undo(uctx, rb)
		r.log.WithFields(logrus.Fields{"vmid": r.opts.VMID(), "step": e.step, "cause": rb.Cause.String(), "left": o.Left}).Debug("undo: " + o.Said)
		switch {
		case o.Said == "":
		case o.Aside:
			asides = append(asides, o.Said)
		default:
			main = append(main, o.Said)
		}
		if o.Left {
			left = true
			break
		}
	}
	r.ledger = nil
	if len(main) == 0 && !r.changed && r.opts.Nothing != "" {
		main = []string{r.opts.Nothing}
	}
	return strings.Join(append(main, asides...), "; "), left
}

func (r *Run) stepError(step string, err error, said string, left bool) error {
	return &StepError{Step: step, Kind: r.opts.Kind, VMID: r.opts.VMID(), Err: err, RolledBack: said, Left: left}
}

func (r *Run) stopRequested() bool {
	select {
	case <-r.opts.Stop:
		return true
	default:
		return false
	}
}

// Event reports progress of step (the running one, or another such as
// "rollback").
func (r *Run) Event(step string, ph Phase, msg string) {
	now := r.opts.Now()
	r.opts.Reporter.Report(Event{Time: now, Kind: r.opts.Kind, VMID: r.opts.VMID(), Name: r.opts.Name, Step: step, Phase: ph, Message: msg, Elapsed: now.Sub(r.start)})
}

// Live says the reporter shows progress as it happens, so a long wait is
// worth reporting on (Progress).
func (r *Run) Live() bool {
	l, ok := r.opts.Reporter.(LiveReporter)
	return ok && l.Live()
}

// Progress returns what reports where the running step is (PhaseProgress)
// to a live reporter; nil when the reporter is not live. It may be called
// from another goroutine while the step waits, until the step returns.
func (r *Run) Progress() func(msg string) {
	if !r.Live() {
		return nil
	}
	step := r.currentName()
	return func(msg string) { r.Event(step, PhaseProgress, msg) }
}

func (r *Run) currentName() string {
	if r.current == nil {
		return ""
	}
	return r.current.Name
}

// Warn records a warning of the running step: reported now, and kept for
// the result (Warnings).
func (r *Run) Warn(msg string) {
	r.warnings = append(r.warnings, msg)
	r.Event(r.currentName(), PhaseWarn, msg)
}

// SetKind names the guest's kind once a step has found it (destroy
// learns whether a VMID holds a container or a VM).
func (r *Run) SetKind(k pve.GuestKind) { r.opts.Kind = k }

// Info reports what the running step is doing.
func (r *Run) Info(msg string) { r.Event(r.currentName(), PhaseInfo, msg) }

// Note sets the message of the running step's done event; without one it
// reports the step's duration.
func (r *Run) Note(msg string) { r.note = msg }

// Retry is the retry policy for the running step: the run's, adjusted by
// the step's Retry hook, each retry reported as an info event of the step.
func (r *Run) Retry() pve.RetryPolicy {
	pol := r.opts.Retry
	step := r.currentName()
	if r.current != nil && r.current.Retry != nil {
		pol = r.current.Retry(pol)
	}
	pol.OnRetry = func(what string, attempt int, err error, wait time.Duration) {
		r.log.WithFields(logrus.Fields{"vmid": r.opts.VMID(), "step": step, "attempt": attempt}).WithError(err).Debug("retrying " + what)
		r.Event(step, PhaseInfo, fmt.Sprintf("%s: %v; retrying in %s", what, err, wait.Round(time.Millisecond)))
	}
	return pol
}

// Seconds is how long each step that started took (a failed or skipped
// one included).
func (r *Run) Seconds() map[string]float64 {
	out := make(map[string]float64, len(r.seconds))
	for k, v := range r.seconds {
		out[k] = v
	}
	return out
}

// Warnings are the warnings of the run so far, in order.
func (r *Run) Warnings() []string { return append([]string(nil), r.warnings...) }
