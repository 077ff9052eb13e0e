package pve

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"
)

func noSleep(context.Context, time.Duration) error { return nil }

func TestRetryPolicy(t *testing.T) {
	locked := &APIError{Status: 500, Message: "CT is locked (disk)"}
	lost := &APIError{Status: 596, Message: "Connection timed out"}
	exists := &APIError{Status: 500, Message: "CT 9101 already exists on node 'pve'"}
	final := &APIError{Status: 500, Message: "unable to modify read-only option: 'unprivileged'"}
	tests := []struct {
		name      string
		answers   []error
		checkDone bool
		wantCalls int
		wantErr   error
	}{
		{"success first", []error{nil}, false, 1, nil},
		{"lock then success", []error{locked, locked, nil}, false, 3, nil},
		{"lock until the bound", []error{locked, locked, locked, locked}, false, 4, ErrLocked},
		{"final error is not retried", []error{final, nil}, false, 1, final},
		{"lost answer, it happened", []error{lost}, true, 1, nil},
		{"lost answer, it did not happen", []error{lost, nil}, false, 2, nil},
		{"already exists and ours", []error{exists}, true, 1, nil},
		{"already exists, not ours", []error{exists, nil}, false, 1, ErrAlreadyExists},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			calls := 0
			p := RetryPolicy{Attempts: 4, Base: time.Millisecond, Max: time.Millisecond, Sleep: noSleep}
			err := p.Do(context.Background(), "clone", func(context.Context) error {
				calls++
				return tt.answers[calls-1]
			}, func(context.Context, error) (bool, error) { return tt.checkDone, nil })
			if calls != tt.wantCalls {
				t.Errorf("calls = %d, want %d", calls, tt.wantCalls)
			}
			if tt.wantErr == nil && err != nil || tt.wantErr != nil && !errors.Is(err, tt.wantErr) {
				t.Errorf("err = %v, want %v", err, tt.wantErr)
			}
		})
	}
}

func TestRetryStopsOnCancel(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	calls := 0
	err := RetryPolicy{Attempts: 100, Base: time.Hour, Max: time.Hour}.Do(ctx, "start", func(context.Context) error {
		calls++
		cancel()
		return &APIError{Status: 500, Message: "CT is locked (create)"}
	}, nil)
	if calls != 1 || !errors.Is(err, ErrLocked) {
		t.Errorf("calls = %d, err = %v; want one call and the lock error", calls, err)
	}
}

func TestBackoffIsBoundedAndJittered(t *testing.T) {
	p := RetryPolicy{Base: 100 * time.Millisecond, Max: time.Second}
	for attempt := 1; attempt < 40; attempt++ {
		d := p.backoff(attempt)
		if d <= 0 || d > time.Second {
			t.Fatalf("backoff(%d) = %v, want in (0, 1s]", attempt, d)
		}
	}
}

func TestRetryLeavesReadsToTheTransport(t *testing.T) {
	for _, tt := range []struct {
		name string
		err  error
		want int
	}{
		{"a read the transport gave up on", &TransportError{Method: "GET", Path: "/cluster/resources", Err: errors.New("EOF")}, 1},
		{"a proxy's 503 on a read", &APIError{Method: "GET", Status: 503}, 1},
		{"a write whose answer was lost", &TransportError{Method: "POST", Path: "/nodes/pve/lxc/9000/clone", Err: errors.New("EOF")}, 3},
		{"a console that would not attach", &ConsoleError{VMID: 9101, Stage: "websocket", Err: &TransportError{Method: "GET", Err: errors.New("EOF")}}, 3},
	} {
		t.Run(tt.name, func(t *testing.T) {
			calls := 0
			_ = RetryPolicy{Attempts: 3, Sleep: noSleep}.Do(context.Background(), "op", func(context.Context) error {
				calls++
				return tt.err
			}, nil)
			if calls != tt.want {
				t.Errorf("calls = %d, want %d", calls, tt.want)
			}
		})
	}
}

func TestLockWaitBoundsLocksByTime(t *testing.T) {
	locked := &APIError{Method: "POST", Status: 500, Message: "CT is locked (disk)"}
	calls := 0
	err := RetryPolicy{Attempts: 2, Base: time.Millisecond, Max: 2 * time.Millisecond, LockWait: 50 * time.Millisecond}.Do(context.Background(), "clone",
		func(context.Context) error {
			calls++
			return locked
		}, nil)
	if calls <= 2 || !errors.Is(err, ErrLocked) {
		t.Errorf("calls = %d, err = %v; want locks retried past Attempts until LockWait", calls, err)
	}
}

func TestTaskRetriesATaskRefusedByALock(t *testing.T) {
	var waits []string
	starts := 0
	upid, err := RetryPolicy{Attempts: 3, Sleep: noSleep}.Task(context.Background(), "start CT 9101",
		func(context.Context) (string, error) {
			starts++
			return fmt.Sprintf("UPID:%d", starts), nil
		},
		func(_ context.Context, upid string) error {
			waits = append(waits, upid)
			if len(waits) == 1 {
				return &TaskError{Type: "vzstart", ExitStatus: "CT is locked (create)"}
			}
			return nil
		}, nil)
	if err != nil || upid != "UPID:2" || starts != 2 {
		t.Errorf("upid %q, starts %d, err %v; want the second start waited on", upid, starts, err)
	}
}

func TestTaskCheckSettlesATaskThatFailedWithItsEffectInPlace(t *testing.T) {
	_, err := RetryPolicy{Attempts: 3, Sleep: noSleep}.Task(context.Background(), "start CT 9101",
		func(context.Context) (string, error) { return "UPID:1", nil },
		func(context.Context, string) error {
			return &TaskError{Type: "vzstart", ExitStatus: "CT 9101 already running"}
		},
		func(context.Context, error) (bool, error) { return true, nil })
	if err != nil {
		t.Errorf("err = %v, want the running CT to count as started", err)
	}
}
