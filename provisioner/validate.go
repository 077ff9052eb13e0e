package provisioner

import (
	"context"
	"strconv"
	"strings"

	"github.com/migrahosting/cloudpods/netcfg"
	"github.com/migrahosting/cloudpods/provisioner/flow"
)

func (r *createRun) validateStep() flow.Step {
	return flow.Step{Name: StepValidate, ReadOnly: true, Run: r.validate}
}

// validate checks the request alone, before PVE is contacted.
func (r *createRun) validate(context.Context) error {
	fields := r.spec.FieldProblems(r.p.opts.Addresses != nil)
	var probs []string
	for _, f := range []string{"vmid", "hostname", "ip", "cores", "memory", "swap", "tags", "tenant"} {
		if msg, ok := fields[f]; ok {
			probs = append(probs, msg)
		}
	}
	if len(probs) == 0 && r.spec.IP.IsValid() {
		if err := r.netSpec().Validate(); err != nil {
			probs = append(probs, err.Error())
		}
	}
	if len(probs) > 0 {
		return problemf(ErrInvalidSpec, "%s", strings.ReplaceAll(strings.Join(probs, "; "), "\n", "; "))
	}
	return nil
}

// netSpec is the pod's network as net0 and netplan render it.
func (r *createRun) netSpec() netcfg.Spec {
	s := r.spec
	ns := netcfg.Spec{Interface: "eth0", Bridge: s.Bridge, Address: s.Address(), Gateway: s.Gateway,
		Nameservers: s.DNS, HWAddr: r.hwaddr, Firewall: r.cloned.Firewall, MTU: r.cloned.MTU, VLAN: r.cloned.Tag}
	if s.SearchDomain != "" {
		ns.SearchDomains = strings.Fields(strings.ReplaceAll(s.SearchDomain, ",", " "))
	}
	return ns
}

func (r *createRun) tags() []string {
	t := []string{OwnerTag}
	if r.spec.Tenant != "" {
		t = append(t, "tenant-"+strings.ToLower(r.spec.Tenant))
	}
	return append(t, r.spec.Tags...)
}

func tagString(tags []string) string {
	out, err := netcfg.NormalizeTags(strings.Join(tags, ";"))
	if err != nil {
		return strings.Join(tags, ";")
	}
	return out
}

func describeWant(s Spec) string {
	ip, vmid := "the next free address", "the next free VMID"
	if s.IP.IsValid() {
		ip = s.IP.String()
	}
	if s.VMID != 0 {
		vmid = "VMID " + strconv.Itoa(s.VMID)
	}
	return ip + " and " + vmid + " for " + s.Hostname
}
