package provisioner

import (
	"context"
	"sync"
)

// BatchResult is one pod of a batch.
type BatchResult struct {
	Index  int
	Result CreateResult
	Err    error
}

// CreateBatch provisions many pods. Every pod runs the ordinary create flow
// in its own goroutine, at most concurrency at a time: clones of one
// template queue on the provisioner's per-template lock (PVE holds the
// source's disk lock for the whole copy), while everything after a clone
// (configure, start, netplan push, verify) overlaps with the next clone.
// Pods start in order and reserve in order, so where IPAM picks, pod-01
// gets the lowest free VMID and address, pod-02 the next. One pod's
// failure does not stop the others; results come back in order.
func (p *Provisioner) CreateBatch(ctx context.Context, reqs []CreateRequest, concurrency int) []BatchResult {
	if concurrency <= 0 {
		concurrency = 8
	}
	out := make([]BatchResult, len(reqs))
	sem := make(chan struct{}, concurrency)
	var wg sync.WaitGroup
	var prev *batchTurn
	for i, req := range reqs {
		turn := &batchTurn{after: prev, done: make(chan struct{})}
		prev = turn
		req.turn = turn
		// Taken here, not in the goroutine: a pod holds a slot only once
		// every pod before it has had one, so none waits on a turn whose
		// pod waits for a slot.
		select {
		case sem <- struct{}{}:
		case <-ctx.Done():
			turn.pass()
			out[i] = BatchResult{Index: i, Result: CreateResult{VMID: req.Spec.VMID, Hostname: req.Spec.Hostname}, Err: ctx.Err()}
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			defer turn.pass() // a pod that ends before reserving passes its turn
			res, err := p.Create(ctx, req)
			out[i] = BatchResult{Index: i, Result: res, Err: err}
		}()
	}
	wg.Wait()
	return out
}

// batchTurn is one pod's place in its batch's order of reservations: it
// reserves after the pod before it has reserved or ended.
type batchTurn struct {
	after *batchTurn
	done  chan struct{}
	once  sync.Once
}

// wait blocks until every pod before has passed its turn (one that ended
// early passes before those ahead of it have); a nil turn (not in a
// batch) does not wait.
func (t *batchTurn) wait(ctx context.Context) error {
	if t == nil {
		return nil
	}
	for before := t.after; before != nil; before = before.after {
		select {
		case <-before.done:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	return nil
}

// pass lets the next pod reserve; only the first call counts.
func (t *batchTurn) pass() {
	if t != nil {
		t.once.Do(func() { close(t.done) })
	}
}
