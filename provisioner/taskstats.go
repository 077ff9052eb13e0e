package provisioner

import (
	"sync"
	"time"

	"github.com/migrahosting/cloudpods/provisioner/pve"
)

// taskDurations remembers how long tasks took, so the next wait for the
// same kind of task polls around its expected end instead of blindly:
// clones of one template, and starts on one node, take about the same time.
type taskDurations struct {
	mu   sync.Mutex
	last map[string]time.Duration
}

func taskKey(node, upid string) string {
	u, err := pve.ParseUPID(upid)
	if err != nil {
		return ""
	}
	if u.Type == "vzclone" {
		return node + "/" + u.Type + "/" + u.ID // the id is the source: one template
	}
	return node + "/" + u.Type
}

func (d *taskDurations) expect(key string) time.Duration {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.last[key]
}

// observe folds a measured duration in, weighting the newest half.
func (d *taskDurations) observe(key string, took time.Duration) {
	if key == "" {
		return
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.last == nil {
		d.last = map[string]time.Duration{}
	}
	if prev, ok := d.last[key]; ok {
		took = (prev + took) / 2
	}
	d.last[key] = took
}
