package pve

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"
)

// taskAPI answers task status from a script; other API methods are not
// used by WaitTask.
type taskAPI struct {
	API
	mu     sync.Mutex
	states []TaskStatus
	polls  int
	log    []string
}

func (a *taskAPI) TaskStatus(ctx context.Context, node, upid string) (TaskStatus, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	st := a.states[min(a.polls, len(a.states)-1)]
	a.polls++
	return st, nil
}

func (a *taskAPI) TaskLog(ctx context.Context, node, upid string, start, limit int) ([]string, error) {
	return a.log, nil
}

func TestWaitTask(t *testing.T) {
	running := TaskStatus{Status: "running", Type: "vzclone"}
	tests := []struct {
		name     string
		final    TaskStatus
		wantErr  error
		wantTail int
	}{
		{"ok", TaskStatus{Status: "stopped", ExitStatus: "OK"}, nil, 0},
		{"warnings are success", TaskStatus{Status: "stopped", ExitStatus: "WARNINGS: 2"}, nil, 0},
		{"error carries the log tail", TaskStatus{Status: "stopped", Type: "vzclone", ExitStatus: "clone failed: out of space"}, ErrTaskFailed, 5},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			log := []string{"1", "2", "3", "4", "5", "6", "TASK ERROR: clone failed: out of space"}
			api := &taskAPI{states: []TaskStatus{running, running, tt.final}, log: log}
			st, err := WaitTask(context.Background(), api, "pve", "UPID:x", WaitOptions{MinInterval: time.Millisecond})
			if tt.wantErr == nil {
				if err != nil || st.ExitStatus != tt.final.ExitStatus {
					t.Fatalf("WaitTask = %+v, %v", st, err)
				}
				return
			}
			var te *TaskError
			if !errors.Is(err, tt.wantErr) || !errors.As(err, &te) {
				t.Fatalf("err = %v, want %v", err, tt.wantErr)
			}
			if len(te.LogTail) != tt.wantTail || te.LogTail[len(te.LogTail)-1] != log[len(log)-1] {
				t.Errorf("log tail = %q", te.LogTail)
			}
		})
	}
}

func TestWaitTaskTimeoutAndCancel(t *testing.T) {
	api := &taskAPI{states: []TaskStatus{{Status: "running"}}}
	_, err := WaitTask(context.Background(), api, "pve", "UPID:x", WaitOptions{Timeout: 30 * time.Millisecond, MinInterval: time.Millisecond})
	if !errors.Is(err, ErrWaitTimeout) {
		t.Errorf("err = %v, want ErrWaitTimeout", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_, err = WaitTask(ctx, api, "pve", "UPID:x", WaitOptions{})
	if !errors.Is(err, context.Canceled) {
		t.Errorf("err = %v, want context.Canceled", err)
	}
}

func TestPollIntervalGrowsWithAgeWithinBounds(t *testing.T) {
	o := WaitOptions{}.withDefaults()
	tests := []struct {
		age  time.Duration
		want time.Duration
	}{
		{0, 20 * time.Millisecond},
		{500 * time.Millisecond, 100 * time.Millisecond},
		{time.Minute, time.Second},
	}
	for _, tt := range tests {
		if got := pollInterval(tt.age, o); got != tt.want {
			t.Errorf("pollInterval(%v) = %v, want %v", tt.age, got, tt.want)
		}
	}
}

func TestPollIntervalWithExpectedDuration(t *testing.T) {
	o := WaitOptions{Expect: 3 * time.Second}.withDefaults()
	tests := []struct {
		age  time.Duration
		want time.Duration
	}{
		{0, time.Second}, // far from the end: sleep, capped
		{2500 * time.Millisecond, 350 * time.Millisecond}, // wake just before the expected end
		{2900 * time.Millisecond, 20 * time.Millisecond},  // around the end: poll fast
		{4 * time.Second, 20 * time.Millisecond},
		{10 * time.Second, time.Second}, // far past it: back to growing intervals
	}
	for _, tt := range tests {
		if got := pollInterval(tt.age, o); got != tt.want {
			t.Errorf("pollInterval(%v) = %v, want %v", tt.age, got, tt.want)
		}
	}
}
