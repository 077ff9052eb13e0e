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

// The steps that make and boot a VM: the image (a URL's download), create,
// resize, start, the guest agent, the addresses, the checks, verify,
// finalize.

// imageDone: an existing VM's disk was imported already; a cached copy
// without a checksum is taken as it is.
func (r *vmRun) imageDone(ctx context.Context) (string, error) {
	if r.existing != nil {
		return fmt.Sprintf("VM %d exists: its disk was imported already", r.spec.VMID), nil
	}
	return r.content.transferDone(ctx)
}

func (r *vmRun) planImage(ctx context.Context) ([]flow.Call, error) {
	calls, err := r.content.planTransfer(ctx)
	if err != nil {
		return nil, err
	}
	v, err := r.content.planVerify(ctx)
	return append(calls, v...), err
}

// fetchImage has PVE download the image (with its checksum) to the import
// storage, or confirm the copy there, then checks the storage lists it.
func (r *vmRun) fetchImage(ctx context.Context) error {
	err := r.content.transfer(ctx)
	if err != nil && !flow.IsSkip(err) {
		return err
	}
	if verr := r.content.verify(ctx); verr != nil {
		return verr
	}
	if err == nil {
		r.res.Changed = true
	}
	return err
}

func (r *vmRun) undoImage(ctx context.Context, rb flow.Rollback) flow.Outcome {
	return r.content.undoTransfer(ctx, rb)
}

func (r *vmRun) createDone(ctx context.Context) (string, error) {
	if r.existing == nil {
		return "", nil
	}
	if err := r.p.waitNoLock(ctx, r.vm(), r.p.opts.TaskTimeout); err != nil {
		return "", err
	}
	return fmt.Sprintf("VM %d exists with this spec", r.spec.VMID), nil
}

// createParams are POST /nodes/{node}/qemu's parameters: the image
// imported as scsi0 on the disks' storage, the firmware (OVMF with its
// EFI vars disk, Secure Boot keys not enrolled), the cloud-init drive, the
// serial console cloud images print to, cards, cloud-init settings,
// mapped devices.
func (r *vmRun) createParams(description string) map[string]string {
	s, st := r.spec, r.storage.ID
	p := map[string]string{
		"name":        s.Name,
		"ostype":      "l26",
		"cores":       strconv.Itoa(s.Cores),
		"memory":      strconv.Itoa(s.MemoryMB),
		"bios":        s.BIOS,
		"scsihw":      "virtio-scsi-single",
		"scsi0":       fmt.Sprintf("%s:0,import-from=%s,discard=on,ssd=1,iothread=1", st, r.image),
		"boot":        "order=scsi0",
		"serial0":     "socket",
		"onboot":      boolParam(s.OnBoot),
		"description": description,
		"tags":        tagString(append([]string{OwnerTag}, s.Tags...)),
	}
	if !r.router {
		// Cloud images print their console to ttyS0.
		p["ide2"], p["vga"] = st+":cloudinit", "serial0"
	}
	if s.BIOS == BIOSOVMF {
		p["efidisk0"] = st + ":1,efitype=4m,pre-enrolled-keys=0"
	}
	setNonEmpty(p, "cpu", s.CPU)
	setNonEmpty(p, "machine", machineParam(s.Machine))
	if s.Agent {
		p["agent"] = "enabled=1"
	}
	for _, n := range s.NICs {
		p[n.Key()] = n.Value()
	}
	for k, v := range s.cloudInitParams() {
		p[k] = v
	}
	devs, _ := s.passthrough()
	for _, d := range devs {
		p[d.key()] = d.value
	}
	return p
}

func (r *vmRun) planCreate(context.Context) ([]flow.Call, error) {
	s := r.spec
	if r.existing != nil {
		return []flow.Call{{Method: "GET", Path: vmPathOf(s.Node, s.VMID, "/config"), Note: "VM exists with this spec: converge"}}, nil
	}
	p := r.createParams("(ownership marker)")
	p["vmid"] = strconv.Itoa(s.VMID)
	if p["sshkeys"] != "" {
		p["sshkeys"] = fmt.Sprintf("(%d keys, percent-encoded)", len(keyLines(s.SSHKeys)))
	}
	return []flow.Call{
		{Method: "POST", Path: "/nodes/" + s.Node + "/qemu", Params: formatParams(p), Note: "qmcreate task: PVE imports " + r.image + " into scsi0"},
		taskPoll(s.Node, "the qmcreate"),
	}, nil
}

func (r *vmRun) create(ctx context.Context) error {
	s := r.spec
	params := r.createParams(s.description(s.marker(r.runID, r.p.opts.Now())))
	r.createTried, r.res.Changed = true, true
	err := r.p.makeGuest(ctx, r.run, r.vm(), r.runID, fmt.Sprintf("create VM %d from %s", s.VMID, r.image), func(ctx context.Context) (string, error) {
		return r.p.api.CreateGuest(ctx, r.vm(), params)
	}, r.started)
	r.created = r.created || err == nil
	return err
}

// started notes a task of this run that makes or boots the VM.
func (r *vmRun) started(upid string) { r.created, r.tasks = true, append(r.tasks, upid) }

func (r *vmRun) undoCreate(ctx context.Context, rb flow.Rollback) flow.Outcome {
	return r.p.undoMade(ctx, r.run, madeGuest{g: r.vm(), runID: r.runID, existing: r.existing != nil, tried: r.createTried,
		made: r.created, tasks: r.tasks, keep: r.req.KeepOnFailure}, rb)
}

// resizeDone: no --disk, or scsi0 is that large already (PVE never
// shrinks a disk).
func (r *vmRun) resizeDone(ctx context.Context) (string, error) {
	if r.spec.DiskGB == 0 {
		return "no --disk: scsi0 keeps the image's size", nil
	}
	cfg, err := r.p.api.GuestConfig(ctx, r.vm())
	if err != nil {
		return "", err
	}
	if have := rootfsSize(cfg.Get("scsi0")); have >= int64(r.spec.DiskGB)<<30 {
		return fmt.Sprintf("scsi0 is %s already (--disk %d G)", humanBytes(have), r.spec.DiskGB), nil
	}
	return "", nil
}

func (r *vmRun) planResize(context.Context) ([]flow.Call, error) {
	if r.spec.DiskGB == 0 {
		return nil, nil
	}
	s := r.spec
	return []flow.Call{{Method: "PUT", Path: vmPathOf(s.Node, s.VMID, "/resize"), Params: fmt.Sprintf("disk=scsi0 size=%dG", s.DiskGB),
		Note: "grows the imported disk (the guest grows its filesystem at boot)"}, taskPoll(s.Node, "the resize")}, nil
}

func (r *vmRun) resize(ctx context.Context) error {
	s := r.spec
	size := strconv.Itoa(s.DiskGB) + "G"
	r.res.Changed = true
	err := r.run.Retry().Do(ctx, fmt.Sprintf("resize scsi0 of VM %d to %s", s.VMID, size), func(ctx context.Context) error {
		upid, err := r.p.api.ResizeDisk(ctx, r.vm(), "scsi0", size)
		if err == nil {
			_, err = r.p.wait(ctx, s.Node, upid)
		}
		return err
	}, nil)
	if err == nil {
		r.run.Note("scsi0 " + size)
	}
	return err
}

func (r *vmRun) startDone(ctx context.Context) (string, error) {
	if !r.spec.Start {
		return "not asked to start (--start)", nil
	}
	st, err := r.p.api.GuestStatus(ctx, r.vm())
	if err != nil {
		return "", err
	}
	if st.Status == "running" {
		return "already running", nil
	}
	return "", nil
}

func (r *vmRun) planStart(context.Context) ([]flow.Call, error) {
	if !r.spec.Start {
		return nil, nil
	}
	return []flow.Call{{Method: "POST", Path: vmPathOf(r.spec.Node, r.spec.VMID, "/status/start"), Note: "PVE writes the cloud-init drive"},
		taskPoll(r.spec.Node, "the qmstart")}, nil
}

func (r *vmRun) start(ctx context.Context) error {
	r.res.Changed = true
	return r.p.startAndWait(ctx, r.run, r.vm(), func(upid string) { r.tasks = append(r.tasks, upid) })
}

func (r *vmRun) planAgent(context.Context) ([]flow.Call, error) {
	if !r.spec.Start || !r.spec.Agent {
		return nil, nil
	}
	return []flow.Call{{Method: "POST", Path: vmPathOf(r.spec.Node, r.spec.VMID, "/agent/ping"), Note: "until the guest agent answers, for up to " + r.req.AgentWait.String()}}, nil
}

// noAgentReason is why a guest agent may never answer.
const noAgentReason = "the image likely has no qemu-guest-agent: stock cloud images ship without it, and PVE's cloud-init cannot install packages without a cicustom snippet (which the API cannot upload): use an image with the agent installed (e.g. virt-customize --install qemu-guest-agent), or leave out --agent"

// waitAgent waits for the guest agent, bounded; an agent that never
// answers is a warning with the likely reason (the VM runs), unless checks
// need it.
func (r *vmRun) waitAgent(ctx context.Context) error {
	switch {
	case !r.spec.Start:
		return flow.Skip("not started")
	case !r.spec.Agent:
		r.res.Agent = "not configured (no --agent)"
		return flow.Skip("no --agent: the addresses are not verified from inside")
	}
	err := pollUntil(ctx, r.req.AgentWait, func(ctx context.Context) (bool, error) {
		err := r.p.api.AgentPing(ctx, r.vm())
		if errors.Is(err, pve.ErrAgentNotRunning) || errors.Is(err, pve.ErrTransient) {
			return false, nil
		}
		return err == nil, err
	})
	if err == nil {
		r.agentUp, r.res.Agent = true, "running"
		r.run.Note("the guest agent answers")
		return nil
	}
	if !(errors.Is(err, context.DeadlineExceeded) && ctx.Err() == nil) {
		return err
	}
	r.res.Agent = "not running after " + r.req.AgentWait.String()
	why := fmt.Sprintf("the guest agent of VM %d did not answer within %s: %s", r.spec.VMID, r.req.AgentWait, noAgentReason)
	if len(r.req.Checks) > 0 {
		return fmt.Errorf("%s; --check needs it: %w", why, pve.ErrWaitTimeout)
	}
	r.run.Warn(why + "; the VM runs, its addresses are not verified")
	return nil
}

func (r *vmRun) planNetwork(context.Context) ([]flow.Call, error) {
	if !r.spec.Start || !r.spec.Agent {
		return nil, nil
	}
	var want []string
	for _, i := range sortedInts(r.spec.IPConfigs) {
		want = append(want, fmt.Sprintf("net%d %s", i, r.spec.IPConfigs[i]))
	}
	return []flow.Call{{Method: "GET", Path: vmPathOf(r.spec.Node, r.spec.VMID, "/agent/network-get-interfaces"),
		Note: "until the cards (by MAC) show " + orNothing(strings.Join(want, ", "))}}, nil
}

// network waits until the agent shows each card's cloud-init address on
// the interface with the card's MAC: a static address that does not come
// up fails, a DHCP card without a lease is a warning.
func (r *vmRun) network(ctx context.Context) error {
	if !r.agentUp {
		return flow.Skip("the guest agent is not up: addresses are not verified")
	}
	cfg, err := r.p.api.GuestConfig(ctx, r.vm())
	if err != nil {
		return err
	}
	type card struct {
		key, mac string
		want     netcfg.NIC
	}
	var cards []card
	for _, k := range sortedKeysOf(vmNets(cfg)) {
		c := card{key: k, mac: vmNICMAC(cfg.Get(k))}
		i, _ := strconv.Atoi(strings.TrimPrefix(k, "net"))
		if v := cfg.Get("ipconfig" + strconv.Itoa(i)); v != "" {
			c.want, _ = netcfg.ParseIPConfig("ipconfig", v)
		}
		cards = append(cards, c)
	}
	shown := map[string]pve.GuestInterface{}
	pending := func() (static, dhcp []card) {
		for _, c := range cards {
			got := shown[c.key].Inet
			switch {
			case strings.Contains(c.want.IP, "/") && got != c.want.IP:
				static = append(static, c)
			case c.want.IP == "dhcp" && got == "":
				dhcp = append(dhcp, c)
			}
		}
		return
	}
	err = pollUntil(ctx, r.p.opts.VerifyTimeout, func(ctx context.Context) (bool, error) {
		ifs, err := r.p.api.GuestInterfaces(ctx, r.vm())
		if errors.Is(err, pve.ErrAgentNotRunning) || errors.Is(err, pve.ErrTransient) {
			return false, nil
		}
		if err != nil {
			return false, err
		}
		for _, c := range cards {
			for _, i := range ifs {
				if strings.EqualFold(i.HWAddr, c.mac) {
					shown[c.key] = i
				}
			}
		}
		static, dhcp := pending()
		return len(static) == 0 && len(dhcp) == 0, nil
	})
	if err != nil && !(errors.Is(err, context.DeadlineExceeded) && ctx.Err() == nil) {
		return err
	}
	r.res.NICs = nil
	var got []string
	for _, c := range cards {
		i := shown[c.key]
		r.res.NICs = append(r.res.NICs, NICState{Key: c.key, Name: i.Name, Config: cfg.Get(c.key), Address: i.Inet})
		if i.Inet != "" {
			got = append(got, fmt.Sprintf("%s (%s) %s", c.key, i.Name, i.Inet))
		}
	}
	static, dhcp := pending()
	if len(static) > 0 {
		var bad []string
		for _, c := range static {
			bad = append(bad, fmt.Sprintf("%s shows %q, not %s", c.key, shown[c.key].Inet, c.want.IP))
		}
		return fmt.Errorf("VM %d's guest agent does not show its static addresses after %s: %s", r.spec.VMID, r.p.opts.VerifyTimeout, strings.Join(bad, "; "))
	}
	for _, c := range dhcp {
		r.run.Warn(fmt.Sprintf("%s asked for DHCP but the guest shows no IPv4 address after %s: is there a DHCP server on its bridge?", c.key, r.p.opts.VerifyTimeout))
	}
	r.run.Note(orNothing(strings.Join(got, ", ")))
	return nil
}

// vmNets are a VM config's netN keys.
func vmNets(cfg pve.Config) map[string]string {
	out := map[string]string{}
	for k, v := range cfg.Values {
		if _, err := strconv.Atoi(strings.TrimPrefix(k, "net")); err == nil && strings.HasPrefix(k, "net") {
			out[k] = v
		}
	}
	return out
}

// vmNICMAC is the MAC of a stored netN ("virtio=BC:24:11:…,bridge=…").
func vmNICMAC(v string) string {
	first, _, _ := strings.Cut(v, ",")
	_, mac, _ := strings.Cut(first, "=")
	return mac
}

func (r *vmRun) planChecks(context.Context) ([]flow.Call, error) {
	var calls []flow.Call
	for _, c := range r.req.Checks {
		calls = append(calls, flow.Call{Method: "POST", Path: vmPathOf(r.spec.Node, r.spec.VMID, "/agent/exec"), Params: "command=sh -c " + c,
			Note: "then GET agent/exec-status until it exits; it must exit 0"})
	}
	return calls, nil
}

// runChecks runs each --check in the guest through the agent (sh -c) and
// fails unless every one exits 0.
func (r *vmRun) runChecks(ctx context.Context) error {
	if len(r.req.Checks) == 0 {
		return flow.Skip("no --check given")
	}
	var checks []Check
	for _, cmd := range r.req.Checks {
		st, err := r.p.agentRun(ctx, r.vm(), []string{"sh", "-c", cmd})
		if err != nil {
			return fmt.Errorf("check %q: %w", cmd, err)
		}
		out := lastLines(st.Out+"\n"+st.Err, 1)
		c := Check{Name: "check " + cmd, OK: st.ExitCode == 0, Detail: out}
		if !c.OK {
			c.Detail = fmt.Sprintf("exit %d: %s", st.ExitCode, out)
		}
		checks = append(checks, c)
	}
	r.res.Checks = append(r.res.Checks, checks...)
	return failedChecks(fmt.Sprintf("VM %d failed its checks", r.spec.VMID), checks)
}

// agentRun runs argv through the guest agent and waits for it to exit,
// for at most ExecTimeout.
func (p *Provisioner) agentRun(ctx context.Context, g pve.GuestRef, argv []string) (pve.ExecStatus, error) {
	pid, err := p.api.AgentExec(ctx, g, argv, "")
	if err != nil {
		return pve.ExecStatus{}, err
	}
	var st pve.ExecStatus
	err = pollUntil(ctx, p.opts.ExecTimeout, func(ctx context.Context) (bool, error) {
		var err error
		st, err = p.api.AgentExecStatus(ctx, g, pid)
		return err == nil && st.Exited, err
	})
	if errors.Is(err, context.DeadlineExceeded) && ctx.Err() == nil {
		return st, fmt.Errorf("%s has not exited after %s: %w", argv[0], p.opts.ExecTimeout, pve.ErrWaitTimeout)
	}
	return st, err
}

func (r *vmRun) planVerify(context.Context) ([]flow.Call, error) {
	return []flow.Call{{Method: "GET", Path: vmPathOf(r.spec.Node, r.spec.VMID, "/config"), Note: "disks, firmware, cloud-init, cards, resources as asked"}}, nil
}

// verify reads PVE's config back against the spec, and the VM running if
// started.
func (r *vmRun) verify(ctx context.Context) error {
	checks, err := r.p.verifyGuest(ctx, r.vm(), r.spec.Start, r.configChecks)
	r.res.Checks = append(r.res.Checks, checks...)
	return err
}

// configChecks compares a VM's config with what the spec asks.
func (r *vmRun) configChecks(cfg pve.Config) []Check {
	s := r.spec
	cc := configCheck{cfg: cfg}
	cc.eq("name", "name", s.Name)
	for _, i := range sortedInts(s.IPConfigs) {
		k := "ipconfig" + strconv.Itoa(i)
		cc.eq(k, k, s.IPConfigs[i])
	}
	ci := s.cloudInitParams()
	for _, k := range []string{"ciuser", "sshkeys", "nameserver", "searchdomain"} {
		if ci[k] != "" {
			cc.eq(k, k, ci[k])
		}
	}
	if s.Agent {
		cc.eq("agent", "agent", "enabled=1")
	}
	if s.Template != 0 {
		return cc.checks // a clone: the rest is the template's
	}
	cc.eq("cores", "cores", strconv.Itoa(s.Cores))
	cc.eq("memory", "memory", strconv.Itoa(s.MemoryMB))
	if s.CPU != "" {
		cc.eq("cpu", "cpu", s.CPU)
	}
	cc.eq("bios", "bios", s.BIOS)
	if s.Machine != "" {
		cc.eq("machine", "machine", machineParam(s.Machine))
	}
	efi := cfg.Get("efidisk0")
	if s.BIOS == BIOSOVMF {
		cc.add("efidisk0", strings.Contains(efi, "efitype=4m") && strings.Contains(efi, "pre-enrolled-keys=0"), efi, "an EFI vars disk, efitype=4m, pre-enrolled-keys=0")
	}
	cc.add("scsi0 storage", rootfsStorage(cfg.Get("scsi0")) == r.storage.ID, rootfsStorage(cfg.Get("scsi0")), r.storage.ID)
	if s.DiskGB > 0 {
		have := rootfsSize(cfg.Get("scsi0"))
		cc.add("scsi0 size", have >= int64(s.DiskGB)<<30, humanBytes(have), fmt.Sprintf("%d GiB", s.DiskGB))
	}
	if ide2 := cfg.Get("ide2"); !r.router {
		cc.add("ide2 cloud-init", strings.Contains(ide2, "cloudinit") && strings.Contains(ide2, "media=cdrom"), ide2, "the cloud-init drive")
	}
	for _, n := range s.NICs {
		cc.add(n.Key(), netcfg.SameVMNIC(cfg.Get(n.Key()), n), cfg.Get(n.Key()), n.Value())
	}
	devs, _ := s.passthrough()
	for _, d := range devs {
		cc.eq(d.key(), d.key(), d.value)
	}
	return cc.checks
}

// configCheck collects checks of config values.
type configCheck struct {
	cfg    pve.Config
	checks []Check
}

func (c *configCheck) eq(name, key, want string) {
	have := c.cfg.Get(key)
	c.add(name, have == want, have, want)
}

func (c *configCheck) add(name string, ok bool, have, want string) {
	ch := Check{Name: name, OK: ok, Detail: have}
	if !ok {
		ch.Detail = fmt.Sprintf("%s, want %s", orDefault(have, "(unset)"), want)
	}
	c.checks = append(c.checks, ch)
}

func (r *vmRun) finalized(ctx context.Context) (string, error) {
	return r.p.finalizedGuest(ctx, r.vm())
}

func (r *vmRun) planFinalize(context.Context) ([]flow.Call, error) {
	return []flow.Call{{Method: "PUT", Path: vmPathOf(r.spec.Node, r.spec.VMID, "/config"), Params: "description=(marker: ready)"}}, nil
}

func (r *vmRun) finalize(ctx context.Context) error {
	r.res.Changed = true
	if err := r.p.markReady(ctx, r.run, r.vm(), r.spec.description); err != nil {
		return err
	}
	r.leases.assign(ctx)
	return nil
}
