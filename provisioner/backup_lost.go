package provisioner

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/migrahosting/cloudpods/provisioner/pve"
)

// vzdumpWindow bounds the task listings that settle a lost vzdump answer:
// tasks started this long before the backup began (by PVE's clock, which
// may be off from ours) are left out of both listings alike.
const vzdumpWindow = 10 * time.Minute

// vzdumpTasks are the CT's vzdump tasks this token started lately,
// running or ended, newest first, as PVE lists them now.
func (b *backupRun) vzdumpTasks(ctx context.Context) ([]pve.TaskStatus, error) {
	if b.since.IsZero() {
		b.since = b.p.opts.Now().Add(-vzdumpWindow)
	}
	return b.p.api.Tasks(ctx, b.g.Node, pve.TaskFilter{Type: "vzdump", VMID: b.g.VMID, Since: b.since, Own: true})
}

// knownVzdumpTasks are the UPIDs of vzdumpTasks.
func (b *backupRun) knownVzdumpTasks(ctx context.Context) (map[string]bool, error) {
	tasks, err := b.vzdumpTasks(ctx)
	if err != nil {
		return nil, err
	}
	known := make(map[string]bool, len(tasks))
	for _, t := range tasks {
		known[t.UPID] = true
	}
	return known, nil
}

// adoptLostBackup settles a vzdump call whose answer was lost (596, a
// dropped connection, a timeout): whatever the call started is a vzdump
// task of this token for the CT that known does not hold. Queued behind
// another backup's hold on the node's global vzdump lock, such a task
// shows neither the CT's backup lock nor an archive for as long as that
// backup runs, so the task list is where to look. Found, its UPID is the
// answer and the backup waits on it instead of starting a second one. Not
// found within lostBackupGrace, the call started nothing and lost is
// returned, for the retry policy to send it again.
func (b *backupRun) adoptLostBackup(ctx context.Context, known map[string]bool, lost error) (string, error) {
	var found string
	err := pollUntil(ctx, lostBackupGrace, func(ctx context.Context) (bool, error) {
		tasks, err := b.vzdumpTasks(ctx)
		for _, t := range tasks {
			if !known[t.UPID] {
				found = t.UPID // the newest new one
				break
			}
		}
		return found != "", err
	})
	switch {
	case found != "":
		b.run.Info(fmt.Sprintf("the answer to the vzdump call was lost (%v); task %s is the backup it started: waiting on it instead of starting another", lost, found))
		return found, nil
	case errors.Is(err, context.DeadlineExceeded) && ctx.Err() == nil:
		return "", lost
	case err != nil:
		// Final, not retried: sending vzdump again could start a second
		// backup beside one that is still to show.
		return "", fmt.Errorf("the answer to the vzdump call was lost (%v), and looking for the task it may have started failed: %w", lost, err)
	}
	return "", lost
}
