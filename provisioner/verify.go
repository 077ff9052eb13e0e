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

// verify checks the pod from outside (PVE's view of eth0) and from inside
// (route, gateway, resolver, services). It changes nothing, but it needs
// the running pod a dry run never made, so a dry run plans it.
func (r *createRun) verifyStep() flow.Step {
	return flow.Step{Name: StepVerify, Run: r.verify, Plan: r.planVerify}
}

func (r *createRun) planVerify(context.Context) ([]flow.Call, error) {
	return []flow.Call{
		{Method: "GET", Path: ctPath(r.spec, "/interfaces"), Note: "until eth0 shows " + r.spec.Address().String()},
		{Method: "POST", Path: ctPath(r.spec, "/termproxy"), Note: "in-pod checks: route, gateway ping, resolver, services"},
	}, nil
}

func (r *createRun) verify(ctx context.Context) error {
	s := r.spec
	want := s.Address().String()
	var last string
	err := pollUntil(ctx, r.p.opts.VerifyTimeout, func(ctx context.Context) (bool, error) {
		ifs, err := r.p.api.GuestInterfaces(ctx, r.ct())
		if errors.Is(err, pve.ErrTransient) {
			return false, nil
		}
		if err != nil {
			return false, err
		}
		last = "no eth0"
		for _, i := range ifs {
			if i.Name == "eth0" {
				last = i.Inet
			}
		}
		return last == want, nil
	})
	switch {
	case errors.Is(err, context.DeadlineExceeded) && ctx.Err() == nil:
		if r.consoleRefused && last == s.TemplateIP.String()+"/"+strconv.Itoa(s.Subnet.Bits()) {
			return fmt.Errorf("eth0 of CT %d came up with the template's address %s, not %s: the template's %s overrides net0 and this PVE's console refuses API tokens, so it could not be replaced; pass --console-user and --console-password-file, or remove that file from the template", s.VMID, last, want, netcfg.NetplanPath)
		}
		return fmt.Errorf("eth0 of CT %d shows %q, not %s, after %s", s.VMID, last, want, r.p.opts.VerifyTimeout)
	case err != nil:
		return err
	}
	r.res.Checks = append(r.res.Checks, Check{Name: "eth0 address", OK: true, Detail: want})

	var checks []Check
	skipped, err := r.inConsole(ctx, StepVerify, func(ctx context.Context, sh *shell) error {
		var err error
		checks, err = inPodChecks(ctx, sh, s, r.req.Services)
		return err
	})
	if err != nil || skipped {
		return err
	}
	r.res.Checks = append(r.res.Checks, checks...)
	var failed []string
	for _, c := range checks {
		if !c.OK {
			if strings.HasPrefix(c.Name, "service ") {
				r.run.Warn(c.Name + " is not active: " + c.Detail)
				continue
			}
			failed = append(failed, c.Name+" ("+c.Detail+")")
		}
	}
	if len(failed) > 0 {
		return fmt.Errorf("network inside CT %d is not working: %s", s.VMID, strings.Join(failed, "; "))
	}
	return nil
}

// inPodChecks runs the in-container checks shared by create and health.
func inPodChecks(ctx context.Context, sh *shell, s Spec, services []string) ([]Check, error) {
	var checks []Check
	out, code, err := sh.run(ctx, "ip -4 route show default")
	if err != nil {
		return checks, err
	}
	checks = append(checks, Check{Name: "default route", OK: code == 0 && strings.Contains(out, "via "+s.Gateway.String()), Detail: strings.TrimSpace(out)})
	out, code, err = sh.run(ctx, "ping -c 1 -W 2 "+s.Gateway.String())
	if err != nil {
		return checks, err
	}
	checks = append(checks, Check{Name: "gateway reachable", OK: code == 0, Detail: lastLine(out)})
	out, code, err = sh.run(ctx, "cat /etc/resolv.conf")
	if err != nil {
		return checks, err
	}
	resolverOK := code == 0
	for _, d := range s.DNS {
		resolverOK = resolverOK && strings.Contains(out, "nameserver "+d.String())
	}
	checks = append(checks, Check{Name: "resolver", OK: resolverOK, Detail: strings.Join(grepLines(out, "nameserver"), ", ")})
	for _, svc := range services {
		if !safeUnit.MatchString(svc) {
			continue
		}
		c, err := serviceCheck(ctx, sh, svc)
		if err != nil {
			return checks, err
		}
		checks = append(checks, c)
	}
	return checks, nil
}
