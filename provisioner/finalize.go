package provisioner

import (
	"context"
	"fmt"

	"github.com/migrahosting/cloudpods/provisioner/flow"
)

// finalize marks the pod ready, restores the template's console mode and
// assigns the address in IPAM.
func (r *createRun) finalizeStep() flow.Step {
	return flow.Step{Name: StepFinalize, Run: r.finalize, Plan: r.planFinalize}
}

func (r *createRun) planFinalize(context.Context) ([]flow.Call, error) {
	return []flow.Call{{Method: "PUT", Path: ctPath(r.spec, "/config"), Params: formatParams(map[string]string{"description": "(marker: ready)", "delete": "cmode"})}}, nil
}

func (r *createRun) finalize(ctx context.Context) error {
	cfg, err := r.p.api.GuestConfig(ctx, r.ct())
	if err != nil {
		return err
	}
	m, _ := ParseMarker(cfg.Get("description"))
	want := map[string]string{}
	var del []string
	if m.State != "ready" {
		m.State = "ready"
		want["description"] = m.Description()
	}
	if r.cmode == "" {
		del = []string{"cmode"}
	} else {
		want["cmode"] = r.cmode
	}
	if configChanges(cfg, want, del) != nil {
		r.res.Changed = true
		// Unguarded: the marker and cmode are ours alone to set.
		if err := r.applyConfig(ctx, fmt.Sprintf("mark CT %d ready", r.spec.VMID), cfg, want, del, false); err != nil {
			return err
		}
	}
	if r.lease != nil {
		r.p.assignLease(ctx, r.run, *r.lease)
	}
	return nil
}

// assignLease marks a lease assigned once its guest is made; a failure is
// a warning (the guest is there either way; ip sync records it).
func (p *Provisioner) assignLease(ctx context.Context, run *flow.Run, l AddressLease) {
	if err := p.opts.Addresses.Assign(ctx, l); err != nil {
		run.Warn(fmt.Sprintf("IPAM: marking %s assigned failed: %v", l.IP, err))
	}
}
