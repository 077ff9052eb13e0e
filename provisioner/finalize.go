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
		if err := r.p.opts.Addresses.Assign(ctx, *r.lease); err != nil {
			r.run.Warn(fmt.Sprintf("IPAM: marking %s assigned failed: %v", r.lease.IP, err))
		}
	}
	return nil
}
