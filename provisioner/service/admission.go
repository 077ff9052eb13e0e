package service

import (
	"context"
	"net/netip"
	"time"

	"github.com/sirupsen/logrus"
)

// Admission comes before allocation: a create that leaves its VMID and
// address to IPAM is first checked against the jobs there are and the
// queue's room (admit), and only then reserves (Allocator.Reserve); a
// refusal after that — another job took the pair meanwhile, the service
// began shutting down, the job could not be saved — gives the reservation
// back (Allocator.Release). So no refused request leaves a lease behind,
// and a full queue or a conflict costs IPAM nothing.

// ticket is an admitted job: it holds a queue slot and, while pending, its
// hostname (and VMID and address once known) against other requests, until
// commit saves and queues it or cancel gives the slot back.
type ticket struct{ job *Job }

// admit checks job against the jobs there are and holds a queue slot for
// it. A replay of an Idempotency-Key, or of an active job with the same
// request, returns that job (replayed true) and no ticket; an active or
// pending job touching the same VMID, address or hostname is a conflict; a
// full queue or a shutdown refuses.
func (s *Server) admit(job *Job) (t *ticket, got Job, replayed bool, err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if job.Idempotency != nil {
		if prev, ok := s.replayLocked(*job.Idempotency); ok {
			return nil, prev, true, nil
		} else if prev.ID != "" {
			return nil, prev, false, errKeyReused
		}
	}
	for _, other := range s.jobs {
		if !other.Status.active() {
			continue
		}
		if sameRequest(other, job) {
			return nil, other.view(), true, nil
		}
		if overlaps(other, job) {
			return nil, other.view(), false, &conflictError{other: other.view()}
		}
	}
	for _, other := range s.pending {
		// Not saved yet, so never a replay: its answer is still to come.
		if overlaps(other, job) || sameIdempotency(other, job) {
			return nil, other.view(), false, &conflictError{other: other.view()}
		}
	}
	switch {
	case s.isStopping():
		return nil, Job{}, false, errStopping
	case s.queued >= s.opts.QueueSize:
		return nil, Job{}, false, errQueueFull
	}
	job.ID = newJobID()
	job.Status = StatusQueued
	s.pending[job.ID] = job
	s.queued++
	return &ticket{job: job}, Job{}, false, nil
}

func sameIdempotency(a, b *Job) bool {
	return a.Idempotency != nil && b.Idempotency != nil && a.Idempotency.index() == b.Idempotency.index()
}

// allocated gives the admitted create the VMID and address IPAM reserved
// for it; other admissions read pending jobs, so under the lock.
func (s *Server) allocated(t *ticket, vmid int, ip netip.Addr) {
	s.mu.Lock()
	defer s.mu.Unlock()
	t.job.Request.VMID, t.job.Request.IP, t.job.Request.Allocated = vmid, ip, true
	t.job.VMID, t.job.IP = vmid, ip.String()
}

// commit saves the admitted job and queues it, after checking its VMID
// and address (known now) against the other jobs once more. On an error
// the slot is given back; the caller releases what it allocated.
func (s *Server) commit(t *ticket) (Job, error) {
	s.saveMu.Lock()
	defer s.saveMu.Unlock()
	s.mu.Lock()
	job := t.job
	delete(s.pending, job.ID)
	refuse := func(err error) (Job, error) {
		s.queued--
		s.mu.Unlock()
		return Job{}, err
	}
	if s.isStopping() {
		return refuse(errStopping)
	}
	for _, other := range s.jobs {
		if other.Status.active() && overlaps(other, job) {
			return refuse(&conflictError{other: other.view()})
		}
	}
	for _, other := range s.pending {
		if overlaps(other, job) {
			return refuse(&conflictError{other: other.view()})
		}
	}
	job.Created = s.opts.Now().UTC()
	s.jobs[job.ID] = job
	if job.Idempotency != nil {
		s.keys[job.Idempotency.index()] = job.ID
	}
	snap := job.clone()
	s.mu.Unlock()

	if err := s.store.Save(snap); err != nil {
		s.mu.Lock()
		delete(s.jobs, job.ID)
		if job.Idempotency != nil {
			delete(s.keys, job.Idempotency.index())
		}
		s.queued--
		s.mu.Unlock()
		return Job{}, err
	}
	select {
	case s.queue <- snap.ID:
	default:
		// Cannot happen: admission keeps queued jobs within capacity. Left
		// queued in the store, it runs after a restart.
		s.log.WithField("job_id", snap.ID).Error("job queue overflowed")
	}
	return snap.view(), nil
}

// cancel gives an admitted job's slot back.
func (s *Server) cancel(t *ticket) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.pending[t.job.ID]; ok {
		delete(s.pending, t.job.ID)
		s.queued--
	}
}

// submit admits a job and saves and queues it: a job with nothing to
// allocate.
func (s *Server) submit(job *Job) (got Job, replayed bool, err error) {
	t, got, replayed, err := s.admit(job)
	if t == nil {
		return got, replayed, err
	}
	got, err = s.commit(t)
	return got, false, err
}

// releaseTimeout bounds giving a reservation back; the request's own
// context may already be gone (the client hung up).
const releaseTimeout = 30 * time.Second

// release gives back the reservation made for a create the service then
// refused. A failure is logged: the reservation then expires on its own.
func (s *Server) release(ctx context.Context, p *CreateParams) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), releaseTimeout)
	defer cancel()
	log := s.log.WithFields(logrus.Fields{"hostname": p.Hostname, "tenant": p.TenantID, "vmid": p.VMID, "ip": p.IP.String()})
	if err := s.opts.Allocator.Release(ctx, p.Hostname, p.TenantID, p.VMID, p.IP); err != nil {
		log.WithError(err).Warn("giving back the reservation of a refused create failed: it expires on its own")
		return
	}
	log.Info("reservation of a refused create given back")
}

// renewReservations keeps the reservations of queued automatic creates
// from expiring while they wait for a worker: a reservation lasts 15
// minutes (ipam.DefaultReservationTTL), a deep queue may wait longer.
func (s *Server) renewReservations(ctx context.Context) {
	s.mu.Lock()
	var waiting []CreateParams
	for _, j := range s.jobs {
		if j.Status == StatusQueued && j.Kind == KindCreate && j.Request != nil && j.Request.Allocated {
			waiting = append(waiting, *j.Request)
		}
	}
	s.mu.Unlock()
	for _, p := range waiting {
		if err := s.opts.Allocator.Renew(ctx, p.Hostname, p.TenantID, p.VMID, p.IP); err != nil && ctx.Err() == nil {
			s.log.WithError(err).WithFields(logrus.Fields{"hostname": p.Hostname, "vmid": p.VMID}).Warn("renewing a queued create's reservation failed")
		}
	}
}

// keepReservations renews queued creates' reservations every
// Options.RenewEvery until ctx ends.
func (s *Server) keepReservations(ctx context.Context) {
	defer s.workers.Done()
	tick := time.NewTicker(s.opts.RenewEvery)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-s.stopping:
			return
		case <-tick.C:
			s.renewReservations(ctx)
		}
	}
}
