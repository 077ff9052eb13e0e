package provisioner

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/migrahosting/cloudpods/netcfg"
	"github.com/migrahosting/cloudpods/provisioner/pve"
)

// Health states, also the CLI's exit codes 0, 1, 2.
const (
	Healthy  = "healthy"
	Degraded = "degraded"
	Down     = "down"
	Unknown  = "unknown"
)

// Health is one pod's health report.
type Health struct {
	VMID      int      `json:"vmid"`
	Hostname  string   `json:"hostname,omitempty"`
	IP        string   `json:"ip,omitempty"`
	Node      string   `json:"node"`
	State     string   `json:"state"`
	PVEStatus string   `json:"pve_status,omitempty"`
	Uptime    float64  `json:"uptime_s"`
	CPU       float64  `json:"cpu"`
	MemUsed   int64    `json:"mem_used"`
	MemMax    int64    `json:"mem_max"`
	DiskUsed  int64    `json:"disk_used"`
	DiskMax   int64    `json:"disk_max"`
	Lock      string   `json:"lock,omitempty"`
	Problems  []string `json:"problems,omitempty"`
	Checks    []Check  `json:"checks,omitempty"`
}

func (h *Health) degrade(format string, args ...interface{}) {
	h.Problems = append(h.Problems, fmt.Sprintf(format, args...))
	if h.State == Healthy {
		h.State = Degraded
	}
}

// usageLimit is the share of memory or disk past which a pod is degraded.
const usageLimit = 0.9

// Health checks one pod: PVE status, resource use, locks, config drift from
// its marker and, with deep, the network and services inside it.
func (p *Provisioner) Health(ctx context.Context, node string, vmid int, deep bool) (Health, error) {
	h := Health{VMID: vmid, Node: node, State: Unknown}
	cfg, err := p.api.ContainerConfig(ctx, node, vmid)
	if errors.Is(err, pve.ErrNotFound) {
		h.State = Down
		h.Problems = []string{fmt.Sprintf("CT %d does not exist on node %s", vmid, node)}
		return h, nil
	}
	if err != nil {
		h.Problems = []string{err.Error()}
		return h, err
	}
	h.Hostname, h.IP = cfg.Get("hostname"), configIP(cfg)
	st, err := p.api.ContainerStatus(ctx, node, vmid)
	if err != nil {
		h.Problems = []string{err.Error()}
		return h, err
	}
	h.PVEStatus, h.Uptime, h.CPU = st.Status, st.Uptime.Seconds(), st.CPU
	h.MemUsed, h.MemMax, h.DiskUsed, h.DiskMax, h.Lock = st.Mem, st.MaxMem, st.Disk, st.MaxDisk, st.Lock
	if st.Status != "running" {
		h.State = Down
		h.Problems = append(h.Problems, "CT is "+st.Status)
		return h, nil
	}
	h.State = Healthy
	if st.Lock != "" {
		h.degrade("CT is locked (%s)", st.Lock)
	}
	if st.MaxMem > 0 && float64(st.Mem) > usageLimit*float64(st.MaxMem) {
		h.degrade("memory use %s of %s", humanBytes(st.Mem), humanBytes(st.MaxMem))
	}
	if st.MaxDisk > 0 && float64(st.Disk) > usageLimit*float64(st.MaxDisk) {
		h.degrade("disk use %s of %s", humanBytes(st.Disk), humanBytes(st.MaxDisk))
	}
	m, ours := ParseMarker(cfg.Get("description"))
	if !ours {
		h.degrade("no cloudpods marker: drift cannot be checked")
	} else {
		for _, d := range drift(m, cfg) {
			h.degrade("config drift: %s", d)
		}
		if m.State != "ready" {
			h.degrade("provisioning did not finish (marker state %q)", m.State)
		}
	}
	if !deep {
		return h, nil
	}
	sh, done, err := p.openShell(ctx, node, vmid)
	if err != nil {
		h.degrade("console: %v", err)
		return h, nil
	}
	defer done()
	spec := Spec{Gateway: parseAddr(m.Spec.Gateway)}
	for _, d := range m.Spec.DNS {
		spec.DNS = append(spec.DNS, parseAddr(d))
	}
	checks, err := inPodChecks(ctx, sh, spec, DefaultServices)
	h.Checks = checks
	if err != nil {
		h.degrade("in-pod checks: %v", err)
	}
	for _, c := range checks {
		if !c.OK {
			h.degrade("%s failed: %s", c.Name, c.Detail)
		}
	}
	if ok := h.checkResolves(ctx, sh); !ok {
		h.degrade("DNS resolution failed")
	}
	return h, nil
}

func (h *Health) checkResolves(ctx context.Context, sh *shell) bool {
	out, code, err := sh.run(ctx, "getent hosts deb.debian.org")
	h.Checks = append(h.Checks, Check{Name: "dns resolution", OK: err == nil && code == 0, Detail: lastLine(out)})
	return err == nil && code == 0
}

// drift compares the live config with what the marker says was asked for.
func drift(m Marker, cfg pve.Config) []string {
	var out []string
	if n, err := netcfg.ParseNet0(cfg.Get("net0")); err == nil {
		if n.IP != m.Spec.Address {
			out = append(out, fmt.Sprintf("ip %s, want %s", n.IP, m.Spec.Address))
		}
		if n.GW != m.Spec.Gateway {
			out = append(out, fmt.Sprintf("gateway %s, want %s", n.GW, m.Spec.Gateway))
		}
	}
	for key, want := range map[string]int{"cores": m.Spec.Cores, "memory": m.Spec.MemoryMB, "swap": m.Spec.SwapMB} {
		if have := cfg.Get(key); want > 0 && have != strconv.Itoa(want) {
			out = append(out, fmt.Sprintf("%s %s, want %d", key, have, want))
		}
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

// List returns every CloudPod in the cluster (by our tag and marker),
// filtered by tenant and PVE status when given.
func (p *Provisioner) List(ctx context.Context, tenant, status string) ([]Pod, error) {
	guests, err := p.api.Guests(ctx)
	if err != nil {
		return nil, err
	}
	var out []Pod
	for _, g := range guests {
		if g.Type != "lxc" || g.Template || !hasTag(g.Tags, OwnerTag) {
			continue
		}
		if status != "" && g.Status != status {
			continue
		}
		cfg, err := p.api.ContainerConfig(ctx, g.Node, g.VMID)
		if errors.Is(err, pve.ErrNotFound) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("config of CT %d: %w", g.VMID, err)
		}
		m, ok := ParseMarker(cfg.Get("description"))
		if !ok || !m.Owns(g.VMID) || (tenant != "" && m.Tenant != tenant) {
			continue
		}
		out = append(out, Pod{VMID: g.VMID, Hostname: cfg.Get("hostname"), IP: configIP(cfg), Tenant: m.Tenant,
			Node: g.Node, Status: g.Status, State: m.State, Created: m.Created})
	}
	return out, nil
}

// HealthAll checks every CloudPod.
func (p *Provisioner) HealthAll(ctx context.Context, deep bool) ([]Health, error) {
	pods, err := p.List(ctx, "", "")
	if err != nil {
		return nil, err
	}
	out := make([]Health, 0, len(pods))
	for _, pod := range pods {
		h, err := p.Health(ctx, pod.Node, pod.VMID, deep)
		if err != nil && h.State == "" {
			h.State = Unknown
		}
		out = append(out, h)
	}
	return out, nil
}

func hasTag(tags, tag string) bool {
	for _, t := range splitTags(tags) {
		if t == tag {
			return true
		}
	}
	return false
}

func splitTags(tags string) []string {
	var out []string
	cur := []rune{}
	for _, r := range tags {
		if r == ';' || r == ',' || r == ' ' {
			if len(cur) > 0 {
				out = append(out, string(cur))
			}
			cur = cur[:0]
			continue
		}
		cur = append(cur, r)
	}
	if len(cur) > 0 {
		out = append(out, string(cur))
	}
	return out
}
