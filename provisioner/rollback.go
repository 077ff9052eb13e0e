package provisioner

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/migrahosting/cloudpods/provisioner/flow"
	"github.com/migrahosting/cloudpods/provisioner/pve"
)

// What undoing create's steps means. The flow engine unwinds them newest
// first: the clone's undo, then the reservation's, which gives the lease
// back only when no CT is left to hold it (an undo that leaves the CT stops
// the unwinding before it; a CT an earlier run made keeps it too).

// undoClone removes the CT this run cloned, on failure; keeps it for the
// re-run when the run was stopped; only says what is there when the run
// was aborted mid-step.
func (r *createRun) undoClone(ctx context.Context, rb flow.Rollback) flow.Outcome {
	switch {
	case r.existing != nil && !r.created:
		return r.keepExisting(rb)
	case !r.cloneTried:
		return flow.Outcome{}
	case rb.Cause == flow.Interrupted:
		return flow.Outcome{Left: true, Said: r.partlyProvisioned("exists")}
	case rb.Cause == flow.Aborted:
		// Aborted mid-step (a second signal): touch nothing, say what is there.
		return r.leftBehind(ctx)
	}
	return r.rollbackClone(ctx, rb.Step, rb.Err)
}

// keepExisting is the undo of a CT an earlier run made: this run did not
// make it, so it stays, with its lease.
func (r *createRun) keepExisting(rb flow.Rollback) flow.Outcome {
	if rb.Cause == flow.Interrupted {
		return flow.Outcome{Left: true, Said: r.partlyProvisioned("exists")}
	}
	return flow.Outcome{Left: true, Said: fmt.Sprintf("CT %d was there before this run and is left as it is: run the same command again to finish it", r.spec.VMID)}
}

func (r *createRun) partlyProvisioned(exists string) string {
	return fmt.Sprintf("CT %d %s, partly provisioned, and %s stays reserved for it: run the same command again to finish it, or remove it with: cloudpod destroy %d --force",
		r.spec.VMID, exists, r.spec.IP, r.spec.VMID)
}

// leftBehind reports whether a CT of this run is at the VMID, for a run
// that stops without rolling back.
func (r *createRun) leftBehind(ctx context.Context) flow.Outcome {
	_, err := r.p.api.GuestConfig(ctx, r.ct())
	if errors.Is(err, pve.ErrNotFound) {
		r.ctGone = true
		return flow.Outcome{Said: "nothing was created"}
	}
	return flow.Outcome{Left: true, Said: r.partlyProvisioned("may exist")}
}

// rollbackClone removes the CT this run cloned, and only that one: the
// marker on the VMID must carry this run's id. It waits for the tasks this
// run started first (a clone whose wait timed out still holds its lock; a
// start whose status read failed may still bring the CT up).
func (r *createRun) rollbackClone(ctx context.Context, step string, cause error) flow.Outcome {
	s := r.spec
	left := func(format string, args ...interface{}) flow.Outcome {
		return flow.Outcome{Left: true, Said: fmt.Sprintf(format, args...)}
	}
	wo := r.p.opts.Wait
	wo.Timeout = 0 // ctx bounds it: the rollback's own budget
	for _, upid := range r.tasks {
		_, _ = pve.WaitTask(ctx, r.p.api, taskNode(upid, s.Node), upid, wo)
	}
	cfg, err := r.p.api.GuestConfig(ctx, r.ct())
	if errors.Is(err, pve.ErrNotFound) {
		r.ctGone = true
		return flow.Outcome{Said: "nothing was left: no CT at VMID " + strconv.Itoa(s.VMID)}
	}
	if err != nil {
		return left("could not read CT %d to roll it back (%v): if it carries run %s's marker, remove it with: cloudpod destroy %d --force", s.VMID, err, r.runID, s.VMID)
	}
	if m, ok := ParseMarker(cfg.Get("description")); !ok || !m.Owns(s.VMID) || m.RunID != r.runID {
		return left("CT %d is not this run's (another run or tool made it): left untouched", s.VMID)
	}
	if r.req.KeepOnFailure {
		if merr := r.markFailed(ctx, step, cause); merr != nil {
			return left("kept CT %d (--keep-on-failure) but marking it failed did not work: %v", s.VMID, merr)
		}
		return left("kept CT %d, marked failed (--keep-on-failure): inspect it, then remove it with: cloudpod destroy %d --force", s.VMID, s.VMID)
	}
	r.run.Event("rollback", flow.PhaseStart, "")
	if err := r.p.removeGuest(ctx, r.ct(), r.runID); err != nil {
		r.run.Event("rollback", flow.PhaseFail, err.Error())
		return left("rollback of CT %d failed, remove it with: cloudpod destroy %d --force (%v)", s.VMID, s.VMID, err)
	}
	r.run.Event("rollback", flow.PhaseDone, "")
	r.ctGone = true
	return flow.Outcome{Said: fmt.Sprintf("rolled back: CT %d destroyed", s.VMID)}
}

// markFailed keeps a failed pod recognisable: the marker's state, the
// failure in the description, and a cloudpod-failed tag for listings.
func (r *createRun) markFailed(ctx context.Context, step string, cause error) error {
	if err := r.p.waitNoLock(ctx, r.ct(), r.p.opts.TaskTimeout); err != nil {
		return err
	}
	m := newMarker(r.spec, r.runID, r.p.opts.Now())
	m.State = "failed"
	set := map[string]string{
		"description": m.Description() + fmt.Sprintf("failed at %s: %s\n", step, strings.ReplaceAll(cause.Error(), "\n", " ")),
		"tags":        tagString(append(r.tags(), "cloudpod-failed")),
	}
	return r.run.Retry().Do(ctx, fmt.Sprintf("mark CT %d failed", r.spec.VMID), func(ctx context.Context) error {
		return r.p.api.UpdateGuestConfig(ctx, r.ct(), pve.ConfigUpdate{Set: set})
	}, nil)
}
