package pve

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"time"
)

// RetryPolicy is the one operation-level retry policy of CloudPods. The
// transport retries only idempotent reads on network errors and 429/502/503/
// 504 (see goproxmox); everything PVE answers with a message is decided here,
// per operation, where we know whether repeating it is safe.
type RetryPolicy struct {
	// Attempts bounds the tries, the first included.
	Attempts int
	// Base and Max bound the full-jitter exponential backoff.
	Base time.Duration
	Max  time.Duration
	// Sleep waits between tries; nil uses a ctx-aware timer. Tests and
	// replays shrink the wait here.
	Sleep func(ctx context.Context, d time.Duration) error
}

// DefaultRetryPolicy: a clone of a template held by another process's clone
// waits out a copy of a few seconds to minutes; ten tries capped at 10 s
// cover about a minute and a half.
var DefaultRetryPolicy = RetryPolicy{Attempts: 10, Base: 500 * time.Millisecond, Max: 10 * time.Second}

// Op is one attempt of a non-idempotent call.
type Op func(ctx context.Context) error

// Check looks at PVE's state after an attempt whose outcome is unknown (596,
// dropped connection) or that was refused as already done ("CT 9101 already
// exists"). It answers done=true when the effect is already in place, so the
// operation counts as succeeded without repeating it.
type Check func(ctx context.Context, attemptErr error) (done bool, err error)

// Do runs op until it succeeds, fails for good or the tries run out.
// Transient refusals (locks, no worker, cfs lock, 5xx from a proxy) are
// retried with backoff; an unknown outcome is first reconciled through
// check; any other error is final.
func (p RetryPolicy) Do(ctx context.Context, what string, op Op, check Check) error {
	if p.Attempts <= 0 {
		p.Attempts = 1
	}
	var err error
	for attempt := 1; ; attempt++ {
		err = op(ctx)
		if err == nil {
			return nil
		}
		if ctx.Err() != nil {
			return fmt.Errorf("%s: %w", what, err)
		}
		if check != nil && (errors.Is(err, ErrMaybeApplied) || errors.Is(err, ErrAlreadyExists)) {
			done, cerr := check(ctx, err)
			if cerr != nil {
				return fmt.Errorf("%s: %w (and checking whether it happened failed: %v)", what, err, cerr)
			}
			if done {
				return nil
			}
			if errors.Is(err, ErrAlreadyExists) {
				return fmt.Errorf("%s: %w", what, err)
			}
		} else if !errors.Is(err, ErrTransient) && !errors.Is(err, ErrMaybeApplied) {
			return fmt.Errorf("%s: %w", what, err)
		}
		if attempt >= p.Attempts {
			return fmt.Errorf("%s: gave up after %d attempts: %w", what, attempt, err)
		}
		if serr := p.sleep(ctx, p.backoff(attempt)); serr != nil {
			return fmt.Errorf("%s: %w (while waiting to retry after: %v)", what, serr, err)
		}
	}
}

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
	// Full jitter spreads processes that collided on one lock.
	return d/2 + rand.N(d/2+1)
}

func (p RetryPolicy) sleep(ctx context.Context, d time.Duration) error {
	if p.Sleep != nil {
		return p.Sleep(ctx, d)
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}
