package provisioner

import (
	"context"
	"math"
	"strconv"
	"sync"
	"time"

	"github.com/migrahosting/cloudpods/provisioner/pve"
)

// historyTasks is how many of PVE's finished tasks of a kind the first wait
// for that kind learns from.
const historyTasks = 20

// historyQuantum is the resolution of PVE's task times: the task list has
// start and end in whole seconds, so one task's duration from it is off by
// up to a second, and the mean of n by about half a second over √n.
const historyQuantum = 500 * time.Millisecond

// taskTimes learns how long each kind of task takes on each node, so every
// wait, the first of its kind included, sleeps through most of its task and
// polls densely only around the expected end: first from PVE's own task
// history (GET /nodes/{node}/tasks, finished tasks of the type, with their
// start and end times), read once per kind and node, then from each wait
// of this process. Clones of one template take about the same time, and so
// do starts on one node.
type taskTimes struct {
	mu    sync.Mutex
	kinds map[string]*taskKind
}

// taskKind is what is known of one kind of task on one node.
type taskKind struct {
	// asked is closed once PVE's history has been read (or could not be).
	asked chan struct{}
	est   estimate
}

// estimate is a running mean of the duration and of its deviation from it,
// as TCP estimates round-trip times.
type estimate struct {
	mean, dev time.Duration
	// samples is how many finished tasks it stands on, history included;
	// own is how many of them this process waited for.
	samples, own int
}

// taskKindOf names the kind of a task and the history filter that finds
// its kind: a clone's kind is its source (one template), any other's its
// type.
func taskKindOf(node, upid string) (string, pve.TaskFilter, bool) {
	u, err := pve.ParseUPID(upid)
	if err != nil || u.Type == "" {
		return "", pve.TaskFilter{}, false
	}
	f := pve.TaskFilter{Type: u.Type, Finished: true, Limit: historyTasks}
	key := node + "/" + u.Type
	if u.Type == "vzclone" || u.Type == "qmclone" {
		if id, err := strconv.Atoi(u.ID); err == nil {
			f.VMID = id
			key += "/" + u.ID
		}
	}
	return key, f, true
}

// expect is what the wait for upid may expect: on the first wait of its
// kind, PVE's history of the kind on node is read first (concurrent first
// waits share that read).
func (t *taskTimes) expect(ctx context.Context, api pve.API, node, upid string) pve.Expectation {
	key, filter, ok := taskKindOf(node, upid)
	if !ok {
		return pve.Expectation{}
	}
	t.mu.Lock()
	if t.kinds == nil {
		t.kinds = map[string]*taskKind{}
	}
	k := t.kinds[key]
	first := k == nil
	if first {
		k = &taskKind{asked: make(chan struct{})}
		t.kinds[key] = k
	}
	t.mu.Unlock()
	if first {
		t.learnHistory(ctx, api, node, filter, k)
		close(k.asked)
	} else {
		select {
		case <-k.asked:
		case <-ctx.Done():
		}
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	return k.est.expectation()
}

// learnHistory starts k's estimate from PVE's finished tasks of the kind
// that succeeded; best effort: without them the first wait polls blindly.
func (t *taskTimes) learnHistory(ctx context.Context, api pve.API, node string, f pve.TaskFilter, k *taskKind) {
	tasks, err := api.Tasks(ctx, node, f)
	if err != nil {
		return
	}
	var took []time.Duration
	for _, task := range tasks {
		if task.Type != f.Type || !task.Succeeded() || task.EndTime.IsZero() || task.EndTime.Before(task.StartTime) {
			continue
		}
		took = append(took, task.EndTime.Sub(task.StartTime))
	}
	if len(took) == 0 {
		return
	}
	var sum time.Duration
	for _, d := range took {
		sum += d
	}
	n := len(took)
	mean := sum / time.Duration(n)
	var sq float64
	for _, d := range took {
		sq += math.Pow(float64(d-mean), 2)
	}
	sd := time.Duration(math.Sqrt(sq / float64(n)))
	t.mu.Lock()
	defer t.mu.Unlock()
	k.est = estimate{mean: mean, dev: max(sd, time.Duration(float64(historyQuantum)/math.Sqrt(float64(n)))), samples: n}
}

// observe folds what a wait saw of its task into the estimate of its kind.
func (t *taskTimes) observe(node, upid string, o pve.TaskObservation) {
	key, _, ok := taskKindOf(node, upid)
	if !ok {
		return
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	k := t.kinds[key]
	if k == nil {
		return // expect was not asked (it always is before a wait)
	}
	k.est.add(o.Duration(), o.HalfWidth())
}

// add takes one measured duration, precise to ±halfWidth. A measurement
// of this process is exact where the history has whole seconds, so the
// first one replaces the mean, with a deviation of a thirty-second of it;
// the next ones are averaged in, then weigh a quarter each, so a slower
// disk or a busier node shows within a few tasks.
func (e *estimate) add(took, halfWidth time.Duration) {
	if e.own == 0 {
		e.mean, e.dev = took, max(halfWidth, took/32)
	} else {
		n := time.Duration(min(e.own+1, 4))
		err := took - e.mean
		e.mean += err / n
		e.dev = max(e.dev+(abs(err)-e.dev)/n, halfWidth)
	}
	e.samples++
	e.own++
}

func (e estimate) expectation() pve.Expectation {
	if e.samples == 0 {
		return pve.Expectation{}
	}
	return pve.Expectation{Duration: e.mean, Spread: 2 * e.dev, Samples: e.samples}
}

func abs(d time.Duration) time.Duration {
	if d < 0 {
		return -d
	}
	return d
}
