package service

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"sync"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/migrahosting/cloudpods/provisioner"
)

// Options wire a Server.
type Options struct {
	// Flows run the work; the command passes the *provisioner.Provisioner
	// the CLI uses.
	Flows Flows
	// AuthTokens are the accepted bearer tokens; at least one.
	AuthTokens []Token
	// Store keeps jobs across restarts.
	Store  Store
	Logger logrus.FieldLogger
	// Defaults fill what a create leaves out (swap, storage, bridge,
	// template) and what the API does not offer (subnet, gateway, DNS,
	// node). Zero means provisioner.DefaultSpec().
	Defaults provisioner.Spec
	// Allocator, when set, picks the VMID and address of a create that
	// leaves both out; without it both are required.
	Allocator Allocator
	// PVE, when set, is rendered in /metrics: the PVE client's requests.
	PVE *PVEMetrics
	// Ready checks PVE is reachable and accepts the token, for /readyz.
	Ready func(ctx context.Context) error
	// MetricsPublic serves /metrics without a token (a Prometheus that
	// scrapes without one); by default it needs one, as the API does.
	MetricsPublic bool
	// Workers is how many jobs run at once (DefaultWorkers).
	Workers int
	// QueueSize is how many jobs may wait before the API answers 503
	// (DefaultQueueSize).
	QueueSize int
	// RenewEvery is how often the reservations of queued automatic
	// creates are renewed (5 minutes; a reservation lasts 15).
	RenewEvery time.Duration
	// Retention is how long finished jobs stay queryable (7 days).
	Retention time.Duration
	// RetryAfter is what a 503 tells the client to wait (30s).
	RetryAfter time.Duration
	Now        func() time.Time
}

// DefaultWorkers is how many jobs run at once: PVE serializes clones of
// one template anyway, and the steps after a clone overlap with the next.
const DefaultWorkers = 4

// DefaultQueueSize is how many jobs may wait for a worker before the API
// answers 503 with Retry-After: room for a panel's burst of a few hundred
// orders (a queued job is a small JSON file; an automatic create also
// holds its IPAM reservation, renewed while it waits).
const DefaultQueueSize = 256

// Server is the API: an http.Handler, plus the workers Start and Shutdown
// run and stop.
type Server struct {
	opts    Options
	log     logrus.FieldLogger
	flows   Flows
	store   Store
	auth    *authenticator
	routes  []route
	metrics *metrics

	// saveMu orders writes to the store: a job's states reach the disk in
	// the order they happened. Taken before mu, never after.
	saveMu sync.Mutex
	mu     sync.Mutex
	jobs   map[string]*Job
	keys   map[string]string // IdempotencyRecord.index() → job id
	// pending are jobs admitted but not yet saved (admission.go): a create
	// whose VMID and address are being allocated.
	pending map[string]*Job
	queued  int // jobs in StatusQueued, and pending ones: each holds a queue slot
	queue   chan string

	started  bool
	stopping chan struct{} // closed by Shutdown; Create stops at the next step boundary
	stopOnce sync.Once
	abort    context.CancelFunc
	workers  sync.WaitGroup
}

// New loads the store and prepares the server: jobs that were queued go
// back in the queue and jobs that were running are queued to run again
// (create converges a pod made from the same spec, destroy tolerates a pod
// already gone), so every job ends in a definite state. Start runs them.
func New(opts Options) (*Server, error) {
	switch {
	case opts.Flows == nil:
		return nil, errors.New("service: Options.Flows is required")
	case opts.Store == nil:
		return nil, errors.New("service: Options.Store is required")
	case len(opts.AuthTokens) == 0:
		return nil, errors.New("service: no auth tokens: the API never runs unauthenticated")
	}
	if opts.Logger == nil {
		l := logrus.New()
		l.SetOutput(io.Discard)
		opts.Logger = l
	}
	if opts.Defaults.Node == "" {
		opts.Defaults = provisioner.DefaultSpec()
	}
	if opts.Workers <= 0 {
		opts.Workers = DefaultWorkers
	}
	if opts.QueueSize <= 0 {
		opts.QueueSize = DefaultQueueSize
	}
	if opts.RenewEvery <= 0 {
		opts.RenewEvery = 5 * time.Minute
	}
	if opts.Retention <= 0 {
		opts.Retention = 7 * 24 * time.Hour
	}
	if opts.RetryAfter <= 0 {
		opts.RetryAfter = 30 * time.Second
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	s := &Server{opts: opts, log: opts.Logger, flows: opts.Flows, store: opts.Store, auth: newAuthenticator(opts.AuthTokens),
		metrics: newMetrics(opts.PVE), jobs: map[string]*Job{}, keys: map[string]string{}, pending: map[string]*Job{},
		stopping: make(chan struct{})}
	s.routes = s.routeTable()

	loaded, err := opts.Store.Load()
	if err != nil {
		return nil, err
	}
	var pending []string
	for i := range loaded {
		j := &loaded[i]
		s.jobs[j.ID] = j
		if j.Idempotency != nil {
			s.keys[j.Idempotency.index()] = j.ID
		}
		switch j.Status {
		case StatusRunning:
			j.Status = StatusQueued
			j.Note = fmt.Sprintf("the service stopped during attempt %d%s; running it again", j.Attempts, atStep(j))
			if err := s.store.Save(j.clone()); err != nil {
				return nil, err
			}
			s.log.WithFields(logrus.Fields{"job_id": j.ID, "kind": j.Kind, "vmid": j.VMID}).Warn("job was running when the service stopped: re-running it")
			fallthrough
		case StatusQueued:
			s.queued++
			pending = append(pending, j.ID)
		}
	}
	// Jobs recovered beyond QueueSize still all fit: the admission check
	// counts them, so sends never block.
	s.queue = make(chan string, opts.QueueSize+len(pending))
	for _, id := range pending {
		s.queue <- id
	}
	s.prune()
	return s, nil
}

func atStep(j *Job) string {
	for i := len(j.Steps) - 1; i >= 0; i-- {
		if j.Steps[i].State == "running" {
			return " in step " + j.Steps[i].Step
		}
	}
	return ""
}

// Start runs the workers. ctx bounds every job: cancelling it aborts the
// steps in flight (Shutdown is the gentle way).
func (s *Server) Start(ctx context.Context) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.started {
		return errors.New("service: already started")
	}
	s.started = true
	jobCtx, cancel := context.WithCancel(ctx)
	s.abort = cancel
	for range s.opts.Workers {
		s.workers.Add(1)
		go s.work(jobCtx)
	}
	if s.opts.Allocator != nil {
		s.workers.Add(1)
		go s.keepReservations(jobCtx)
	}
	return nil
}

// Shutdown stops taking jobs and lets running ones reach a step boundary;
// they are saved as queued and resume at the next start. If ctx ends first,
// the steps in flight are aborted (and saved the same way).
func (s *Server) Shutdown(ctx context.Context) error {
	s.stopOnce.Do(func() { close(s.stopping) })
	done := make(chan struct{})
	go func() {
		s.workers.Wait()
		close(done)
	}()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
	}
	s.mu.Lock()
	abort := s.abort
	s.mu.Unlock()
	if abort != nil {
		abort()
	}
	<-done
	return fmt.Errorf("shutdown: running jobs aborted mid-step: %w", ctx.Err())
}

func (s *Server) isStopping() bool {
	select {
	case <-s.stopping:
		return true
	default:
		return false
	}
}

func (s *Server) work(ctx context.Context) {
	defer s.workers.Done()
	for {
		select {
		case <-s.stopping:
			return
		case <-ctx.Done():
			return
		case id := <-s.queue:
			if s.isStopping() {
				return // still queued in the store: it runs after the restart
			}
			s.runJob(ctx, id)
		}
	}
}

// update changes a job and saves it; fn returns false to leave it alone.
func (s *Server) update(id string, fn func(*Job) bool) {
	s.saveMu.Lock()
	defer s.saveMu.Unlock()
	s.mu.Lock()
	j, ok := s.jobs[id]
	if !ok || !fn(j) {
		s.mu.Unlock()
		return
	}
	snap := j.clone()
	s.mu.Unlock()
	if err := s.store.Save(snap); err != nil {
		s.log.WithError(err).WithField("job_id", id).Error("saving job state failed")
	}
}

func (s *Server) runJob(ctx context.Context, id string) {
	var job Job
	s.update(id, func(j *Job) bool {
		if j.Status != StatusQueued {
			return false
		}
		s.queued--
		j.Status, j.Started, j.Finished = StatusRunning, s.opts.Now().UTC(), time.Time{}
		j.Attempts++
		j.Steps, j.Warnings, j.Result, j.Error = nil, nil, nil, nil
		job = j.clone()
		return true
	})
	if job.ID == "" {
		return
	}
	log := s.log.WithFields(logrus.Fields{"job_id": job.ID, "kind": job.Kind, "vmid": job.VMID, "requester": job.Requester, "attempt": job.Attempts})
	log.Info("job started")
	res, err := s.execute(ctx, &job)
	interrupted := errors.Is(err, provisioner.ErrInterrupted) || (ctx.Err() != nil && errors.Is(err, context.Canceled))
	outcome := string(StatusSucceeded)
	s.update(id, func(j *Job) bool {
		if cr, ok := res.(provisioner.CreateResult); ok && cr.VMID != 0 {
			j.VMID = cr.VMID
		}
		switch {
		case interrupted:
			outcome = "interrupted"
			s.queued++
			j.Status = StatusQueued
			j.Note = fmt.Sprintf("the service shut down during attempt %d (%v); it runs again when the service starts", j.Attempts, err)
		case err != nil:
			outcome = string(StatusFailed)
			j.Status, j.Finished, j.Error = StatusFailed, s.opts.Now().UTC(), jobError(err)
		default:
			j.Status, j.Finished = StatusSucceeded, s.opts.Now().UTC()
			// Only a success has a result: a failure is told by Error, and
			// a half-filled result beside it would read as data.
			if b, merr := json.Marshal(res); merr == nil {
				j.Result = b
			}
		}
		// Counted with the status change, so whoever sees the outcome
		// sees it counted.
		s.metrics.jobDone(job.Kind, outcome)
		return true
	})
	if err != nil {
		log.WithError(err).WithField("outcome", outcome).Warn("job ended")
	} else {
		log.WithField("outcome", outcome).Info("job ended")
	}
	s.prune()
}

// execute runs the job's flow: the same provisioner call the CLI makes.
func (s *Server) execute(ctx context.Context, job *Job) (any, error) {
	rep := provisioner.ReporterFunc(func(e provisioner.Event) { s.recordEvent(job.ID, job.Kind, e) })
	node := "" // destroy and backup find the pod on whatever node it lives
	switch job.Kind {
	case KindCreate:
		// The job id is the run id, so a job resumed after a restart may
		// roll back the CT its interrupted attempt cloned.
		return s.flows.Create(ctx, provisioner.CreateRequest{Spec: job.Request.spec(s.opts.Defaults), Reporter: rep,
			Stop: s.stopping, Requester: job.Requester, RunID: job.ID})
	case KindDestroy:
		// IfExists: a re-run after a crash finds the pod already gone.
		return s.flows.Destroy(ctx, provisioner.DestroyRequest{Node: node, VMID: job.VMID, Force: true, IfExists: true,
			Requester: job.Requester, Reporter: rep})
	case KindBackup:
		return s.flows.Backup(ctx, provisioner.BackupRequest{Node: node, VMID: job.VMID, Storage: job.BackupStorage,
			Requester: job.Requester, Reporter: rep})
	}
	return nil, fmt.Errorf("job %s: unknown kind %q", job.ID, job.Kind)
}

func (s *Server) recordEvent(id string, kind Kind, e provisioner.Event) {
	s.update(id, func(j *Job) bool {
		if ended := j.applyEvent(e); ended != nil {
			s.metrics.stepDone(kind, ended.Step, ended.Seconds)
		}
		return true
	})
}

// prune forgets finished jobs older than the retention, with their
// idempotency keys.
func (s *Server) prune() {
	s.saveMu.Lock()
	defer s.saveMu.Unlock()
	cutoff := s.opts.Now().Add(-s.opts.Retention)
	var gone []string
	s.mu.Lock()
	for id, j := range s.jobs {
		if !j.Status.active() && !j.Finished.IsZero() && j.Finished.Before(cutoff) {
			gone = append(gone, id)
			delete(s.jobs, id)
			if j.Idempotency != nil {
				delete(s.keys, j.Idempotency.index())
			}
		}
	}
	s.mu.Unlock()
	for _, id := range gone {
		if err := s.store.Delete(id); err != nil {
			s.log.WithError(err).WithField("job_id", id).Warn("removing an expired job failed")
		}
	}
}

// errQueueFull and errStopping refuse a job for now; the client retries.
var (
	errQueueFull = errors.New("the job queue is full: retry later")
	errStopping  = errors.New("the service is shutting down: retry later")
)

// replayLocked finds the job an idempotency key was first used for: ok when
// the request matches; prev.ID set and !ok when it does not.
func (s *Server) replayLocked(rec IdempotencyRecord) (prev Job, ok bool) {
	id, found := s.keys[rec.index()]
	if !found {
		return Job{}, false
	}
	j := s.jobs[id]
	if j.Idempotency.Fingerprint != rec.Fingerprint {
		return j.view(), false
	}
	return j.view(), true
}

// replay is replayLocked for handlers, before they do any work.
func (s *Server) replay(rec *IdempotencyRecord) (prev Job, ok bool, err error) {
	if rec == nil {
		return Job{}, false, nil
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	prev, ok = s.replayLocked(*rec)
	if !ok && prev.ID != "" {
		return prev, false, errKeyReused
	}
	return prev, ok, nil
}

var errKeyReused = errors.New("the Idempotency-Key was first used with a different request")

type conflictError struct{ other Job }

func (e *conflictError) Error() string {
	what := fmt.Sprintf("VMID %d", e.other.VMID)
	if e.other.Kind == KindCreate {
		what = fmt.Sprintf("VMID %d, address %s or hostname %s", e.other.VMID, e.other.IP, e.other.Hostname)
	}
	return fmt.Sprintf("%s job %s (%s) already holds %s", e.other.Kind, e.other.ID, e.other.Status, what)
}

// activeFor is the active job touching vmid, if any.
func (s *Server) activeFor(vmid int) (Job, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, j := range s.jobs {
		if j.Status.active() && j.VMID == vmid {
			return j.view(), true
		}
	}
	return Job{}, false
}

func newJobID() string {
	b := make([]byte, 16)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}
