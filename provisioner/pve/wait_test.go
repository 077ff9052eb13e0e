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

func TestBlindPollingStartsAtOnceThenGrowsWithAge(t *testing.T) {
	o := WaitOptions{}.withDefaults()
	tests := []struct {
		age  time.Duration
		want time.Duration
	}{
		{0, 100 * time.Millisecond},
		{500 * time.Millisecond, 100 * time.Millisecond},
		{6 * time.Second, 200 * time.Millisecond},
		{time.Minute, time.Second},
	}
	for _, tt := range tests {
		if got := pollDelay(tt.age, o); got != tt.want {
			t.Errorf("pollDelay(%v) = %v, want %v", tt.age, got, tt.want)
		}
	}
}

func TestPollingAroundAnExpectedEnd(t *testing.T) {
	o := WaitOptions{Expect: Expectation{Duration: 3 * time.Second, Spread: 200 * time.Millisecond, Samples: 4}}.withDefaults()
	tests := []struct {
		age  time.Duration
		want time.Duration
	}{
		{0, 2800 * time.Millisecond},                      // sleep until the window opens
		{2500 * time.Millisecond, 300 * time.Millisecond}, // wake when it opens
		{2900 * time.Millisecond, 100 * time.Millisecond}, // within it: half the spread
		{3200 * time.Millisecond, 100 * time.Millisecond},
		{4 * time.Second, 300 * time.Millisecond}, // past it: intervals grow with how far past
		{20 * time.Second, time.Second},
	}
	for _, tt := range tests {
		if got := pollDelay(tt.age, o); got != tt.want {
			t.Errorf("pollDelay(%v) = %v, want %v", tt.age, got, tt.want)
		}
	}
	long := WaitOptions{Expect: Expectation{Duration: 10 * time.Minute, Spread: 10 * time.Second, Samples: 3}}.withDefaults()
	if got := pollDelay(0, long); got != 10*time.Second {
		t.Errorf("a long task's first sleep = %v, want LongestSleep", got)
	}
	tight := WaitOptions{Expect: Expectation{Duration: time.Second, Spread: time.Millisecond, Samples: 9}}.withDefaults()
	if got := pollDelay(990*time.Millisecond, tight); got != 40*time.Millisecond {
		t.Errorf("a spread below MinInterval polls at %v, want MinInterval", got)
	}
}

// clockAPI is a task that runs until a virtual clock passes its end; the
// wait sleeps on that clock, so a schedule is checked without waiting.
type clockAPI struct {
	API
	mu    sync.Mutex
	now   time.Duration
	end   time.Duration
	polls []time.Duration
}

func (a *clockAPI) TaskStatus(ctx context.Context, node, upid string) (TaskStatus, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.polls = append(a.polls, a.now)
	if a.now < a.end {
		return TaskStatus{Status: "running"}, nil
	}
	return TaskStatus{Status: "stopped", ExitStatus: "OK"}, nil
}

func (a *clockAPI) Sleep(_ context.Context, d time.Duration) error {
	a.mu.Lock()
	a.now += d
	a.mu.Unlock()
	return nil
}

func (a *clockAPI) Now() time.Time {
	a.mu.Lock()
	defer a.mu.Unlock()
	return time.Unix(0, 0).Add(a.now)
}

func TestWaitSchedules(t *testing.T) {
	tests := []struct {
		name      string
		end       time.Duration
		expect    Expectation
		maxPolls  int
		maxLateMS int64
	}{
		// The first clone of a template on a node without history.
		{"blind 3 s", 3 * time.Second, Expectation{}, 31, 100},
		{"blind 1 s", time.Second, Expectation{}, 11, 100},
		// One finished clone in PVE's history: whole seconds, ± 1 s.
		{"one history sample", 3*time.Second + 400*time.Millisecond, Expectation{Duration: 3 * time.Second, Spread: time.Second, Samples: 1}, 15, 100},
		// Learnt in this process: a few polls, seen within MinInterval.
		{"learnt", 3*time.Second + 30*time.Millisecond, Expectation{Duration: 3020 * time.Millisecond, Spread: 30 * time.Millisecond, Samples: 5}, 3, 40},
		// The task takes far longer than expected: polls grow sparse again.
		{"outlasts the expectation", 60 * time.Second, Expectation{Duration: 3 * time.Second, Spread: 30 * time.Millisecond, Samples: 5}, 120, 1000},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			api := &clockAPI{end: tt.end}
			var seen TaskObservation
			_, err := WaitTask(context.Background(), api, "pve", "UPID:x", WaitOptions{Expect: tt.expect, Clock: api,
				Observe: func(o TaskObservation) { seen = o }})
			if err != nil {
				t.Fatal(err)
			}
			last := api.polls[len(api.polls)-1]
			if len(api.polls) > tt.maxPolls || (last-tt.end).Milliseconds() > tt.maxLateMS {
				t.Errorf("%d polls, the end seen %v late; want ≤ %d polls, ≤ %d ms: %v", len(api.polls), last-tt.end, tt.maxPolls, tt.maxLateMS, api.polls)
			}
			if seen.FirstStopped < tt.end || seen.LastRunning >= tt.end || seen.FirstStopped != last {
				t.Errorf("observed %+v for a task ending at %v (last poll %v)", seen, tt.end, last)
			}
		})
	}
}
