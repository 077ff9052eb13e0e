package flow

import (
	"context"
	"errors"

	"github.com/migrahosting/cloudpods/provisioner/pve"
)

// Step is one unit of a flow. Only Name and Run are required.
type Step struct {
	// Name appears in events, errors, results and timings.
	Name string
	// ReadOnly steps change nothing, in PVE or elsewhere (validate,
	// preflight): a dry run runs them for real.
	ReadOnly bool
	// Check, when set, says before Run whether the step's effect is
	// already in place: a non-empty reason skips Run and is reported as the
	// step's skip. It must change nothing. A dry run does not call it: the
	// state it looks at may come from steps the dry run only plans.
	Check func(ctx context.Context) (done string, err error)
	// Run does the work. It may find the work already done only on the way
	// (a file in place, seen once inside the console) and then returns
	// Skip(reason).
	Run func(ctx context.Context) error
	// Plan lists the calls Run would make, for a dry run of a step that is
	// not ReadOnly. It may read (which address is free, whether the guest
	// exists) but never change anything. Nil plans no calls.
	Plan func(ctx context.Context) ([]Call, error)
	// Undo reverses what Run did. The engine enters it in the run's ledger
	// when Run starts (a step may fail after acting: a clone whose task
	// failed mid-copy), never for a step Check skipped, and runs the
	// ledger newest first when a later step fails or the run stops. It
	// must tell from the state what this run made and leave alone what it
	// did not.
	Undo func(ctx context.Context, rb Rollback) Outcome
	// Retry, when set, adjusts the run's retry policy while this step runs
	// (Run.Retry hands out the adjusted policy).
	Retry func(pve.RetryPolicy) pve.RetryPolicy
}

// Call is one call a step would make, for a dry run. Method is an HTTP
// method for a PVE call, or the name of another system ("IPAM").
type Call struct {
	Method string `json:"method"`
	Path   string `json:"path"`
	Params string `json:"params,omitempty"`
	Note   string `json:"note,omitempty"`
}

// skipped is a Run that found its work already done.
type skipped struct{ why string }

func (s *skipped) Error() string { return "already done: " + s.why }

// Skip is what Run returns when it found the work already done; why is
// reported as the step's skip.
func Skip(why string) error { return &skipped{why: why} }

// IsSkip reports whether err is a Run's Skip: a step that runs another
// step's Run inside its own (a sub-flow) passes it on.
func IsSkip(err error) bool {
	var s *skipped
	return errors.As(err, &s)
}

// Rollback is what an undo is told: why the ledger is unwound, and where.
type Rollback struct {
	Cause Cause
	// Step is the step that failed, or the one the run stopped before.
	Step string
	// Err is the step's failure; nil when the run was interrupted.
	Err error
}

// Cause says why the ledger is unwound.
type Cause int

const (
	// Failed: a step failed. Undo what this run made, unless the run was
	// asked to keep it for inspection.
	Failed Cause = iota + 1
	// Interrupted: the run stopped at a step boundary on request (SIGINT,
	// a service shutting down). Keep what a re-run continues from; give
	// back what nothing uses.
	Interrupted
	// Aborted: ctx was cancelled mid-step (a second signal). Change nothing
	// that a step might still be using: only say what is there.
	Aborted
)

func (c Cause) String() string {
	switch c {
	case Failed:
		return "failed"
	case Interrupted:
		return "interrupted"
	case Aborted:
		return "aborted"
	}
	return "unknown"
}

// Outcome is what one undo did.
type Outcome struct {
	// Said tells the operator what the undo did or found ("rolled back:
	// CT 9101 destroyed"); "" when there was nothing to undo.
	Said string
	// Aside marks Said as bookkeeping ("10.1.10.91 released in IPAM"),
	// which never stands for the state of the guest: a message of asides
	// only is led by the run's Nothing phrase.
	Aside bool
	// Left: something this run made remains (the undo failed, was told to
	// keep it, or the cause keeps it for a re-run). The steps before it
	// are not undone, since it still needs what they did.
	Left bool
}

// ErrInterrupted: the run stopped at a step boundary on request.
var ErrInterrupted = errors.New("interrupted")

// ErrLeftBehind: a failed run left something behind at its guest (the
// rollback failed, the run was told to keep it, or it was there before
// the run); the error says how to finish or remove it.
var ErrLeftBehind = errors.New("left a CT behind")
