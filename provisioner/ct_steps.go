package provisioner

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/migrahosting/cloudpods/netcfg"
	"github.com/migrahosting/cloudpods/provisioner/flow"
	"github.com/migrahosting/cloudpods/provisioner/pve"
)

// The steps a container made from an archive goes through after
// preflight: create, start, network, verify, finalize, and what undoing
// create means.

func (r *ctRun) createStep() flow.Step {
	return flow.Step{Name: StepCreate, Check: r.createDone, Run: r.create, Plan: r.planCreate, Undo: r.undoCreate}
}

func (r *ctRun) createDone(ctx context.Context) (string, error) {
	if r.existing == nil {
		return "", nil
	}
	if err := r.p.waitNoLock(ctx, r.ct(), r.p.opts.TaskTimeout); err != nil {
		return "", err
	}
	return fmt.Sprintf("CT %d exists with this spec", r.spec.VMID), nil
}

func (r *ctRun) planCreate(context.Context) ([]flow.Call, error) {
	s := r.spec
	if r.existing != nil {
		return []flow.Call{{Method: "GET", Path: ctPathOf(s.Node, s.VMID, "/config"), Note: "CT exists with this spec: converge"}}, nil
	}
	p := r.createParams("(ownership marker)")
	p["vmid"] = strconv.Itoa(s.VMID)
	if p["password"] != "" {
		p["password"] = "(from --password-file)"
	}
	if p["ssh-public-keys"] != "" {
		p["ssh-public-keys"] = fmt.Sprintf("(%d keys)", strings.Count(strings.TrimSpace(s.SSHKeys), "\n")+1)
	}
	return []flow.Call{
		{Method: "POST", Path: "/nodes/" + s.Node + "/lxc", Params: formatParams(p), Note: "vzcreate task; retried on transient refusals"},
		taskPoll(s.Node, "the vzcreate"),
	}, nil
}

func (r *ctRun) create(ctx context.Context) error {
	s := r.spec
	m := s.marker(r.runID, r.p.opts.Now())
	params := r.createParams(s.description(m))
	r.createTried = true
	r.res.Changed = true
	err := r.p.makeGuest(ctx, r.run, r.ct(), r.runID, fmt.Sprintf("create CT %d from %s", s.VMID, s.OSTemplate), func(ctx context.Context) (string, error) {
		return r.p.api.CreateGuest(ctx, r.ct(), params)
	}, r.started)
	r.created = r.created || err == nil
	return err
}

// started notes a task of this run that makes or boots the CT.
func (r *ctRun) started(upid string) { r.created, r.tasks = true, append(r.tasks, upid) }

// undoCreate removes the CT this run created, on failure; keeps it for the
// re-run when the run was stopped; only says what is there when aborted.
func (r *ctRun) undoCreate(ctx context.Context, rb flow.Rollback) flow.Outcome {
	return r.p.undoMade(ctx, r.run, madeGuest{g: r.ct(), runID: r.runID, existing: r.existing != nil, tried: r.createTried,
		made: r.created, tasks: r.tasks, keep: r.req.KeepOnFailure}, rb)
}

func ctPathOf(node string, vmid int, rest string) string {
	return fmt.Sprintf("/nodes/%s/lxc/%d%s", node, vmid, rest)
}

func (r *ctRun) startStep() flow.Step {
	return flow.Step{Name: StepStart, Check: r.startDone, Run: r.start, Plan: r.planStart}
}

func (r *ctRun) startDone(ctx context.Context) (string, error) {
	if !r.spec.Start {
		return "not asked to start (--start)", nil
	}
	st, err := r.p.api.GuestStatus(ctx, r.ct())
	if err != nil {
		return "", err
	}
	if st.Status == "running" {
		return "already running", nil
	}
	return "", nil
}

func (r *ctRun) planStart(context.Context) ([]flow.Call, error) {
	if !r.spec.Start {
		return nil, nil
	}
	return []flow.Call{{Method: "POST", Path: ctPathOf(r.spec.Node, r.spec.VMID, "/status/start")}, taskPoll(r.spec.Node, "the start")}, nil
}

func (r *ctRun) start(ctx context.Context) error {
	r.res.Changed = true
	return r.p.startAndWait(ctx, r.run, r.ct(), func(upid string) { r.tasks = append(r.tasks, upid) })
}

// startAndWait starts g and waits for its task under run's retry policy;
// a start whose outcome is unknown, or refused as already running, is
// settled by the guest's status. onTask hears each task started.
func (p *Provisioner) startAndWait(ctx context.Context, run *flow.Run, g pve.GuestRef, onTask func(upid string)) error {
	_, err := run.Retry().Task(ctx, "start "+g.String(), func(ctx context.Context) (string, error) {
		upid, err := p.api.StartGuest(ctx, g)
		if err == nil && onTask != nil {
			onTask(upid)
		}
		return upid, err
	}, func(ctx context.Context, upid string) error {
		_, err := p.wait(ctx, g.Node, upid)
		return err
	}, func(ctx context.Context, _ error) (bool, error) {
		st, err := p.api.GuestStatus(ctx, g)
		return err == nil && st.Status == "running", err
	})
	return err
}

func (r *ctRun) networkStep() flow.Step {
	return flow.Step{Name: StepNetwork, Run: r.network, Plan: r.planNetwork}
}

func (r *ctRun) planNetwork(context.Context) ([]flow.Call, error) {
	if !r.spec.Start {
		return nil, nil
	}
	var want []string
	for _, n := range r.spec.NICs {
		switch {
		case strings.Contains(n.IP, "/"):
			want = append(want, n.Name+" "+n.IP)
		case n.IP == "dhcp":
			want = append(want, n.Name+" a DHCP lease (waited for up to "+r.req.DHCPWait.String()+")")
		}
	}
	return []flow.Call{{Method: "GET", Path: ctPathOf(r.spec.Node, r.spec.VMID, "/interfaces"), Note: "until it shows " + orNothing(strings.Join(want, ", "))}}, nil
}

func orNothing(s string) string {
	if s == "" {
		return "the NICs (no address asked)"
	}
	return s
}

// network waits until PVE's view of the CT shows every static address and
// a lease for every DHCP NIC. A static address that does not come up fails
// the step; a DHCP NIC without a lease is a warning (its network may have
// no DHCP server), as is IPv6, which PVE's view reports once configured.
func (r *ctRun) network(ctx context.Context) error {
	if !r.spec.Start {
		return flow.Skip("not started")
	}
	shown := map[string]string{}
	pending := func() (static, dhcp []netcfg.NIC) {
		for _, n := range r.spec.NICs {
			switch {
			case strings.Contains(n.IP, "/") && shown[n.Name] != n.IP:
				static = append(static, n)
			case n.IP == "dhcp" && shown[n.Name] == "":
				dhcp = append(dhcp, n)
			}
		}
		return
	}
	limit := max(r.p.opts.VerifyTimeout, r.req.DHCPWait)
	begin := time.Now()
	err := pollUntil(ctx, limit, func(ctx context.Context) (bool, error) {
		ifs, err := r.p.api.GuestInterfaces(ctx, r.ct())
		if errors.Is(err, pve.ErrTransient) {
			return false, nil
		}
		if err != nil {
			return false, err
		}
		for _, i := range ifs {
			shown[i.Name] = i.Inet
		}
		static, dhcp := pending()
		if len(static) == 0 && (len(dhcp) == 0 || time.Since(begin) >= r.req.DHCPWait) {
			return true, nil
		}
		return time.Since(begin) >= r.p.opts.VerifyTimeout && len(static) > 0, nil
	})
	if err != nil && !(errors.Is(err, context.DeadlineExceeded) && ctx.Err() == nil) {
		return err
	}
	static, dhcp := pending()
	r.res.NICs = nil
	for i, n := range r.spec.NICs {
		r.res.NICs = append(r.res.NICs, NICState{Key: "net" + strconv.Itoa(i), Name: n.Name, Config: n.ContainerNet(), Address: shown[n.Name]})
	}
	if len(static) > 0 {
		var bad []string
		for _, n := range static {
			bad = append(bad, fmt.Sprintf("%s shows %q, not %s", n.Name, shown[n.Name], n.IP))
		}
		return fmt.Errorf("CT %d's static addresses did not come up after %s: %s", r.spec.VMID, r.p.opts.VerifyTimeout, strings.Join(bad, "; "))
	}
	for _, n := range dhcp {
		where := n.Bridge
		if n.VLAN != 0 {
			where += " VLAN " + strconv.Itoa(n.VLAN)
		}
		r.run.Warn(fmt.Sprintf("%s asked for DHCP but had no IPv4 lease after %s: is there a DHCP server on %s? The CT runs; `cloudpod show %d` shows its addresses later", n.Name, r.req.DHCPWait, where, r.spec.VMID))
	}
	var got []string
	for _, s := range r.res.NICs {
		if s.Address != "" {
			got = append(got, s.Name+" "+s.Address)
		}
	}
	r.run.Note(orNothing(strings.Join(got, ", ")))
	return nil
}

func (r *ctRun) verifyStep() flow.Step {
	return flow.Step{Name: StepVerify, Run: r.verify, Plan: r.planVerify}
}

func (r *ctRun) planVerify(context.Context) ([]flow.Call, error) {
	return []flow.Call{{Method: "GET", Path: ctPathOf(r.spec.Node, r.spec.VMID, "/config"), Note: "NICs, privilege level, features, resources as asked"}}, nil
}

// verify reads PVE's config back: every NIC as given, the privilege level,
// the features, the resources, the rootfs; and the CT running if started.
func (r *ctRun) verify(ctx context.Context) error {
	checks, err := r.p.verifyGuest(ctx, r.ct(), r.spec.Start, r.configChecks)
	r.res.Checks = append(r.res.Checks, checks...)
	return err
}

// failedChecks is nil when every check passed, else one error naming each
// failure.
func failedChecks(what string, checks []Check) error {
	var bad []string
	for _, c := range checks {
		if !c.OK {
			bad = append(bad, c.Name+": "+c.Detail)
		}
	}
	if len(bad) == 0 {
		return nil
	}
	return fmt.Errorf("%s: %s", what, strings.Join(bad, "; "))
}

// configChecks compares a CT's config with the spec.
func (r *ctRun) configChecks(cfg pve.Config) []Check {
	s := r.spec
	var checks []Check
	eq := func(name, have, want string) {
		c := Check{Name: name, OK: have == want, Detail: have}
		if !c.OK {
			c.Detail = fmt.Sprintf("%s, want %s", orDefault(have, "(unset)"), want)
		}
		checks = append(checks, c)
	}
	for i, n := range s.NICs {
		key := "net" + strconv.Itoa(i)
		c := Check{Name: key, OK: netcfg.SameNIC(cfg.Get(key), n), Detail: cfg.Get(key)}
		if !c.OK {
			c.Detail = fmt.Sprintf("%s, want %s", orDefault(cfg.Get(key), "(unset)"), n.ContainerNet())
		}
		checks = append(checks, c)
	}
	for i := len(s.NICs); i < maxNetKeys; i++ {
		if v := cfg.Get("net" + strconv.Itoa(i)); v != "" {
			checks = append(checks, Check{Name: "net" + strconv.Itoa(i), Detail: v + ", want none"})
		}
	}
	unpriv := cfg.Get("unprivileged")
	if unpriv == "" {
		unpriv = "0"
	}
	eq("unprivileged", unpriv, boolParam(s.Unprivileged))
	eq("features", normalizeFeatures(cfg.Get("features")), strings.Join(s.Features, ","))
	eq("hostname", cfg.Get("hostname"), s.Hostname)
	eq("cores", cfg.Get("cores"), strconv.Itoa(s.Cores))
	eq("memory", cfg.Get("memory"), strconv.Itoa(s.MemoryMB))
	eq("swap", cfg.Get("swap"), strconv.Itoa(s.SwapMB))
	if s.OSType != "" {
		eq("ostype", cfg.Get("ostype"), s.OSType)
	}
	eq("rootfs storage", rootfsStorage(cfg.Get("rootfs")), r.storage.ID)
	eq("rootfs size", strconv.FormatInt(rootfsSize(cfg.Get("rootfs"))>>30, 10)+"G", strconv.Itoa(s.DiskGB)+"G")
	return checks
}

// maxNetKeys is how many netN keys a container may have.
const maxNetKeys = 32

func normalizeFeatures(v string) string {
	if v == "" {
		return ""
	}
	parts := strings.Split(v, ",")
	sort.Strings(parts)
	return strings.Join(parts, ",")
}

func (r *ctRun) finalizeStep() flow.Step {
	return flow.Step{Name: StepFinalize, Check: r.finalized, Run: r.finalize, Plan: r.planFinalize}
}

func (r *ctRun) planFinalize(context.Context) ([]flow.Call, error) {
	return []flow.Call{{Method: "PUT", Path: ctPathOf(r.spec.Node, r.spec.VMID, "/config"), Params: "description=(marker: ready)"}}, nil
}

func (r *ctRun) finalized(ctx context.Context) (string, error) {
	return r.p.finalizedGuest(ctx, r.ct())
}

// finalize marks the CT ready in its marker and assigns its leases.
func (r *ctRun) finalize(ctx context.Context) error {
	r.res.Changed = true
	if err := r.p.markReady(ctx, r.run, r.ct(), r.spec.description); err != nil {
		return err
	}
	r.leases.assign(ctx)
	return nil
}

// staticAddrs are the spec's static IPv4 addresses.
func (s CTSpec) staticAddrs() []netip.Addr {
	var out []netip.Addr
	for _, n := range s.NICs {
		if p, err := netip.ParsePrefix(n.IP); err == nil {
			out = append(out, p.Addr())
		}
	}
	return out
}
