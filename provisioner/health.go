package provisioner

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/migrahosting/cloudpods/netcfg"
	"github.com/migrahosting/cloudpods/provisioner/pve"
)

// Health states; the CLI exits 0 for healthy, 1 for degraded, 2 for down,
// 3 for unknown (PVE could not be asked, or --deep could not look inside a
// pod that is otherwise healthy: the report's warnings say why).
const (
	Healthy  = "healthy"
	Degraded = "degraded"
	Down     = "down"
	Unknown  = "unknown"
)

// Health is one pod's health report.
type Health struct {
	VMID int `json:"vmid"`
	// Kind is lxc (a CloudPod, a CT) or qemu (a VM).
	Kind      pve.GuestKind `json:"-"`
	Hostname  string        `json:"hostname,omitempty"`
	IP        string        `json:"ip,omitempty"`
	Tenant    string        `json:"tenant,omitempty"`
	Node      string        `json:"node"`
	State     string        `json:"state"`
	PVEStatus string        `json:"pve_status,omitempty"`
	Uptime    float64       `json:"uptime_s"`
	// CPU is the share of the CT's cores in use, 0 to 1.
	CPU      float64 `json:"cpu"`
	CPUs     int     `json:"cpus,omitempty"`
	MemUsed  int64   `json:"mem_used"`
	MemMax   int64   `json:"mem_max"`
	DiskUsed int64   `json:"disk_used"`
	DiskMax  int64   `json:"disk_max"`
	Lock     string  `json:"lock,omitempty"`
	HA       bool    `json:"ha_managed,omitempty"`
	// Problems make the pod degraded or down; Warnings do not (deep
	// checks that could not run, for instance).
	Problems []string `json:"problems,omitempty"`
	Warnings []string `json:"warnings,omitempty"`
	Checks   []Check  `json:"checks,omitempty"`
}

func (h *Health) degrade(format string, args ...interface{}) {
	h.Problems = append(h.Problems, fmt.Sprintf(format, args...))
	if h.State == Healthy {
		h.State = Degraded
	}
}

// usageLimit is the share of memory or disk past which a pod is degraded.
const usageLimit = 0.9

// consoleProbe is how long a console may take to run a first command
// before it is taken for a login prompt.
const consoleProbe = 3 * time.Second

// dnsProbeName is resolved inside the pod by --deep: the template's apt
// source, which every pod needs for its updates.
const dnsProbeName = "deb.debian.org"

// Health checks one pod: PVE status, resource use against the CT's limits,
// locks, config drift from its marker and, with deep, the network and
// services inside it. An error means PVE could not be asked; the report
// then says unknown — as it does, without an error, for a pod whose node
// is down (PVE still lists it, but nothing can be asked of it there: the
// pod may well run, so it is not reported down). node "" finds the pod
// wherever it lives.
func (p *Provisioner) Health(ctx context.Context, node string, vmid int, deep bool) (Health, error) {
	h := Health{VMID: vmid, Node: node, State: Unknown}
	g, cfg, err := p.findGuest(ctx, node, vmid)
	h.Node = g.Node
	if errors.Is(err, pve.ErrNotFound) {
		h.State = Down
		h.Problems = []string{fmt.Sprintf("CT %d does not exist %s", vmid, whereText(g.Node))}
		return h, nil
	}
	if errors.Is(err, ErrNodeDown) {
		h.Kind = g.Kind
		h.Problems = []string{err.Error() + ": PVE cannot be asked about it until the node is back"}
		return h, nil
	}
	if err != nil {
		h.Problems = []string{fmt.Sprintf("reading %s: %v", g, err)}
		return h, fmt.Errorf("config of %s: %w", g, err)
	}
	h.Kind = g.Kind
	h.Hostname, h.IP = guestName(g, cfg), guestIP(g, cfg)
	m, ours := ParseMarker(cfg.Get("description"))
	ours = ours && m.Owns(vmid)
	if ours {
		h.Tenant = m.Tenant
	}
	st, err := p.api.GuestStatus(ctx, g)
	if errors.Is(err, pve.ErrNodeUnreachable) {
		h.Problems = []string{nodeDownError(Located{Ref: g, NodeDown: "unreachable"}).Error() + ": PVE cannot be asked about it until the node is back"}
		return h, nil
	}
	if err != nil {
		h.Problems = []string{fmt.Sprintf("reading the status of %s: %v", g, err)}
		return h, fmt.Errorf("status of %s: %w", g, err)
	}
	h.PVEStatus, h.Uptime, h.CPU, h.CPUs = st.Status, st.Uptime.Seconds(), st.CPU, st.CPUs
	h.MemUsed, h.MemMax, h.DiskUsed, h.DiskMax, h.Lock, h.HA = st.Mem, st.MaxMem, st.Disk, st.MaxDisk, st.Lock, st.HA
	switch st.Status {
	case "running":
		h.State = Healthy
	case "stopped":
		h.State = Down
		h.Problems = append(h.Problems, g.Kind.Noun()+" is stopped")
	default:
		h.Problems = append(h.Problems, fmt.Sprintf("PVE reports status %q", st.Status))
	}
	if st.Lock != "" {
		h.degrade("%s is locked (%s): %s", g.Kind.Noun(), st.Lock, lockAdvice(g, st.Lock))
	}
	if st.MaxMem > 0 && float64(st.Mem) > usageLimit*float64(st.MaxMem) {
		h.degrade("memory use %s of %s", humanBytes(st.Mem), humanBytes(st.MaxMem))
	}
	if st.MaxDisk > 0 && float64(st.Disk) > usageLimit*float64(st.MaxDisk) {
		h.degrade("disk use %s of %s", humanBytes(st.Disk), humanBytes(st.MaxDisk))
	}
	if !ours {
		h.degrade("no cloudpods marker: drift cannot be checked")
	} else {
		for _, d := range drift(g, m, cfg) {
			h.degrade("config drift: %s", d)
		}
		if m.State != "ready" {
			h.degrade("provisioning did not finish (marker state %q)", m.State)
		}
	}
	if deep && st.Status == "running" {
		check := p.deepChecks
		if g.Kind == pve.QEMU {
			check = p.agentChecks
		}
		if skipped := check(ctx, &h, g, cfg); skipped && h.State == Healthy {
			// Asked to look inside and could not: healthy is not known.
			h.State = Unknown
		}
	}
	return h, nil
}

// deepChecks looks inside a running pod through its console: default
// route, gateway ping, resolver, DNS resolution and the template's
// services. skipped says they could not run (the warning says why).
func (p *Provisioner) deepChecks(ctx context.Context, h *Health, g pve.GuestRef, cfg pve.Config) (skipped bool) {
	ctx, cancel := context.WithTimeout(ctx, p.opts.ExecTimeout)
	defer cancel()
	path := p.consolePath(ctx, g.Node)
	sh, done, err := p.openShell(ctx, g)
	if errors.Is(err, pve.ErrConsoleRefusesTokens) {
		h.Warnings = append(h.Warnings, path.skipped(err))
		return true
	}
	if err != nil {
		h.degrade("console: %v", err)
		return false
	}
	defer done()
	// A console in tty or console mode shows a login prompt, which takes
	// our commands for a user name. The config PVE returns has pending
	// changes applied, so cmode there may not be the mode in effect: ask
	// the console itself.
	pctx, pcancel := context.WithTimeout(ctx, consoleProbe)
	_, _, err = sh.run(pctx, "true")
	pcancel()
	if err != nil && ctx.Err() == nil && errors.Is(err, context.DeadlineExceeded) {
		h.Warnings = append(h.Warnings, path.skipped(fmt.Errorf("the console of CT %d gave no shell within %s (configured cmode %s); they need cmode=shell in effect, which a change takes at the next start",
			g.VMID, consoleProbe, orDefault(cfg.Get("cmode"), "tty"))))
		return true
	}
	if err != nil {
		h.degrade("console: %v", err)
		return false
	}
	checks, err := inPodChecks(ctx, sh, podNetwork(cfg), DefaultServices)
	h.Checks = checks
	if err == nil {
		out, code, rerr := sh.run(ctx, "getent hosts "+dnsProbeName)
		err = rerr
		if rerr == nil {
			h.Checks = append(h.Checks, Check{Name: "dns resolution", OK: code == 0, Detail: orDefault(lastLine(out), fmt.Sprintf("%s does not resolve", dnsProbeName))})
		}
	}
	if err != nil {
		h.degrade("in-pod checks: %v", err)
	}
	for _, c := range h.Checks {
		if !c.OK {
			h.degrade("%s failed: %s", c.Name, c.Detail)
		}
	}
	return false
}

// podNetwork is the gateway and resolvers the CT's config gives it.
func podNetwork(cfg pve.Config) Spec {
	var s Spec
	if n, err := netcfg.ParseNet0(cfg.Get("net0")); err == nil {
		s.Gateway = parseAddr(n.GW)
	}
	for _, ns := range strings.Fields(cfg.Get("nameserver")) {
		if a, err := netip.ParseAddr(ns); err == nil {
			s.DNS = append(s.DNS, a)
		}
	}
	return s
}

func orDefault(s, def string) string {
	if s == "" {
		return def
	}
	return s
}

// drift compares the live config with what the marker says was asked for,
// in a stable order.
func drift(g pve.GuestRef, m Marker, cfg pve.Config) []string {
	var out []string
	if g.Kind == pve.QEMU {
		out = vmDrift(m, cfg)
	} else if n, err := netcfg.ParseNet0(cfg.Get("net0")); err != nil {
		out = append(out, fmt.Sprintf("net0 %q unreadable: %v", cfg.Get("net0"), err))
	} else {
		if n.IP != m.Spec.Address {
			out = append(out, fmt.Sprintf("ip %s, want %s", orDefault(n.IP, "(none)"), m.Spec.Address))
		}
		if n.GW != m.Spec.Gateway {
			out = append(out, fmt.Sprintf("gateway %s, want %s", orDefault(n.GW, "(none)"), m.Spec.Gateway))
		}
	}
	if have := guestName(g, cfg); m.Spec.Hostname != "" && have != m.Spec.Hostname {
		out = append(out, fmt.Sprintf("hostname %s, want %s", have, m.Spec.Hostname))
	}
	for _, f := range []struct {
		key  string
		want int
	}{{"cores", m.Spec.Cores}, {"memory", m.Spec.MemoryMB}, {"swap", m.Spec.SwapMB}} {
		if have := cfg.Get(f.key); f.want > 0 && have != strconv.Itoa(f.want) {
			out = append(out, fmt.Sprintf("%s %s, want %d", f.key, orDefault(have, "(unset)"), f.want))
		}
	}
	if !hasTag(cfg.Get("tags"), OwnerTag) {
		out = append(out, fmt.Sprintf("the %s tag is missing", OwnerTag))
	}
	return out
}

// Pod is one row of list.
type Pod struct {
	VMID     int       `json:"vmid"`
	Hostname string    `json:"hostname"`
	IP       string    `json:"ip,omitempty"`
	Tenant   string    `json:"tenant,omitempty"`
	Node     string    `json:"node"`
	Status   string    `json:"status"`
	State    string    `json:"state,omitempty"`
	Created  time.Time `json:"created"`
}

// readParallel bounds the config reads list and health --all run at once.
const readParallel = 8

// List returns every CloudPod in the cluster, sorted by VMID, filtered by
// tenant and PVE status when given. A CloudPod is a container whose
// description carries our marker for its own VMID; every container's
// config is read, so a pod whose tag was edited away is still found.
func (p *Provisioner) List(ctx context.Context, tenant, status string) ([]Pod, error) {
	return p.listGuests(ctx, pve.LXC, tenant, status)
}

// ListVMs is List for the VMs cloudpods made (vm create, vm clone, the
// router VM); templates are left out.
func (p *Provisioner) ListVMs(ctx context.Context, tenant, status string) ([]Pod, error) {
	return p.listGuests(ctx, pve.QEMU, tenant, status)
}

func (p *Provisioner) listGuests(ctx context.Context, kind pve.GuestKind, tenant, status string) ([]Pod, error) {
	guests, err := p.api.Guests(ctx)
	if err != nil {
		return nil, fmt.Errorf("list guests: %w", err)
	}
	down, err := p.downNodes(ctx)
	if err != nil {
		return nil, err
	}
	var candidates []pve.Guest
	for _, g := range guests {
		if down[g.Node] != "" {
			g.Status = Unknown // PVE's last word on it is stale
		}
		if g.Type == kind && !g.Template && (status == "" || g.Status == status) {
			candidates = append(candidates, g)
		}
	}
	pods := make([]*Pod, len(candidates))
	err = forEach(ctx, len(candidates), readParallel, func(ctx context.Context, i int) error {
		g := candidates[i]
		if down[g.Node] != "" {
			// Its config cannot be read: a pod is known by its tags, which
			// PVE lists from the cluster's copy of the config (its tenant
			// lower-cased, as tags are).
			if hasTag(g.Tags, OwnerTag) && (tenant == "" || hasTag(g.Tags, "tenant-"+strings.ToLower(tenant))) {
				pods[i] = &Pod{VMID: g.VMID, Hostname: g.Name, Tenant: tenantTag(g.Tags), Node: g.Node, Status: Unknown}
			}
			return nil
		}
		cfg, err := p.api.GuestConfig(ctx, g.Ref())
		if errors.Is(err, pve.ErrNotFound) {
			return nil // removed since the listing
		}
		if err != nil {
			return fmt.Errorf("config of %s: %w", g.Ref(), err)
		}
		m, ok := ParseMarker(cfg.Get("description"))
		if !ok || !m.Owns(g.VMID) || (tenant != "" && m.Tenant != tenant) {
			return nil
		}
		pods[i] = &Pod{VMID: g.VMID, Hostname: guestName(g.Ref(), cfg), IP: guestIP(g.Ref(), cfg), Tenant: m.Tenant,
			Node: g.Node, Status: g.Status, State: m.State, Created: m.Created}
		return nil
	})
	if err != nil {
		return nil, err
	}
	out := []Pod{}
	for _, pod := range pods {
		if pod != nil {
			out = append(out, *pod)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].VMID < out[j].VMID })
	return out, nil
}

// HealthAll checks every CloudPod, in VMID order. A pod PVE could not be
// asked about is reported unknown, not dropped.
func (p *Provisioner) HealthAll(ctx context.Context, deep bool) ([]Health, error) {
	pods, err := p.List(ctx, "", "")
	if err != nil {
		return nil, err
	}
	out := make([]Health, len(pods))
	parallel := readParallel
	if deep {
		parallel = 2 // each deep check holds a console session
	}
	err = forEach(ctx, len(pods), parallel, func(ctx context.Context, i int) error {
		var h Health
		var err error
		if pods[i].Status == Unknown {
			h, err = p.Health(ctx, "", pods[i].VMID, deep) // says why: its node is down
		} else {
			h, err = p.Health(ctx, pods[i].Node, pods[i].VMID, deep)
		}
		if err != nil {
			h.State = Unknown
		}
		if h.Hostname == "" {
			h.Hostname = pods[i].Hostname
		}
		out[i] = h
		return nil
	})
	return out, err
}

// forEach runs fn for 0..n-1 with at most parallel at once; the first
// error cancels the rest and is returned.
func forEach(ctx context.Context, n, parallel int, fn func(ctx context.Context, i int) error) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	sem := make(chan struct{}, parallel)
	var wg sync.WaitGroup
	var once sync.Once
	var first error
	for i := 0; i < n; i++ {
		select {
		case sem <- struct{}{}:
		case <-ctx.Done():
		}
		if ctx.Err() != nil {
			break
		}
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			defer func() { <-sem }()
			if err := fn(ctx, i); err != nil {
				once.Do(func() { first = err; cancel() })
			}
		}(i)
	}
	wg.Wait()
	if first == nil && ctx.Err() != nil {
		return ctx.Err()
	}
	return first
}

// tenantTag is the tenant a pod's tags name ("" for none).
func tenantTag(tags string) string {
	for _, t := range splitTags(tags) {
		if rest, ok := strings.CutPrefix(t, "tenant-"); ok {
			return rest
		}
	}
	return ""
}

func hasTag(tags, tag string) bool {
	for _, t := range splitTags(tags) {
		if t == tag {
			return true
		}
	}
	return false
}

// splitTags reads PVE's tag list, which accepts ';', ',' and spaces.
func splitTags(tags string) []string {
	return strings.FieldsFunc(tags, func(r rune) bool { return r == ';' || r == ',' || r == ' ' })
}
