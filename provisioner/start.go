package provisioner

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/migrahosting/cloudpods/provisioner/flow"
)

// start boots the pod and waits for its task; a running pod skips it.
func (r *createRun) startStep() flow.Step {
	return flow.Step{Name: StepStart, Check: r.running, Run: r.start, Plan: r.planStart}
}

func (r *createRun) planStart(context.Context) ([]flow.Call, error) {
	return []flow.Call{{Method: "POST", Path: ctPath(r.spec, "/status/start")}, taskPoll(r.spec.Node, "the start")}, nil
}

func (r *createRun) running(ctx context.Context) (string, error) {
	st, err := r.p.api.GuestStatus(ctx, r.ct())
	if err != nil {
		return "", err
	}
	if st.Status == "running" {
		return "already running", nil
	}
	return "", nil
}

func (r *createRun) start(ctx context.Context) error {
	r.res.Changed = true
	_, err := r.run.Retry().Task(ctx, fmt.Sprintf("start CT %d", r.spec.VMID), func(ctx context.Context) (string, error) {
		upid, err := r.p.api.StartGuest(ctx, r.ct())
		if err == nil {
			r.tasks = append(r.tasks, upid)
		}
		return upid, err
	}, func(ctx context.Context, upid string) error {
		_, err := r.p.waitShowing(ctx, r.run, r.spec.Node, upid)
		return err
	}, func(ctx context.Context, _ error) (bool, error) {
		// A start whose answer was lost may still be booting the CT: give
		// its task a moment before starting again (a second start of a
		// booting CT fails as "already running", which this check also
		// settles).
		return r.runningSoon(ctx)
	})
	return err
}

// runningSoon reports whether the CT is running, or gets there within a
// start task's usual time.
func (r *createRun) runningSoon(ctx context.Context) (bool, error) {
	running := false
	err := pollUntil(ctx, 2*time.Second, func(ctx context.Context) (bool, error) {
		st, err := r.p.api.GuestStatus(ctx, r.ct())
		running = err == nil && st.Status == "running"
		return running, err
	})
	if errors.Is(err, context.DeadlineExceeded) && ctx.Err() == nil {
		return false, nil
	}
	return running, err
}
