package provisioner

import (
	"context"
	"fmt"
	"sort"
	"strconv"
	"strings"

	"github.com/migrahosting/cloudpods/netcfg"
	"github.com/migrahosting/cloudpods/provisioner/flow"
	"github.com/migrahosting/cloudpods/provisioner/pve"
)

// configure sets resources, net0 (keeping the MAC PVE generated), DNS and
// tags, plus cmode=shell so the console gives a root shell for the push.
// Its check reads the clone's config and status and skips when the config
// is already as wanted.
func (r *createRun) configureStep() flow.Step {
	return flow.Step{Name: StepConfigure, Check: r.configured, Run: r.configure, Plan: r.planConfigure}
}

func (r *createRun) planConfigure(context.Context) ([]flow.Call, error) {
	if r.hwaddr == "" {
		r.hwaddr = "(kept from the clone)"
	}
	cfg := r.wantedConfig()
	cfg["cmode"] = "shell"
	return []flow.Call{{Method: "PUT", Path: ctPath(r.spec, "/config"), Params: formatParams(cfg), Note: "only the keys that differ"}}, nil
}

// wantedConfig is the pod's config as create sets it: resources, net0
// (with the clone's MAC and NIC options), DNS and tags.
func (r *createRun) wantedConfig() map[string]string {
	s := r.spec
	want := map[string]string{
		"cores":  strconv.Itoa(s.Cores),
		"memory": strconv.Itoa(s.MemoryMB),
		"swap":   strconv.Itoa(s.SwapMB),
		"net0":   netcfg.BuildNet0(r.netSpec()),
		"tags":   tagString(r.tags()),
	}
	if len(s.DNS) > 0 {
		ns := make([]string, len(s.DNS))
		for i, d := range s.DNS {
			ns[i] = d.String()
		}
		want["nameserver"] = strings.Join(ns, " ")
	}
	if s.SearchDomain != "" {
		want["searchdomain"] = s.SearchDomain
	}
	return want
}

// configured reads the clone's config and status: the config wanted, and
// whether it is there already.
func (r *createRun) configured(ctx context.Context) (string, error) {
	cfg, err := r.p.api.GuestConfig(ctx, r.ct())
	if err != nil {
		return "", err
	}
	if cur, perr := netcfg.ParseNet0(cfg.Get("net0")); perr == nil {
		r.hwaddr, r.cloned = cur.HWAddr, cur
	}
	want := r.wantedConfig()
	st, err := r.p.api.GuestStatus(ctx, r.ct())
	if err != nil {
		return "", err
	}
	if st.Status != "running" {
		// cmode is not hot-pluggable: set it while stopped, so the first
		// console after start is a root shell.
		want["cmode"] = "shell"
	}
	if configChanges(cfg, want, nil) == nil {
		return "config already as wanted", nil
	}
	r.current, r.want = cfg, want
	return "", nil
}

func (r *createRun) configure(ctx context.Context) error {
	r.res.Changed = true
	upd := configChanges(r.current, r.want, nil)
	keys := make([]string, 0, len(upd.Set))
	for k := range upd.Set {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	r.run.Info("setting " + strings.Join(keys, ", "))
	return r.applyConfig(ctx, fmt.Sprintf("configure CT %d", r.spec.VMID), r.current, r.want, nil, true)
}

// configChanges is the update that brings cfg to want (and removes the
// keys in del), with cfg's digest; nil when cfg is already there.
func configChanges(cfg pve.Config, want map[string]string, del []string) *pve.ConfigUpdate {
	upd := &pve.ConfigUpdate{Set: map[string]string{}, Digest: cfg.Digest}
	for k, v := range want {
		if !configEqual(k, cfg.Get(k), v) {
			upd.Set[k] = v
		}
	}
	for _, k := range del {
		if _, ok := cfg.Values[k]; ok {
			upd.Delete = append(upd.Delete, k)
		}
	}
	if len(upd.Set) == 0 && len(upd.Delete) == 0 {
		return nil
	}
	return upd
}

// applyConfig brings a CT's config to want. PUT …/config is synchronous
// but not idempotent with a digest, so an attempt whose outcome is unknown
// is settled by reading the config again: a retry computes its update, and
// digest, from what is there now. guarded sends the digest, so PVE refuses
// the update if someone changed the config since it was read.
func (r *createRun) applyConfig(ctx context.Context, what string, cfg pve.Config, want map[string]string, del []string, guarded bool) error {
	first := true
	current := func(ctx context.Context) (*pve.ConfigUpdate, error) {
		now := cfg
		if !first {
			var err error
			if now, err = r.p.api.GuestConfig(ctx, r.ct()); err != nil {
				return nil, err
			}
		}
		first = false
		upd := configChanges(now, want, del)
		if upd != nil && !guarded {
			upd.Digest = ""
		}
		return upd, nil
	}
	return r.run.Retry().Do(ctx, what, func(ctx context.Context) error {
		upd, err := current(ctx)
		if err != nil || upd == nil {
			return err
		}
		return r.p.api.UpdateGuestConfig(ctx, r.ct(), *upd)
	}, func(ctx context.Context, _ error) (bool, error) {
		upd, err := current(ctx)
		return upd == nil, err
	})
}

// configEqual compares a stored value with a wanted one, allowing for PVE's
// normalisation of net0 key order.
func configEqual(key, have, want string) bool {
	if key == "net0" {
		a, err1 := netcfg.ParseNet0(have)
		b, err2 := netcfg.ParseNet0(want)
		return err1 == nil && err2 == nil && a.String() == b.String()
	}
	return have == want
}

// ctPath is the API path of the pod plus rest, for planned calls.
func ctPath(s Spec, rest string) string {
	return fmt.Sprintf("/nodes/%s/lxc/%d%s", s.Node, s.VMID, rest)
}
