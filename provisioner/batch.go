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
// One pod's failure does not stop the others; results come back in order.
func (p *Provisioner) CreateBatch(ctx context.Context, reqs []CreateRequest, concurrency int) []BatchResult {
	if concurrency <= 0 {
		concurrency = 8
	}
	out := make([]BatchResult, len(reqs))
	sem := make(chan struct{}, concurrency)
	var wg sync.WaitGroup
	for i, req := range reqs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			select {
			case sem <- struct{}{}:
			case <-ctx.Done():
				out[i] = BatchResult{Index: i, Result: CreateResult{VMID: req.Spec.VMID, Hostname: req.Spec.Hostname}, Err: ctx.Err()}
				return
			}
			defer func() { <-sem }()
			res, err := p.Create(ctx, req)
			out[i] = BatchResult{Index: i, Result: res, Err: err}
		}()
	}
	wg.Wait()
	return out
}
