package provisioner

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"io"
	"sync"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/migrahosting/cloudpods/provisioner/flow"
	"github.com/migrahosting/cloudpods/provisioner/pve"
)

// Options tune a Provisioner.
type Options struct {
	// TaskTimeout bounds each PVE task wait (a slow ZFS copy takes minutes).
	TaskTimeout time.Duration
	// VerifyTimeout bounds waiting for the pod's address to show up.
	VerifyTimeout time.Duration
	// ExecTimeout bounds one command inside the container; a console
	// silent for longer is treated as lost and attached again.
	ExecTimeout time.Duration
	// Retry is the operation-level retry policy; its LockWait defaults to
	// TaskTimeout.
	Retry pve.RetryPolicy
	// Wait tunes task polling (intervals); Timeout there is TaskTimeout.
	Wait pve.WaitOptions
	// Addresses, when set, records IPs and VMIDs in IPAM (reserve before the
	// clone, assign when verified, release on rollback and destroy).
	Addresses Addresses
	// Inventory tunes the inventory of the cluster's guests that every
	// flow of this provisioner shares (inventory_cache.go).
	Inventory InventoryOptions
	// ClaimWait bounds how long create's claim waits for another pod in
	// the making that wrote the same address to give it up or start
	// (claim.go); after it, this pod gives the address up.
	ClaimWait time.Duration
	Audit     *AuditLog
	Logger    logrus.FieldLogger
	Now       func() time.Time
	// Rand feeds run ids and console markers; replays make it
	// deterministic. nil means crypto/rand.
	Rand io.Reader
}

// Provisioner runs the CloudPod flows against one PVE cluster.
type Provisioner struct {
	api  pve.API
	opts Options
	log  logrus.FieldLogger

	mu         sync.Mutex
	cloneLocks map[string]chan struct{} // node/template → serializes clones of one source
	taskTimes  taskTimes
	// inventory is the cluster's guests as this process knows them, shared
	// by every create of a batch and every job of the service.
	inventory *guestInventory
	// placed are the pods --node auto placed whose creates run (guarded
	// by mu); placeMu makes one placement at a time (placement.go).
	placed  placements
	placeMu sync.Mutex
}

// New wires a Provisioner.
func New(api pve.API, opts Options) *Provisioner {
	if opts.TaskTimeout <= 0 {
		opts.TaskTimeout = 30 * time.Minute
	}
	if opts.VerifyTimeout <= 0 {
		opts.VerifyTimeout = 60 * time.Second
	}
	if opts.ExecTimeout <= 0 {
		opts.ExecTimeout = 60 * time.Second
	}
	if opts.ClaimWait <= 0 {
		opts.ClaimWait = 2 * time.Minute
	}
	if opts.Retry.Attempts == 0 {
		opts.Retry = pve.DefaultRetryPolicy
	}
	if opts.Retry.LockWait == 0 {
		// A lock is another task's (a clone of the same template by another
		// process): it lasts as long as a task may.
		opts.Retry.LockWait = opts.TaskTimeout
	}
	if opts.Logger == nil {
		l := logrus.New()
		l.SetOutput(discardWriter{})
		opts.Logger = l
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.Rand == nil {
		opts.Rand = rand.Reader
	}
	opts.Wait.Timeout = opts.TaskTimeout
	return &Provisioner{api: api, opts: opts, log: opts.Logger, cloneLocks: map[string]chan struct{}{},
		inventory: newGuestInventory(api, opts.Inventory)}
}

type discardWriter struct{}

func (discardWriter) Write(p []byte) (int, error) { return len(p), nil }

// lockClone takes the clone slot of a template, waiting in line (channel
// senders are served in order) unless ctx ends first; the returned func
// gives the slot back.
func (p *Provisioner) lockClone(ctx context.Context, node string, template int) (func(), error) {
	p.mu.Lock()
	key := fmt.Sprintf("%s/%d", node, template)
	slot := p.cloneLocks[key]
	if slot == nil {
		slot = make(chan struct{}, 1)
		p.cloneLocks[key] = slot
	}
	p.mu.Unlock()
	select {
	case slot <- struct{}{}:
		return func() { <-slot }, nil
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// wait waits for a task, polling around the end its kind is expected at
// (taskstats.go), and learns from what it saw.
func (p *Provisioner) wait(ctx context.Context, node, upid string) (pve.TaskStatus, error) {
	opts := p.opts.Wait
	opts.Expect = p.taskTimes.expect(ctx, p.api, node, upid)
	opts.Observe = func(o pve.TaskObservation) { p.taskTimes.observe(node, upid, o) }
	return pve.WaitTask(ctx, p.api, node, upid, opts)
}

func (p *Provisioner) randomHex(n int) string {
	b := make([]byte, n)
	p.mu.Lock()
	_, _ = io.ReadFull(p.opts.Rand, b)
	p.mu.Unlock()
	return hex.EncodeToString(b)
}

// pollUntil calls probe until it reports done, backing off from 50 ms to
// 1 s, for at most limit; it returns context.DeadlineExceeded when limit
// passes first.
func pollUntil(ctx context.Context, limit time.Duration, probe func(ctx context.Context) (bool, error)) error {
	pctx, cancel := context.WithTimeout(ctx, limit)
	defer cancel()
	delay := 50 * time.Millisecond
	timer := time.NewTimer(0)
	defer timer.Stop()
	for {
		select {
		case <-pctx.Done():
			return pctx.Err()
		case <-timer.C:
		}
		done, err := probe(pctx)
		if pctx.Err() != nil {
			return pctx.Err() // the probe was cut short by the limit
		}
		if err != nil || done {
			return err
		}
		timer.Reset(delay)
		delay = min(delay*2, time.Second)
	}
}

// newRun starts one run of a flow on the flow engine, with the
// provisioner's retry policy, clock and logger.
func (p *Provisioner) newRun(opts flow.Options) *flow.Run {
	opts.Retry, opts.Logger, opts.Now = p.opts.Retry, p.log, p.opts.Now
	return flow.New(opts)
}
