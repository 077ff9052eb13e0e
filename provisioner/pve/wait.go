package pve

import (
	"context"
	"errors"
	"fmt"
	"time"
)

// Expectation is what a task of one kind usually takes on a node, learnt
// from PVE's task history and from the waits before: the wait sleeps
// through most of the task and polls densely only around its expected end.
type Expectation struct {
	// Duration is the expected time from the task's start to its end.
	Duration time.Duration
	// Spread is how far off Duration the end may fall (about two standard
	// deviations): the wait polls densely within Duration ± Spread.
	Spread time.Duration
	// Samples is how many finished tasks the expectation stands on; 0
	// means nothing is known and the wait polls blindly.
	Samples int
}

// Known says whether there is anything to expect.
func (e Expectation) Known() bool { return e.Samples > 0 }

// WaitOptions tune WaitTask.
type WaitOptions struct {
	// Timeout bounds the whole wait; 0 means only ctx bounds it.
	Timeout time.Duration
	// Expect is what this kind of task usually takes. With it the wait
	// sleeps until shortly before the expected end, then polls every
	// MinInterval to a few: few requests, and the end is seen within
	// tens of milliseconds.
	Expect Expectation
	// MinInterval is the shortest interval between two polls, the one
	// near an expected end that is well known (default 40 ms).
	MinInterval time.Duration
	// BlindInterval is the interval of a wait with nothing to expect while
	// its task is young, and the longest one near an expected end (default
	// 100 ms): the first task of a kind is seen ending within it.
	BlindInterval time.Duration
	// MaxInterval is the longest interval of a blind wait, reached as its
	// task ages (a thirtieth of its age, so a 30 s task is polled once a
	// second), and of a task that outlasts its expected end (default 1 s).
	MaxInterval time.Duration
	// LongestSleep bounds a sleep towards an expected end that is far
	// away, so a long task that failed early is not waited out (default
	// 10 s).
	LongestSleep time.Duration
	// LogTail is how many log lines a failed task's error carries.
	LogTail int
	// OnPoll, if set, is called after every status read (progress, metrics).
	OnPoll func(TaskStatus)
	// Observe, if set, hears how long a task that succeeded ran, as far as
	// the polls tell: what the next wait for its kind learns from.
	Observe func(TaskObservation)
	// Clock is what the wait sleeps on and measures ages with; nil is the
	// real one. Replays of recorded traffic walk through the recorded polls
	// without sleeping (NoSleep).
	Clock Clock
}

// Clock tells time and sleeps.
type Clock interface {
	Now() time.Time
	// Sleep waits d or until ctx ends.
	Sleep(ctx context.Context, d time.Duration) error
}

type realClock struct{}

func (realClock) Now() time.Time { return time.Now() }

func (realClock) Sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

// NoSleep is the real clock without sleeping: for replays of recorded
// traffic, whose polls were answered already.
type NoSleep struct{}

func (NoSleep) Now() time.Time { return time.Now() }

func (NoSleep) Sleep(ctx context.Context, _ time.Duration) error { return ctx.Err() }

// TaskObservation brackets a task's end between two polls, as ages from
// the start of the wait (each the middle of its request): the task ended
// after LastRunning (0 when the first poll saw it stopped) and before
// FirstStopped.
type TaskObservation struct {
	LastRunning, FirstStopped time.Duration
}

// Duration is the middle of the bracket, and HalfWidth how far off it may be.
func (o TaskObservation) Duration() time.Duration  { return (o.LastRunning + o.FirstStopped) / 2 }
func (o TaskObservation) HalfWidth() time.Duration { return (o.FirstStopped - o.LastRunning) / 2 }

func (o WaitOptions) withDefaults() WaitOptions {
	if o.MinInterval <= 0 {
		o.MinInterval = 40 * time.Millisecond
	}
	if o.BlindInterval <= 0 {
		o.BlindInterval = 100 * time.Millisecond
	}
	if o.MaxInterval <= 0 {
		o.MaxInterval = time.Second
	}
	if o.LongestSleep <= 0 {
		o.LongestSleep = 10 * time.Second
	}
	o.BlindInterval = max(o.BlindInterval, o.MinInterval)
	o.MaxInterval = max(o.MaxInterval, o.BlindInterval)
	o.LongestSleep = max(o.LongestSleep, o.MaxInterval)
	if o.LogTail <= 0 {
		o.LogTail = 5
	}
	if o.Clock == nil {
		o.Clock = realClock{}
	}
	return o
}

// ErrWaitTimeout: the task is still running when the wait gives up. The task
// itself goes on in PVE.
var ErrWaitTimeout = errors.New("timed out waiting for task")

// WaitTask polls a task until it stops. A task ending in OK or WARNINGS
// returns its final status and nil; any other exit returns a *TaskError with
// the tail of the task log.
func WaitTask(ctx context.Context, api API, node, upid string, opts WaitOptions) (TaskStatus, error) {
	opts = opts.withDefaults()
	if opts.Timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, opts.Timeout)
		defer cancel()
	}
	clock := opts.Clock
	start := clock.Now()
	since := func() time.Duration { return clock.Now().Sub(start) }
	var lastRunning time.Duration
	delay := time.Duration(0) // blind: a task that failed at its start is seen at once
	if opts.Expect.Known() {
		delay = pollDelay(0, opts)
	}
	for {
		if err := clock.Sleep(ctx, delay); err != nil || ctx.Err() != nil {
			switch {
			case errors.Is(ctx.Err(), context.DeadlineExceeded):
				return TaskStatus{}, fmt.Errorf("task %s: %w after %s", upid, ErrWaitTimeout, since().Round(time.Millisecond))
			case ctx.Err() != nil:
				return TaskStatus{}, fmt.Errorf("task %s: %w", upid, ctx.Err())
			}
			return TaskStatus{}, fmt.Errorf("task %s: %w", upid, err)
		}
		sent := since()
		st, err := api.TaskStatus(ctx, node, upid)
		if err != nil {
			if ctx.Err() != nil {
				delay = 0
				continue // report the deadline, not the aborted request
			}
			return TaskStatus{}, fmt.Errorf("task %s status: %w", upid, err)
		}
		at := (sent + since()) / 2
		if opts.OnPoll != nil {
			opts.OnPoll(st)
		}
		if st.Running() {
			lastRunning = at
			delay = pollDelay(at, opts)
			continue
		}
		if !st.Succeeded() {
			return st, &TaskError{UPID: upid, Type: st.Type, ExitStatus: st.ExitStatus, LogTail: logTail(ctx, api, node, upid, opts.LogTail)}
		}
		if opts.Observe != nil {
			opts.Observe(TaskObservation{LastRunning: lastRunning, FirstStopped: at})
		}
		return st, nil
	}
}

// pollDelay is how long to wait before the next poll, the task being age
// old. With nothing to expect (the first poll is at once) it polls every
// BlindInterval while the task is young and a thirtieth of its age as it
// grows old, up to MaxInterval. With an
// expectation it sleeps until the window Duration ± Spread opens (in steps
// of LongestSleep), polls within it every half of the spread (between
// MinInterval and BlindInterval), and past it falls back to intervals that
// grow with how far past the window the task runs.
func pollDelay(age time.Duration, o WaitOptions) time.Duration {
	e := o.Expect
	if !e.Known() {
		return clamp(age/30, o.BlindInterval, o.MaxInterval)
	}
	spread := max(e.Spread, o.MinInterval)
	open, end := e.Duration-spread, e.Duration+spread
	dense := clamp(spread/2, o.MinInterval, o.BlindInterval)
	switch {
	case age < open:
		return min(open-age, o.LongestSleep)
	case age <= end:
		return dense
	default:
		return clamp((age-open)/4, dense, o.MaxInterval)
	}
}

func clamp(d, lo, hi time.Duration) time.Duration { return max(lo, min(hi, d)) }

// logTail fetches the last n lines of a task log, best effort: the log is
// for the operator's eyes and must not hide the task's own error.
func logTail(ctx context.Context, api API, node, upid string, n int) []string {
	lines, err := api.TaskLog(ctx, node, upid, 0, 0)
	if err != nil {
		return nil
	}
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return lines
}
