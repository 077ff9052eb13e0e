package provisioner

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/migrahosting/cloudpods/netcfg"
	"github.com/migrahosting/cloudpods/provisioner/pve"
)

// Health of a VM cloudpods made: what health reads for every guest
// (status, use, locks, marker), its cloud-init address against the
// marker, and, deep, what its guest agent shows.

// vmDrift compares a VM's cloud-init address (ipconfig0) with its marker.
func vmDrift(m Marker, cfg pve.Config) []string {
	var out []string
	n, _ := netcfg.ParseIPConfig("ipconfig0", cfg.Get("ipconfig0"))
	if m.Spec.Address != "" && n.IP != m.Spec.Address {
		out = append(out, fmt.Sprintf("ipconfig0 ip %s, want %s", orDefault(n.IP, "(none)"), m.Spec.Address))
	}
	if m.Spec.Gateway != "" && n.GW != m.Spec.Gateway {
		out = append(out, fmt.Sprintf("ipconfig0 gw %s, want %s", orDefault(n.GW, "(none)"), m.Spec.Gateway))
	}
	return out
}

// agentChecks is health --deep for a VM: the guest agent answers and
// shows ipconfig0's static address. skipped says they could not run (no
// agent configured, or none answering: stock cloud images have none).
func (p *Provisioner) agentChecks(ctx context.Context, h *Health, g pve.GuestRef, cfg pve.Config) (skipped bool) {
	if !agentConfigured(cfg.Get("agent")) {
		h.Warnings = append(h.Warnings, fmt.Sprintf("%s has no guest agent configured: --deep looks inside a VM through its agent", g))
		return true
	}
	err := p.api.AgentPing(ctx, g)
	if errors.Is(err, pve.ErrAgentNotRunning) {
		h.Warnings = append(h.Warnings, fmt.Sprintf("the guest agent of %s does not answer: %s", g, noAgentReason))
		return true
	}
	if err != nil {
		h.degrade("guest agent: %v", err)
		return false
	}
	h.Checks = append(h.Checks, Check{Name: "guest agent", OK: true, Detail: "answers"})
	want := guestIP(g, cfg)
	if want == "" {
		return false
	}
	ifs, err := p.api.GuestInterfaces(ctx, g)
	if err != nil {
		h.degrade("guest agent interfaces: %v", err)
		return false
	}
	var seen []string
	for _, i := range ifs {
		if a, _, _ := strings.Cut(i.Inet, "/"); a != "" {
			seen = append(seen, i.Name+" "+i.Inet)
			if a == want {
				h.Checks = append(h.Checks, Check{Name: "address", OK: true, Detail: i.Name + " " + i.Inet})
				return false
			}
		}
	}
	h.Checks = append(h.Checks, Check{Name: "address", Detail: fmt.Sprintf("%s not shown (%s)", want, orDefault(strings.Join(seen, ", "), "no IPv4 address"))})
	h.degrade("address failed: the guest agent does not show %s", want)
	return false
}
