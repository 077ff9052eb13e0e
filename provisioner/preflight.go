package provisioner

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"strconv"
	"strings"
	"time"

	"github.com/migrahosting/cloudpods/netcfg"
	"github.com/migrahosting/cloudpods/provisioner/flow"
	"github.com/migrahosting/cloudpods/provisioner/pve"
)

// preflight checks PVE's state; it changes nothing, so a dry run runs it
// for real.
func (r *createRun) preflightStep() flow.Step {
	return flow.Step{Name: StepPreflight, ReadOnly: true, Run: r.preflight}
}

// requiredPrivileges are what create needs, by ACL path (pve-facts §7). An
// automatic VMID is any VMID: its privileges must hold on /vms.
func (r *createRun) requiredPrivileges() []struct{ path, priv string } {
	s := r.spec
	vm := "/vms"
	if s.VMID != 0 {
		vm += "/" + strconv.Itoa(s.VMID)
	}
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
		{nodePath(s.Node), "Sys.Audit"},
	}
}

// nodePath is the ACL path of the node a pod goes to: every node's for a
// node placement chooses.
func nodePath(node string) string {
	if node == AutoNode {
		return "/nodes"
	}
	return "/nodes/" + node
}

// preflight reads PVE's state and refuses what it does not allow, before
// anything is reserved or made: the token and its privileges, the node,
// the template, the cluster's guests (one read, which reserve and claim
// build on), whether the pod exists already, then for a new pod its
// placement (the node for --node auto, how the template gets there),
// hostname, storage, bridge, address and VMID. --node auto reads the
// cluster first: the node comes from there.
func (r *createRun) preflight(ctx context.Context) error {
	if err := r.checkPrivileges(ctx); err != nil {
		return err
	}
	if r.spec.Node == AutoNode {
		if err := r.readCluster(ctx); err != nil {
			return err
		}
		if r.existing == nil {
			if err := r.place(ctx, r.dryRun); err != nil {
				return err
			}
		}
	}
	if err := r.checkNode(ctx); err != nil {
		return err
	}
	if r.view == nil {
		if err := r.readCluster(ctx); err != nil {
			return err
		}
	}
	if r.existing != nil {
		return nil // the pod exists and is ours: the remaining checks were its first run's
	}
	if r.placement == nil {
		if err := r.placePinned(ctx); err != nil {
			return err
		}
	}
	if err := r.checkHostname(); err != nil {
		return err
	}
	if err := r.checkStorage(ctx); err != nil {
		return err
	}
	if err := r.checkBridge(ctx); err != nil {
		return err
	}
	return r.checkAddressFree()
}

func (r *createRun) checkPrivileges(ctx context.Context) error {
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
		return problemf(pve.ErrForbidden, "the API token lacks %s: grant them to the token and its user (README: \"Token and minimal role\")", strings.Join(missing, ", "))
	}
	return nil
}

// checkNode reads the pod's node: in the cluster, online, big enough;
// and says which console path the network step takes there.
func (r *createRun) checkNode(ctx context.Context) error {
	s := r.spec
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
	return nil
}

// readCluster reads the cluster's guests once (reserve and claim build on
// the view), checks the template and finds the pod an earlier run made.
func (r *createRun) readCluster(ctx context.Context) error {
	r.view = r.p.newView()
	if err := r.view.look(ctx, r.preflightLook()); err != nil {
		return apiProblem("read the cluster's guests", err)
	}
	if err := r.checkTemplate(); err != nil {
		return err
	}
	if r.spec.VMID == 0 || !r.spec.IP.IsValid() {
		if err := r.findEarlier(); err != nil {
			return err
		}
	}
	if r.spec.VMID != 0 {
		if err := r.checkExisting(); err != nil {
			return err
		}
	}
	return nil
}

// preflightLook is how much of the cluster preflight waits for. An
// address the request names is checked against every guest's config here,
// so a taken one is refused before anything is made. An address left to
// IPAM is picked from the configs read so far while the rest are read in
// the background: the first clone of a batch need not wait for a thousand
// reads, and claim checks the pod's address against every guest's config
// before the pod starts (losing it to a guest read late moves the pod to
// the next free address).
func (r *createRun) preflightLook() look {
	return r.looking(r.started, r.autoIP && !r.dryRun)
}

// looking is a look at the cluster for this create, begun after since:
// waiting for every guest's config, or (partial) only for what the
// create's checks read: the templates, the guest at the VMID and the guests
// of the hostname. Where SDN IPAM answers the address question
// (InventoryOptions.AddressesFromSDN), only those are read at all.
func (r *createRun) looking(since time.Time, partial bool) look {
	s := r.spec
	return look{since: since, partial: partial, onDemand: r.p.opts.Inventory.AddressesFromSDN, need: func(g pve.Guest) bool {
		// Templates too: placement reads the markers of the template's
		// copies on other nodes (templatecopy.go).
		return g.VMID == s.Template || g.Template || (s.VMID != 0 && g.VMID == s.VMID) || strings.EqualFold(g.Name, s.Hostname)
	}}
}

// apiProblem is a failure to ask PVE: one that is about talking to PVE at
// all (the token refused, the certificate not trusted, nothing answering)
// is pve.Explain's one sentence naming the fix, classified by its cause
// (exit 5 or 7); any other is wrapped with what was asked.
func apiProblem(what string, err error) error {
	if sentence, ok := pve.Explain(err); ok {
		return &problem{msg: sentence, cause: err}
	}
	return fmt.Errorf("%s: %w", what, err)
}

// checkTemplate finds the golden template, on whatever node it is
// (placement decides how it reaches the pod's node).
func (r *createRun) checkTemplate() error {
	s := r.spec
	if _, _, err := templatesOf(r.view, s.Template); err != nil {
		return err
	}
	cfg := r.view.get(s.Template).cfg
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

// findEarlier finds the pod an earlier run of the same command made, for a
// request that leaves the VMID or the address to IPAM (the earlier run may
// have been killed before IPAM recorded it, or on another controller), so
// the re-run converges on it instead of creating a second pod. A pod of
// the same hostname and tenant with a different spec is a conflict that
// names every difference.
func (r *createRun) findEarlier() error {
	s := r.spec
	for _, g := range r.view.named(s.Hostname, 0) {
		m := g.marker
		if g.Type != pve.LXC || !g.owned || m.Hostname != s.Hostname || m.Tenant != s.Tenant || (s.VMID != 0 && g.VMID != s.VMID) {
			continue
		}
		want := s
		want.VMID = g.VMID
		if want.Node == AutoNode {
			want.Node = m.Spec.Node // placed by the earlier run
		}
		if !want.IP.IsValid() {
			if p, err := netip.ParsePrefix(m.Spec.Address); err == nil {
				want.IP = p.Addr()
			}
		}
		if m.SpecHash != want.Hash() {
			return problemf(ErrConflict, "%s is already CT %d, made by cloudpods with a different spec (%s): destroy it first or pass the spec it was created with",
				s.Hostname, g.VMID, strings.Join(diffEssentials(m.Spec, want.essentials()), ", "))
		}
		r.spec.VMID, r.spec.IP, r.spec.Node = want.VMID, want.IP, want.Node
		r.run.Info(fmt.Sprintf("%s is CT %d with %s from an earlier run (%s): converging on it", s.Hostname, want.VMID, want.IP, m.RunID))
		return nil
	}
	return nil
}

// checkExisting decides between a fresh create, a converging re-run and a
// refusal, from what PVE has at the VMID.
func (r *createRun) checkExisting() error {
	g := r.view.get(r.spec.VMID)
	if g != nil && g.owned && g.Type == pve.LXC && r.spec.Node == AutoNode {
		r.spec.Node = g.marker.Spec.Node // the node placement chose for it
	}
	s := r.spec
	switch {
	case g == nil:
		return nil
	case g.Type != pve.LXC || (g.Node != s.Node && !g.owned):
		return problemf(ErrConflict, "VMID %d is taken by %s on node %s: pick another --vmid, or --vmid auto", s.VMID, g, g.Node)
	case !g.owned:
		return problemf(ErrConflict, "CT %d already exists and was not created by cloudpods: pick another --vmid, or --vmid auto", s.VMID)
	}
	m := g.marker
	if g.Node != s.Node {
		if m.SpecHash != s.Hash() || m.State != "provisioning" {
			return problemf(ErrConflict, "VMID %d is taken by %s on node %s (made for node %s): pick another --vmid, or --vmid auto", s.VMID, g, g.Node, orDefault(m.Spec.Node, "?"))
		}
		// A run stopped between its clone and the migration to the
		// pod's node: the clone step finishes the move.
		r.ctNode = g.Node
	}
	if m.SpecHash != s.Hash() {
		return problemf(ErrConflict, "CT %d already exists with a different spec (%s): destroy it first or pass the spec it was created with", s.VMID, strings.Join(diffEssentials(m.Spec, s.essentials()), ", "))
	}
	cfg := g.cfg
	r.existing = &cfg
	if m.RunID == r.runID {
		// An earlier attempt of this same run (a resumed service job) made
		// it: it is this run's to finish or to roll back.
		r.cloneTried, r.created = true, true
	}
	r.run.Info(fmt.Sprintf("CT %d exists with this spec (run %s): converging", s.VMID, m.RunID))
	return nil
}

// checkHostname refuses a hostname another guest in the cluster has, in
// any case, unless duplicates were asked for.
func (r *createRun) checkHostname() error {
	if r.req.AllowDuplicateHostname {
		return nil
	}
	if others := r.view.named(r.spec.Hostname, r.spec.VMID); len(others) > 0 {
		g := others[0]
		return problemf(ErrConflict, "hostname %s is taken: %s on node %s has it: pick another --host, or pass --allow-duplicate-hostname to have two", r.spec.Hostname, g, g.Node)
	}
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
// in its config, whoever set it. An automatic address is reserve's to
// pick, from the same view.
func (r *createRun) checkAddressFree() error {
	if !r.spec.IP.IsValid() {
		return nil
	}
	if holders := r.view.holding(r.spec.IP, r.spec.VMID); len(holders) > 0 {
		return problemf(ErrConflict, "IP %s is already used by %s: pick another --ip, or run `cloudpod ip next`", r.spec.IP, holders[0])
	}
	return nil
}
