package provisioner

import (
	"context"
	"strings"
	"time"

	"github.com/migrahosting/cloudpods/provisioner/flow"
	"github.com/migrahosting/cloudpods/provisioner/pve"
)

// taskLogEvery is how often a live reporter's task log is read.
const taskLogEvery = time.Second

// waitShowing waits for a task as wait does and, for a live reporter (a
// terminal), reads the task's log meanwhile and reports its last line as
// the step's progress: a 30-minute ZFS copy shows what PVE says it is
// doing, and qemu's disk copies their percentage. Other reporters cost
// nothing extra.
func (p *Provisioner) waitShowing(ctx context.Context, run *flow.Run, node, upid string) (pve.TaskStatus, error) {
	show := run.Progress()
	if show == nil {
		return p.wait(ctx, node, upid)
	}
	tctx, stop := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		p.tailTaskLog(tctx, node, upid, show)
	}()
	st, err := p.wait(ctx, node, upid)
	stop()
	<-done // the step must not end while its progress still reports
	return st, err
}

// tailTaskLog reports each new last line of the task's log until ctx
// ends; reading the log is best effort.
func (p *Provisioner) tailTaskLog(ctx context.Context, node, upid string, show func(string)) {
	seen, last := 0, ""
	tick := time.NewTicker(taskLogEvery)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		lines, err := p.api.TaskLog(ctx, node, upid, seen, 500)
		if err != nil || (seen == 0 && len(lines) == 1 && lines[0] == "no content") {
			continue // PVE's answer for a log with nothing in it yet
		}
		seen += len(lines)
		for i := len(lines) - 1; i >= 0; i-- {
			if line := strings.TrimSpace(lines[i]); line != "" {
				if line != last {
					last = line
					show(line)
				}
				break
			}
		}
	}
}
