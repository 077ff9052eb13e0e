package provisioner

import (
	"context"
	"fmt"
	"sort"
	"strconv"
	"strings"

	"github.com/migrahosting/cloudpods/netcfg"
)

// PlannedCall is one API call a create would make.
type PlannedCall struct {
	Method string `json:"method"`
	Path   string `json:"path"`
	Params string `json:"params,omitempty"`
	Note   string `json:"note,omitempty"`
}

// Plan runs create's read-only checks (validate, preflight) for real and
// returns the mutating calls create would then make. It changes nothing.
func (p *Provisioner) Plan(ctx context.Context, req CreateRequest) ([]PlannedCall, error) {
	r := &createRun{p: p, req: req, spec: req.Spec, runID: "dry-run", rep: req.Reporter, start: p.opts.Now(), skipped: map[string]bool{}}
	if r.rep == nil {
		r.rep = nopReporter{}
	}
	for _, step := range []struct {
		name string
		fn   func(context.Context) error
	}{{StepValidate, r.validate}, {StepPreflight, r.preflight}} {
		r.event(step.name, PhaseStart, "")
		if err := step.fn(ctx); err != nil {
			r.event(step.name, PhaseFail, err.Error())
			return nil, &StepError{Step: step.name, VMID: r.spec.VMID, Err: err}
		}
		r.event(step.name, PhaseDone, "")
	}
	s := r.spec
	ct := fmt.Sprintf("/nodes/%s/lxc/%d", s.Node, s.VMID)
	r.hwaddr = "(kept from the clone)"
	var plan []PlannedCall
	add := func(method, path string, params map[string]string, note string) {
		plan = append(plan, PlannedCall{Method: method, Path: path, Params: formatParams(params), Note: note})
	}
	if r.existing == nil {
		clone := map[string]string{"newid": strconv.Itoa(s.VMID), "hostname": s.Hostname, "description": "(ownership marker)"}
		if !s.Linked {
			clone["full"], clone["storage"] = "1", s.Storage
		}
		add("POST", fmt.Sprintf("/nodes/%s/lxc/%d/clone", s.Node, s.Template), clone, "retried on 'CT is locked'")
		add("GET", fmt.Sprintf("/nodes/%s/tasks/{upid}/status", s.Node), nil, "poll until the clone task stops")
	} else {
		add("GET", ct+"/config", nil, "CT exists with this spec: converge")
	}
	cfg := r.wantedConfig()
	cfg["cmode"] = "shell"
	add("PUT", ct+"/config", cfg, "only the keys that differ")
	add("POST", ct+"/status/start", nil, "")
	add("GET", fmt.Sprintf("/nodes/%s/tasks/{upid}/status", s.Node), nil, "poll until the start task stops")
	add("POST", ct+"/termproxy", nil, "console ticket")
	add("GET", ct+"/vncwebsocket", map[string]string{"port": "{port}", "vncticket": "{ticket}"}, "write "+netcfg.NetplanPath+" (0600, base64), netplan generate, networkctl reload, networkctl reconfigure eth0, read eth0 back")
	add("GET", ct+"/interfaces", nil, "until eth0 shows "+s.Address().String())
	add("POST", ct+"/termproxy", nil, "in-pod checks: route, gateway ping, resolver, services")
	add("PUT", ct+"/config", map[string]string{"description": "(marker: ready)", "delete": "cmode"}, "")
	return plan, nil
}

func formatParams(m map[string]string) string {
	if len(m) == 0 {
		return ""
	}
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	parts := make([]string, len(keys))
	for i, k := range keys {
		parts[i] = k + "=" + m[k]
	}
	return strings.Join(parts, " ")
}
