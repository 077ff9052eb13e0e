package provisioner

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"strconv"
	"strings"

	"github.com/migrahosting/cloudpods/provisioner/flow"
	"github.com/migrahosting/cloudpods/provisioner/pve"
)

// reserve holds the pod's address and VMID in IPAM (picking them when the
// request leaves them to IPAM), before anything is made in PVE. Undoing it
// gives the lease back, unless a CT holds it.
func (r *createRun) reserveStep() flow.Step {
	return flow.Step{Name: StepReserve, Check: r.noIPAM, Run: r.reserve, Plan: r.planReserve, Undo: r.undoReserve}
}

func (r *createRun) noIPAM(context.Context) (string, error) {
	if r.p.opts.Addresses == nil {
		return "no IPAM configured", nil
	}
	return "", nil
}

func (r *createRun) addressRequest() AddressRequest {
	return AddressRequest{Hostname: r.spec.Hostname, Tenant: r.spec.Tenant,
		Owner: LeaseOwner(r.spec.Tenant, r.spec.Hostname), IP: r.spec.IP, VMID: r.spec.VMID}
}

func (r *createRun) reserve(ctx context.Context) error {
	if r.spec.VMID == 0 || !r.spec.IP.IsValid() {
		if err := r.adopt(ctx); err != nil {
			return err
		}
	}
	lease, err := r.p.opts.Addresses.Reserve(ctx, r.addressRequest())
	if err != nil {
		return problemf(ErrConflict, "IPAM cannot reserve %s: %v", describeWant(r.spec), err)
	}
	r.lease = &lease
	return r.take(lease)
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
// without reserving it, so the steps after it check the real VMID and
// address.
func (r *createRun) planReserve(ctx context.Context) ([]flow.Call, error) {
	a := r.p.opts.Addresses
	if a == nil {
		return nil, nil
	}
	if r.spec.VMID == 0 || !r.spec.IP.IsValid() {
		if err := r.adopt(ctx); err != nil {
			return nil, err
		}
	}
	lease, err := a.Peek(ctx, r.addressRequest())
	if err != nil {
		return nil, problemf(ErrConflict, "IPAM cannot reserve %s: %v", describeWant(r.spec), err)
	}
	if err := r.take(lease); err != nil {
		return nil, err
	}
	return []flow.Call{{Method: "IPAM", Path: "reserve", Note: "the dry run reserved nothing",
		Params: formatParams(map[string]string{"hostname": r.spec.Hostname, "ip": lease.IP.String(), "vmid": strconv.Itoa(lease.VMID)})}}, nil
}

// adopt finds the pod an earlier run of the same command made (it may have
// been killed before IPAM recorded it, or its reservation may have
// expired), so an auto VMID or IP re-run converges on it instead of
// creating a second pod. A pod of the same hostname and tenant with a
// different spec is a conflict.
func (r *createRun) adopt(ctx context.Context) error {
	s := r.spec
	guests, err := r.p.api.Guests(ctx)
	if err != nil {
		return apiProblem("list the cluster's guests", err)
	}
	for _, g := range guests {
		if g.Type != pve.LXC || g.Name != s.Hostname || (s.VMID != 0 && g.VMID != s.VMID) {
			continue
		}
		cfg, err := r.p.api.GuestConfig(ctx, g.Ref())
		if errors.Is(err, pve.ErrNotFound) {
			continue
		}
		if err != nil {
			return apiProblem(fmt.Sprintf("read CT %d", g.VMID), err)
		}
		m, ok := ParseMarker(cfg.Get("description"))
		if !ok || !m.Owns(g.VMID) || m.Hostname != s.Hostname || m.Tenant != s.Tenant {
			continue
		}
		want := s
		want.VMID = g.VMID
		if !want.IP.IsValid() {
			if p, err := netip.ParsePrefix(m.Spec.Address); err == nil {
				want.IP = p.Addr()
			}
		}
		if m.SpecHash != want.Hash() {
			return problemf(ErrConflict, "%s is already CT %d, made by cloudpods with a different spec (%s): destroy it first or pass the spec it was created with",
				s.Hostname, g.VMID, strings.Join(diffEssentials(m.Spec, want.essentials()), ", "))
		}
		r.spec.VMID, r.spec.IP = want.VMID, want.IP
		r.run.Info(fmt.Sprintf("%s is CT %d with %s from an earlier run (%s): converging on it", s.Hostname, want.VMID, want.IP, m.RunID))
		return nil
	}
	return nil
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
	if err := r.p.opts.Addresses.Release(ctx, *r.lease); err != nil {
		return flow.Outcome{Aside: true, Said: fmt.Sprintf("releasing %s in IPAM failed, run `cloudpod ip release %s`: %v", r.lease.IP, r.lease.IP, err)}
	}
	return flow.Outcome{Aside: true, Said: fmt.Sprintf("%s and VMID %d released in IPAM", r.lease.IP, r.lease.VMID)}
}
