package provisioner

import (
	"cmp"
	"context"
	"fmt"
	"time"

	"github.com/migrahosting/cloudpods/netcfg"
	"github.com/migrahosting/cloudpods/provisioner/flow"
)

// claim settles, with PVE as the ledger every controller shares, that the
// pod alone holds its address and hostname (docs/multi-controller.md).
// Controllers with separate registries may pick the same free address;
// PVE serialises VMIDs (a clone to an existing one fails), not addresses.
// So the address configure just wrote is a claim, and claim looks again at
// every guest that may have written it since preflight read the cluster
// (clusterView.refresh: the ones that may be in the making). Another holder
// that is settled
// (running, or not a pod in the making) keeps it; between two pods in the
// making the lower VMID keeps it, and the higher one waits until the lower
// one has given the address up or settled. The loser takes the next free
// address (an address IPAM picked) or fails as a conflict (one the
// request named). A pod starts only after its claim, so "running" means
// "settled": two controllers never both keep one address.
func (r *createRun) claimStep() flow.Step {
	return flow.Step{Name: StepClaim, Run: r.claim, Plan: r.planClaim}
}

func (r *createRun) planClaim(context.Context) ([]flow.Call, error) {
	return []flow.Call{{Method: "GET", Path: "/cluster/resources?type=vm",
		Note: fmt.Sprintf("then the config of each guest in the making since preflight: another holder of %s or of hostname %s settles who keeps it", r.spec.IP, r.spec.Hostname)}}, nil
}

// claimState is what one claim carries from look to look.
type claimState struct {
	// deadline ends the wait for a rival in the making; a move to another
	// address starts it anew.
	deadline   time.Time
	moves      int
	waitingFor *viewGuest
}

func (r *createRun) claim(ctx context.Context) error {
	if r.view == nil {
		r.view = r.p.newView()
	}
	c := &claimState{deadline: time.Now().Add(r.p.opts.ClaimWait)}
	// Every move to another address may wait anew: the bound covers them all.
	return pollUntil(ctx, time.Duration(raceRetries+2)*r.p.opts.ClaimWait, func(ctx context.Context) (bool, error) {
		return r.claimOnce(ctx, c)
	})
}

// claimOnce looks at the cluster once: done when the pod holds its address
// and hostname alone, not done while it waits for a rival or after it moved
// to another address.
func (r *createRun) claimOnce(ctx context.Context, c *claimState) (bool, error) {
	if err := r.view.look(ctx, r.looking(time.Now(), false)); err != nil {
		return false, apiProblem("read the cluster's guests", err)
	}
	self := r.view.get(r.spec.VMID)
	switch {
	case self == nil:
		return false, fmt.Errorf("CT %d disappeared before it was started: run the command again", r.spec.VMID)
	case self.Status == "running":
		return false, flow.Skip(fmt.Sprintf("CT %d runs: its claim was settled before it started", r.spec.VMID))
	}
	expired := time.Now().After(c.deadline)
	var nameRival, ipRival *viewGuest
	var nameLost, ipLost bool
	if !r.req.AllowDuplicateHostname {
		nameRival, nameLost = rival(r.view.named(r.spec.Hostname, self.VMID), self, expired)
	}
	ipRival, ipLost = rival(r.view.holding(r.spec.IP, self.VMID), self, expired)
	switch {
	case nameLost:
		return false, problemf(ErrConflict, "hostname %s was taken meanwhile by %s (another controller?): pick another --host", r.spec.Hostname, nameRival)
	case ipLost && (!r.autoIP || r.lease == nil || c.moves >= raceRetries):
		return false, problemf(ErrConflict, "IP %s was taken meanwhile by %s (another controller?): pick another --ip, or --ip auto", r.spec.IP, ipRival)
	case ipLost:
		c.moves++
		lost := r.spec.IP
		if err := r.readdress(ctx, self); err != nil {
			return false, err
		}
		r.run.Info(fmt.Sprintf("%s was taken meanwhile by %s (another controller?): moved to %s", lost, ipRival, r.spec.IP))
		c.deadline, c.waitingFor = time.Now().Add(r.p.opts.ClaimWait), nil
		return false, nil
	case nameRival != nil || ipRival != nil:
		if w := cmp.Or(ipRival, nameRival); w != c.waitingFor {
			c.waitingFor = w
			r.run.Info(fmt.Sprintf("%s, a pod in the making with a higher VMID, also has %s or %s: waiting for it to give them up or start", w, r.spec.IP, r.spec.Hostname))
		}
		return false, nil
	}
	r.run.Note(fmt.Sprintf("%s and %s are CT %d's alone", r.spec.IP, r.spec.Hostname, self.VMID))
	return true, nil
}

// rival decides between self and the other holders of one address or
// hostname: lost names the first that keeps it (settled, or in the making
// with a lower VMID; any, once the wait is over); otherwise rival is one
// still in the making with a higher VMID, which gives it up or settles.
func rival(others []*viewGuest, self *viewGuest, expired bool) (rival *viewGuest, lost bool) {
	for _, g := range others {
		if g.settled() || g.VMID < self.VMID || expired {
			return g, true
		}
		rival = g
	}
	return rival, false
}

// readdress gives the address this run lost back to IPAM, reserves the
// next free one from the cluster as it is now, and writes it to the pod:
// net0 and the marker's spec, so the same command finds the pod again.
func (r *createRun) readdress(ctx context.Context, self *viewGuest) error {
	if err := r.reserveAgain(ctx, false); err != nil {
		return err
	}
	m := self.marker
	m.SpecHash, m.Spec = r.spec.Hash(), r.spec.essentials()
	if n, err := netcfg.ParseNet0(self.cfg.Get("net0")); err == nil {
		r.hwaddr, r.cloned = n.HWAddr, n
	}
	want := map[string]string{"net0": r.wantedConfig()["net0"], "description": m.Description()}
	return r.applyConfig(ctx, fmt.Sprintf("move CT %d to %s", r.spec.VMID, r.spec.IP), self.cfg, want, nil, true)
}
