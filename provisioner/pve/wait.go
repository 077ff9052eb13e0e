package pve

import (
	"context"
	"errors"
	"fmt"
	"time"
)

// WaitOptions tune WaitTask.
type WaitOptions struct {
	// Timeout bounds the whole wait; 0 means only ctx bounds it.
	Timeout time.Duration
	// MinInterval and MaxInterval bound the polling interval. The interval
	// grows with the task's age (a fifth of it), so a short task is seen
	// finishing within milliseconds and a long ZFS copy costs one request a
	// second at most.
	MinInterval time.Duration
	MaxInterval time.Duration
	// Expect is how long this kind of task usually takes (clones of one
	// template take about the same time). With it, the wait sleeps through
	// most of the task and polls at MinInterval around its expected end:
	// fewer requests, and the end is seen sooner.
	Expect time.Duration
	// LogTail is how many log lines a failed task's error carries.
	LogTail int
	// OnPoll, if set, is called after every status read (progress, metrics).
	OnPoll func(TaskStatus)
}

func (o WaitOptions) withDefaults() WaitOptions {
	if o.MinInterval <= 0 {
		o.MinInterval = 20 * time.Millisecond
	}
	if o.MaxInterval <= 0 {
		o.MaxInterval = time.Second
	}
	if o.LogTail <= 0 {
		o.LogTail = 5
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
	start := time.Now()
	timer := time.NewTimer(0)
	defer timer.Stop()
	for {
		select {
		case <-ctx.Done():
			if errors.Is(ctx.Err(), context.DeadlineExceeded) {
				return TaskStatus{}, fmt.Errorf("task %s: %w after %s", upid, ErrWaitTimeout, time.Since(start).Round(time.Millisecond))
			}
			return TaskStatus{}, fmt.Errorf("task %s: %w", upid, ctx.Err())
		case <-timer.C:
		}
		st, err := api.TaskStatus(ctx, node, upid)
		if err != nil {
			if ctx.Err() != nil {
				continue // report the deadline, not the aborted request
			}
			return TaskStatus{}, fmt.Errorf("task %s status: %w", upid, err)
		}
		if opts.OnPoll != nil {
			opts.OnPoll(st)
		}
		if !st.Running() {
			if st.Succeeded() {
				return st, nil
			}
			return st, &TaskError{UPID: upid, Type: st.Type, ExitStatus: st.ExitStatus, LogTail: logTail(ctx, api, node, upid, opts.LogTail)}
		}
		timer.Reset(pollInterval(time.Since(start), opts))
	}
}

func pollInterval(age time.Duration, o WaitOptions) time.Duration {
	if o.Expect > 0 && age < o.Expect*3/2 {
		wake := o.Expect * 19 / 20
		return max(o.MinInterval, min(o.MaxInterval, wake-age))
	}
	d := age / 5
	if d < o.MinInterval {
		return o.MinInterval
	}
	if d > o.MaxInterval {
		return o.MaxInterval
	}
	return d
}

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
