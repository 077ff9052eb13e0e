package pve

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"time"
)

// RetryPolicy is the one operation-level retry policy of CloudPods
// (docs/retry-policy.md). The transport retries idempotent requests on its
// own (network errors, 429, 502/503/504, 595/596); this policy decides, per
// operation, about everything else: where repeating is safe, which 500s are
// transient, and how an unknown outcome is settled before a retry. An error
// of an idempotent request is final here, so no request is retried by both
// layers.
type RetryPolicy struct {
	// Attempts bounds the tries, the first included.
	Attempts int
	// Base and Max bound the jittered exponential backoff.
	Base time.Duration
	Max  time.Duration
	// LockWait, when set, bounds lock refusals by time instead of by
	// Attempts: a lock is held by another task (a clone of the same
	// template, a backup), so it lasts as long as that task does.
	LockWait time.Duration
	// Sleep waits between tries; nil uses a ctx-aware timer. Tests and
	// replays shrink the wait here.
	Sleep func(ctx context.Context, d time.Duration) error
	// OnRetry, if set, hears about every retry before its wait (progress,
	// logs).
	OnRetry func(what string, attempt int, err error, wait time.Duration)
}

// DefaultRetryPolicy: ten tries with a backoff from half a second capped
// at 10 s cover about a minute and a half of transient refusals; locks are
// waited out for as long as a task may take (the provisioner sets LockWait
// to its task timeout).
var DefaultRetryPolicy = RetryPolicy{Attempts: 10, Base: 500 * time.Millisecond, Max: 10 * time.Second}

// Op is one attempt of a non-idempotent call.
type Op func(ctx context.Context) error

// Check looks at PVE's state after an attempt whose outcome is unknown (596,
// dropped connection, timeout) or that was refused as already done ("CT 9101
// already exists", "CT 9101 already running"). It answers done=true when the
// effect is in place, so the operation counts as succeeded without
// repeating it.
type Check func(ctx context.Context, attemptErr error) (done bool, err error)

// Do runs op until it succeeds, fails for good or the bound is reached.
// Transient refusals (locks, no worker, cfs lock, a proxy's 5xx) are retried
// with backoff. An unknown outcome is settled through check first and
// retried only when check finds the effect absent; without a check, op must
// be safe to repeat. An "already done" refusal that check does not confirm
// as ours is final, as is any other error.
func (p RetryPolicy) Do(ctx context.Context, what string, op Op, check Check) error {
	if p.Attempts <= 0 {
		p.Attempts = 1
	}
	begin := time.Now()
	for attempt := 1; ; attempt++ {
		err := op(ctx)
		if err == nil {
			return nil
		}
		if ctx.Err() != nil {
			return fmt.Errorf("%s: %w", what, err)
		}
		alreadyDone := errors.Is(err, ErrAlreadyExists) || errors.Is(err, ErrAlreadyRunning)
		if check != nil && (alreadyDone || errors.Is(err, ErrMaybeApplied)) {
			done, cerr := check(ctx, err)
			if cerr != nil {
				return fmt.Errorf("%s: %w (and checking whether it happened failed: %w)", what, err, cerr)
			}
			if done {
				return nil
			}
		}
		if alreadyDone || failedRead(err) || !(errors.Is(err, ErrTransient) || errors.Is(err, ErrMaybeApplied)) {
			return fmt.Errorf("%s: %w", what, err)
		}
		if !p.more(attempt, begin, err) {
			return fmt.Errorf("%s: gave up after %d attempts in %s: %w", what, attempt, time.Since(begin).Round(time.Millisecond), err)
		}
		wait := p.backoff(attempt)
		if p.OnRetry != nil {
			p.OnRetry(what, attempt, err, wait)
		}
		if serr := p.sleep(ctx, wait); serr != nil {
			return fmt.Errorf("%s: %w (while waiting to retry after: %v)", what, serr, err)
		}
	}
}

// Task runs a call that starts a worker task, then waits for the task, as
// one operation under Do: a call refused as transient is retried, and so is
// a task that ended in a transient error (a start refused by a lock another
// task held). check settles unknown outcomes and tasks that failed with
// their effect in place (a second start finding the CT running). It returns
// the UPID of the task that ran, "" when check found the work done without
// a task of ours to wait on.
func (p RetryPolicy) Task(ctx context.Context, what string, start func(ctx context.Context) (string, error),
	wait func(ctx context.Context, upid string) error, check Check) (string, error) {
	var upid string
	err := p.Do(ctx, what, func(ctx context.Context) error {
		id, err := start(ctx)
		upid = id
		if err != nil {
			return err
		}
		return wait(ctx, id)
	}, check)
	return upid, err
}

// more reports whether another attempt fits the bound.
func (p RetryPolicy) more(attempt int, begin time.Time, err error) bool {
	if p.LockWait > 0 && errors.Is(err, ErrLocked) {
		return time.Since(begin) < p.LockWait
	}
	return attempt < p.Attempts
}

// backoff is exponential from Base, capped at Max, with equal jitter (half
// fixed, half random): processes that collided on one lock spread out, and
// none retries sooner than half the step.
func (p RetryPolicy) backoff(attempt int) time.Duration {
	base, max := p.Base, p.Max
	if base <= 0 {
		base = 100 * time.Millisecond
	}
	if max < base {
		max = base
	}
	d := base << min(attempt-1, 20)
	if d > max || d <= 0 {
		d = max
	}
	return d/2 + rand.N(d/2+1)
}

func (p RetryPolicy) sleep(ctx context.Context, d time.Duration) error {
	if p.Sleep != nil {
		return p.Sleep(ctx, d)
	}
	return realClock{}.Sleep(ctx, d)
}
