package provisioner_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/migrahosting/cloudpods/fixtures/pvesim"
	"github.com/migrahosting/cloudpods/provisioner"
	"github.com/migrahosting/cloudpods/provisioner/internal/simtest"
	"github.com/migrahosting/cloudpods/provisioner/pve/goproxmox"
)

// A token without Sys.Audit on /nodes/pve may not read the package
// versions (pve-manager PVE/API2/APT.pm versions): health --deep tries the
// token, and where this PVE's console refuses it (9.1 before the April
// 2026 updates), it says the path was the token, untested, and why.
func TestHealthDeepWithATokenThatMayNotReadPackages(t *testing.T) {
	env := simtest.Start(t, func(c *pvesim.Config) {
		c.Version, c.Packages = "9.1", pvesim.PackagesPreApril2026
		c.Tokens = append(c.Tokens, pvesim.Token{ID: "monitor@pve!health", Secret: "m", Privileges: []string{"VM.Audit", "VM.Console"}})
	})
	login, err := goproxmox.New(goproxmox.Options{URL: env.Sim.URL(), TokenID: simtest.TokenID, TokenSecret: simtest.TokenSecret,
		Console: &goproxmox.ConsoleLogin{User: "root@pam", Password: "simroot"},
		HTTP:    goproxmox.HTTPOptions{TLS: goproxmox.TLSOptions{Fingerprint: env.Sim.Fingerprint()}, Timeout: 10 * time.Second}})
	must(t, err)
	res, err := simtest.Provisioner(login, provisioner.Options{}).Create(context.Background(), provisioner.CreateRequest{Spec: seedSpec(9101, "migra-client-01", 91)})
	must(t, err)
	if res.Console == nil || res.Console.Path != provisioner.ConsolePassword || res.Console.User != "root@pam" {
		t.Errorf("create's console path = %+v", res.Console)
	}
	monitor, err := goproxmox.New(goproxmox.Options{URL: env.Sim.URL(), TokenID: "monitor@pve!health", TokenSecret: "m",
		HTTP: goproxmox.HTTPOptions{TLS: goproxmox.TLSOptions{Fingerprint: env.Sim.Fingerprint()}, Timeout: 10 * time.Second}})
	must(t, err)
	h, err := simtest.Provisioner(monitor, provisioner.Options{}).Health(context.Background(), "pve", 9101, true)
	must(t, err)
	const want = "deep checks skipped: console path: API token, untested — the token may not read node pve's package versions (it needs Sys.Audit on /nodes/pve), so whether the console accepts API tokens is unknown; the console refused it; pass --console-user and --console-password-file to log in with a password instead"
	if h.State != provisioner.Unknown || len(h.Warnings) != 1 || h.Warnings[0] != want {
		t.Errorf("health %s, warnings %q\nwant %q", h.State, h.Warnings, want)
	}
	if strings.Contains(strings.Join(h.Problems, " "), "token") {
		t.Errorf("problems blame the token: %q", h.Problems)
	}
}

// A console that gives no shell (cmode tty in effect) skips the in-pod
// checks too, and the note names the console path that was taken.
func TestHealthDeepNamesItsConsolePathWhenTheConsoleGivesNoShell(t *testing.T) {
	env := simtest.Start(t, nil)
	prov := simtest.Provisioner(env.API, provisioner.Options{})
	_, err := prov.Create(context.Background(), provisioner.CreateRequest{Spec: seedSpec(9101, "migra-client-01", 91)})
	must(t, err)
	must(t, env.Sim.SetConfig(9101, "cmode", "tty"))
	h, err := prov.Health(context.Background(), "pve", 9101, true)
	must(t, err)
	const want = "deep checks skipped: the console of CT 9101 gave no shell within 3s (configured cmode tty); they need cmode=shell in effect, which a change takes at the next start (console path: API token, accepted by this PVE — pve-container 6.1.3 and libpve-access-control 9.0.7 check console tickets through /access/vncticket, which accepts API tokens)"
	if len(h.Warnings) != 1 || h.Warnings[0] != want {
		t.Errorf("warnings %q\nwant %q", h.Warnings, want)
	}
}
