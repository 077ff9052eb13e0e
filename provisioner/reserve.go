package provisioner

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/migrahosting/cloudpods/ipam"
	"github.com/migrahosting/cloudpods/provisioner/flow"
)

// reserve holds the pod's address and VMID in IPAM (picking them when the
// request leaves them to IPAM) once preflight found nothing against the
// request, before anything is made in PVE. For a pod PVE already has, it
// adopts the pod's lease: PVE's state decides, the registry follows.
// Undoing it gives the lease back, unless a CT holds it.
func (r *createRun) reserveStep() flow.Step {
	return flow.Step{Name: StepReserve, Check: r.p.noIPAM, Run: r.reserve, Plan: r.planReserve, Undo: r.undoReserve}
}

// noIPAM skips a reserve step when no IPAM is configured (--ipam none).
func (p *Provisioner) noIPAM(context.Context) (string, error) {
	if p.opts.Addresses == nil {
		return "no IPAM configured", nil
	}
	return "", nil
}

func (r *createRun) addressRequest() AddressRequest {
	req := AddressRequest{Hostname: r.spec.Hostname, Tenant: r.spec.Tenant,
		Owner: LeaseOwner(r.spec.Tenant, r.spec.Hostname), IP: r.spec.IP, VMID: r.spec.VMID}
	if r.view != nil {
		req.Guests = r.view.ipamGuests()
	}
	return req
}

func (r *createRun) reserve(ctx context.Context) error {
	// A batch's next pod reserves once this one has, or has adopted the
	// lease of the pod PVE already has: not only when its whole run ends.
	defer r.req.turn.pass()
	if r.existing != nil {
		return r.adoptLease(ctx)
	}
	if err := r.req.turn.wait(ctx); err != nil {
		return err
	}
	// What has been read of the cluster since preflight, at no cost: the
	// listing preflight took, the configs read meanwhile.
	if err := r.view.look(ctx, r.looking(time.Time{}, true)); err != nil {
		return apiProblem("read the cluster's guests", err)
	}
	lease, err := r.p.opts.Addresses.Reserve(ctx, r.addressRequest())
	if err != nil {
		return ipamProblem(r.spec, err)
	}
	r.lease = &lease
	return r.take(lease)
}

// adoptLease records the lease of the pod PVE has, whatever the registry
// held. An address outside IPAM's pool (the pod was made without IPAM)
// is the pod's all the same: IPAM does not record it.
func (r *createRun) adoptLease(ctx context.Context) error {
	lease, err := r.p.opts.Addresses.Adopt(ctx, r.addressRequest())
	if errors.Is(err, ipam.ErrOutOfRange) {
		r.run.Warn(fmt.Sprintf("IPAM does not record %s: it is outside IPAM's range (the pod was made without IPAM)", r.spec.IP))
		return flow.Skip("the pod's address is outside IPAM's range")
	}
	if err != nil {
		return ipamProblem(r.spec, err)
	}
	r.lease = &lease
	r.run.Note(fmt.Sprintf("CT %d holds %s in PVE: its lease is assigned", lease.VMID, lease.IP))
	return nil
}

// ipamProblem is IPAM failing to hand out spec's numbers: its refusal
// (taken, out of range, nothing free) is a conflict in one sentence; a
// registry it cannot read or write keeps its own kind.
func ipamProblem(s Spec, err error) error { return ipamRefusal(describeWant(s), "", err) }

// ipamRefusal is IPAM failing to hand out want: a refusal is a conflict in
// one sentence, ending with fix (may be ""); a registry it cannot read or
// write keeps its own kind.
func ipamRefusal(want, fix string, err error) error {
	if allocationRefused(err) {
		return problemf(ErrConflict, "IPAM cannot reserve %s: %v%s", want, err, fix)
	}
	return fmt.Errorf("IPAM: %w", err)
}

// take makes the lease's address and VMID the pod's.
func (r *createRun) take(lease AddressLease) error {
	r.spec.IP, r.spec.VMID = lease.IP, lease.VMID
	r.res.VMID = lease.VMID
	if err := r.netSpec().Validate(); err != nil {
		return problemf(ErrInvalidSpec, "%v", err)
	}
	return nil
}

// planReserve is the dry run's reserve: what IPAM would hand out, read
// without reserving it, so the steps after it plan with the real VMID and
// address.
func (r *createRun) planReserve(ctx context.Context) ([]flow.Call, error) {
	a := r.p.opts.Addresses
	if a == nil {
		return nil, nil
	}
	params := func(l AddressLease) string { return leaseParams(r.spec.Hostname, l) }
	if r.existing != nil {
		l := AddressLease{IP: r.spec.IP, VMID: r.spec.VMID}
		return []flow.Call{{Method: "IPAM", Path: "adopt", Params: params(l), Note: "the pod PVE has keeps its lease, assigned"}}, nil
	}
	lease, err := a.Peek(ctx, r.addressRequest())
	if err != nil {
		return nil, ipamProblem(r.spec, err)
	}
	if err := r.take(lease); err != nil {
		return nil, err
	}
	return []flow.Call{{Method: "IPAM", Path: "reserve", Params: params(lease), Note: "the dry run reserved nothing"}}, nil
}

// undoReserve gives the reservation back when nothing of the pod is left:
// a CT an earlier run made, which no undo of this run removed, keeps the
// lease it holds.
func (r *createRun) undoReserve(ctx context.Context, rb flow.Rollback) flow.Outcome {
	switch {
	case r.lease == nil:
		return flow.Outcome{}
	case r.existing != nil && !r.ctGone:
		return r.keepExisting(rb)
	}
	return r.p.releaseLease(ctx, *r.lease)
}

// leaseParams are a planned IPAM call's parameters.
func leaseParams(hostname string, l AddressLease) string {
	return formatParams(map[string]string{"hostname": hostname, "ip": l.IP.String(), "vmid": strconv.Itoa(l.VMID)})
}

// releaseLease gives a reservation back to IPAM, as bookkeeping beside a
// rollback: a failure says how to free it by hand.
func (p *Provisioner) releaseLease(ctx context.Context, l AddressLease) flow.Outcome {
	if err := p.opts.Addresses.Release(ctx, l); err != nil {
		return flow.Outcome{Aside: true, Said: fmt.Sprintf("releasing %s in IPAM failed, run `cloudpod ip release %s`: %v", l.IP, l.IP, err)}
	}
	return flow.Outcome{Aside: true, Said: fmt.Sprintf("%s and VMID %d released in IPAM", l.IP, l.VMID)}
}
