package provisioner

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/migrahosting/cloudpods/netcfg"
	"github.com/migrahosting/cloudpods/provisioner/flow"
	"github.com/migrahosting/cloudpods/provisioner/pve"
)

// preflight checks PVE's state; it changes nothing, so a dry run runs it
// for real.
func (r *createRun) preflightStep() flow.Step {
	return flow.Step{Name: StepPreflight, ReadOnly: true, Run: r.preflight}
}

// requiredPrivileges are what create needs, by ACL path (pve-facts §7).
func (r *createRun) requiredPrivileges() []struct{ path, priv string } {
	s := r.spec
	vm := "/vms/" + strconv.Itoa(s.VMID)
	return []struct{ path, priv string }{
		{"/vms/" + strconv.Itoa(s.Template), "VM.Clone"},
		{"/vms/" + strconv.Itoa(s.Template), "VM.Audit"},
		{vm, "VM.Allocate"},
		{vm, "VM.Config.CPU"},
		{vm, "VM.Config.Memory"},
		{vm, "VM.Config.Network"},
		{vm, "VM.Config.Options"},
		{vm, "VM.PowerMgmt"},
		{vm, "VM.Console"},
		{vm, "VM.Audit"},
		{"/storage/" + s.Storage, "Datastore.AllocateSpace"},
		{"/sdn/zones/localnetwork/" + s.Bridge, "SDN.Use"},
		{"/nodes/" + s.Node, "Sys.Audit"},
	}
}

func (r *createRun) preflight(ctx context.Context) error {
	s := r.spec
	perms, err := r.p.api.Permissions(ctx)
	if err != nil {
		return apiProblem("read the token's permissions", err)
	}
	var missing []string
	for _, rp := range r.requiredPrivileges() {
		if !perms.Has(rp.path, rp.priv) {
			missing = append(missing, rp.priv+" on "+rp.path)
		}
	}
	if len(missing) > 0 {
		return problemf(ErrPreflight, "the API token lacks %s: grant them to the token (README: \"Token and minimal role\")", strings.Join(missing, ", "))
	}
	node, err := r.p.api.NodeStatus(ctx, s.Node)
	if errors.Is(err, pve.ErrNotFound) {
		return problemf(ErrPreflight, "node %q is not in the cluster: pass --node with one of the cluster's nodes", s.Node)
	}
	if err != nil {
		return apiProblem("read node "+s.Node, err)
	}
	if !node.Online {
		return problemf(ErrPreflight, "node %s is offline: bring it back or pass --node with an online node", s.Node)
	}
	if err := r.checkBounds(node); err != nil { // bounds.go
		return err
	}
	r.announceConsolePath(ctx)
	if err := r.checkTemplate(ctx); err != nil {
		return err
	}
	if err := r.checkExisting(ctx); err != nil {
		return err
	}
	if r.existing != nil {
		return nil // the pod exists and is ours: the remaining checks were its first run's
	}
	if err := r.checkStorage(ctx); err != nil {
		return err
	}
	if err := r.checkBridge(ctx); err != nil {
		return err
	}
	if r.lease != nil {
		// IPAM's reservation just checked the address against every
		// guest in the cluster: reading them all again adds nothing.
		return nil
	}
	return r.checkAddressFree(ctx)
}

// apiProblem names a refused token in one sentence with its fix; any other
// failure to ask PVE is wrapped with what was asked.
func apiProblem(what string, err error) error {
	switch {
	case errors.Is(err, pve.ErrUnauthorized):
		return problemf(ErrPreflight, "PVE refused the API token (%v): check PVE_TOKEN_ID and the secret, and that the token is not expired", err)
	case errors.Is(err, pve.ErrForbidden):
		return problemf(ErrPreflight, "PVE denied %s (%v): grant the token the CloudPods role", what, err)
	}
	return fmt.Errorf("%s: %w", what, err)
}

func (r *createRun) checkTemplate(ctx context.Context) error {
	s := r.spec
	cfg, err := r.p.api.GuestConfig(ctx, pve.CT(s.Node, s.Template))
	if errors.Is(err, pve.ErrNotFound) {
		return problemf(ErrPreflight, "template CT %d does not exist on node %s: pass --template with the golden template's VMID", s.Template, s.Node)
	}
	if err != nil {
		return apiProblem(fmt.Sprintf("read template CT %d", s.Template), err)
	}
	if cfg.Get("template") != "1" {
		return problemf(ErrPreflight, "CT %d is not a template: convert it in PVE (More > Convert to template) or pass --template with the golden template", s.Template)
	}
	r.cmode = cfg.Get("cmode")
	r.rootfsBytes = rootfsSize(cfg.Get("rootfs"))
	// The clone will carry the template's NIC options; configure reads the
	// clone's own net0, a dry run only has the template's.
	if n, err := netcfg.ParseNet0(cfg.Get("net0")); err == nil {
		r.cloned = n
	}
	tplStorage, _, _ := strings.Cut(cfg.Get("rootfs"), ":")
	if s.Linked && tplStorage != s.Storage {
		return problemf(ErrPreflight, "template CT %d is on storage %s, and a linked clone stays there: drop --linked or pass --storage %s", s.Template, tplStorage, tplStorage)
	}
	return nil
}

// checkExisting decides between a fresh create, a converging re-run and a
// refusal.
func (r *createRun) checkExisting(ctx context.Context) error {
	s := r.spec
	cfg, err := r.p.api.GuestConfig(ctx, r.ct())
	if errors.Is(err, pve.ErrNotFound) {
		free, ferr := r.p.api.VMIDFree(ctx, s.VMID)
		if ferr != nil {
			return apiProblem(fmt.Sprintf("check VMID %d", s.VMID), ferr)
		}
		if !free {
			return problemf(ErrConflict, "VMID %d is taken by another guest in the cluster (a VM, or a CT on another node): pick another --vmid", s.VMID)
		}
		return nil
	}
	if err != nil {
		return apiProblem(fmt.Sprintf("read CT %d", s.VMID), err)
	}
	m, ok := ParseMarker(cfg.Get("description"))
	if !ok || !m.Owns(s.VMID) {
		return problemf(ErrConflict, "CT %d already exists and was not created by cloudpods: pick another --vmid", s.VMID)
	}
	if m.SpecHash != s.Hash() {
		return problemf(ErrConflict, "CT %d already exists with a different spec (%s): destroy it first or pass the spec it was created with", s.VMID, strings.Join(diffEssentials(m.Spec, s.essentials()), ", "))
	}
	r.existing = &cfg
	if m.RunID == r.runID {
		// An earlier attempt of this same run (a resumed service job) made
		// it: it is this run's to finish or to roll back.
		r.cloneTried, r.created = true, true
	}
	r.run.Info(fmt.Sprintf("CT %d exists with this spec (run %s): converging", s.VMID, m.RunID))
	return nil
}

func (r *createRun) checkStorage(ctx context.Context) error {
	s := r.spec
	need := r.rootfsBytes
	storages, err := r.p.api.Storages(ctx, s.Node)
	if err != nil {
		return apiProblem("list storages on "+s.Node, err)
	}
	for _, st := range storages {
		if st.ID != s.Storage {
			continue
		}
		if !st.Enabled || !st.Active {
			return problemf(ErrPreflight, "storage %s is not active on node %s: check it in PVE (Datacenter > Storage) or pass --storage", s.Storage, s.Node)
		}
		if !contains(st.Content, "rootdir") {
			return problemf(ErrPreflight, "storage %s does not hold container volumes (content %s): pass --storage with a rootdir storage such as clients-main", s.Storage, strings.Join(st.Content, ","))
		}
		if need > 0 && st.Avail < need {
			return problemf(ErrPreflight, "storage %s has %s free but the rootfs needs %s: free space or pass another --storage", s.Storage, humanBytes(st.Avail), humanBytes(need))
		}
		return nil
	}
	return problemf(ErrPreflight, "storage %s does not exist on node %s: pass --storage with one of the node's storages", s.Storage, s.Node)
}

func (r *createRun) checkBridge(ctx context.Context) error {
	ifs, err := r.p.api.NetworkInterfaces(ctx, r.spec.Node)
	if err != nil {
		return apiProblem("list network interfaces on "+r.spec.Node, err)
	}
	for _, i := range ifs {
		if i.Name == r.spec.Bridge && (i.Type == "bridge" || i.Type == "OVSBridge") {
			return nil
		}
	}
	return problemf(ErrPreflight, "bridge %s does not exist on node %s: pass --bridge with one of the node's bridges", r.spec.Bridge, r.spec.Node)
}

// checkAddressFree refuses an address any guest in the cluster already uses
// in its config, whoever set it.
func (r *createRun) checkAddressFree(ctx context.Context) error {
	used, err := addressHolders(ctx, r.p.api)
	if err != nil {
		return apiProblem("read the cluster's guest addresses", err)
	}
	if holder, ok := used[r.spec.IP]; ok && holder.VMID != r.spec.VMID {
		return problemf(ErrConflict, "IP %s is already used by %s: pick another --ip, or run `cloudpod ip next`", r.spec.IP, holder)
	}
	return nil
}
