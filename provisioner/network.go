package provisioner

import (
	"context"
	"errors"
	"fmt"

	"github.com/migrahosting/cloudpods/netcfg"
	"github.com/migrahosting/cloudpods/provisioner/flow"
	"github.com/migrahosting/cloudpods/provisioner/pve"
)

// network pushes the netplan file rendered from the same spec as net0, so
// the template's leftover cloud-init netplan cannot win over PVE's
// eth0.network. Whether the file is already in place is only seen inside
// the console, so the step tells it from its run.
func (r *createRun) networkStep() flow.Step {
	return flow.Step{Name: StepNetwork, Run: r.network, Plan: r.planNetwork}
}

func (r *createRun) planNetwork(context.Context) ([]flow.Call, error) {
	return []flow.Call{
		{Method: "POST", Path: ctPath(r.spec, "/termproxy"), Note: "console ticket"},
		{Method: "GET", Path: ctPath(r.spec, "/vncwebsocket"), Params: formatParams(map[string]string{"port": "{port}", "vncticket": "{ticket}"}),
			Note: "write " + netcfg.NetplanPath + " (0600, base64), netplan generate, networkctl reload, networkctl reconfigure eth0, read eth0 back"},
	}, nil
}

func (r *createRun) network(ctx context.Context) error {
	content, err := netcfg.RenderNetplan(r.netSpec())
	if err != nil {
		return err
	}
	inPlace := false
	_, err = r.inConsole(ctx, StepNetwork, func(ctx context.Context, sh *shell) error {
		if have, err := sh.fileSHA256(ctx, netcfg.NetplanPath); err != nil {
			return err
		} else if have == sha256Hex(content) {
			if inPlace, err = netplanInEffect(ctx, sh, r.spec); inPlace || err != nil {
				return err
			}
		}
		// Replacing the template's cloud-init leftover (rather than adding
		// a file beside it) is what keeps the template's address from
		// winning.
		if err := sh.writeFile(ctx, netcfg.NetplanPath, content, fmt.Sprintf("%o", netcfg.NetplanMode)); err != nil {
			return err
		}
		return applyNetplan(ctx, sh, r.spec, r.p.opts.VerifyTimeout)
	})
	switch {
	case err != nil:
		return err
	case inPlace:
		return flow.Skip(netcfg.NetplanPath + " already as wanted")
	}
	r.res.Changed = true
	return nil
}

// inConsole attaches to the pod's console and runs fn there, as one
// operation: a console that fails to attach, or is lost mid-way, is
// attached again and fn runs again from the start (everything create runs
// in the pod is safe to repeat). It returns skipped=true, with a warning,
// when this PVE's console refuses tokens and no console login is
// configured: net0 still sets the address.
func (r *createRun) inConsole(ctx context.Context, step string, fn func(ctx context.Context, sh *shell) error) (skipped bool, err error) {
	err = r.consoleRetry().Do(ctx, fmt.Sprintf("%s in the console of CT %d", step, r.spec.VMID), func(ctx context.Context) error {
		sh, done, err := r.p.attachShell(ctx, r.ct())
		if err != nil {
			return err
		}
		defer done()
		return fn(ctx, sh)
	}, nil)
	if errors.Is(err, pve.ErrConsoleRefusesTokens) {
		r.consoleRefused = true
		r.run.Warn(fmt.Sprintf("%v: netplan was not pushed and in-container checks were skipped; relying on net0 (pass --console-user and --console-password-file to use a console login instead)", err))
		return true, nil
	}
	return false, err
}
