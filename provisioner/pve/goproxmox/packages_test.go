package goproxmox_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/migrahosting/cloudpods/fixtures/pvesim"
	"github.com/migrahosting/cloudpods/provisioner/internal/simtest"
	"github.com/migrahosting/cloudpods/provisioner/pve"
	"github.com/migrahosting/cloudpods/provisioner/pve/goproxmox"
)

// The adapter reads apt/versions (pve-manager PVE/API2/APT.pm) and judges
// the console by the installed versions, on 9.1 and 8.4, before and after
// the April 2026 updates.
func TestConsoleTokenSupport(t *testing.T) {
	for _, tc := range []struct {
		version, packages string
		want              pve.ConsoleTokens
		reason            string
	}{
		{"9.1", pvesim.PackagesUpdated, pve.ConsoleTokensAccepted, "pve-container 6.1.3 and libpve-access-control 9.0.7"},
		{"9.1", pvesim.PackagesPreApril2026, pve.ConsoleTokensRefused, "pve-container 6.1.2 starts the console without --vncticket-endpoint"},
		{"8.4", pvesim.PackagesUpdated, pve.ConsoleTokensAccepted, "pve-container 5.3.4"},
		{"8.4", pvesim.PackagesPreApril2026, pve.ConsoleTokensRefused, "offers 5.3.4: apt full-upgrade installs it"},
	} {
		env := simtest.Start(t, func(c *pvesim.Config) { c.Version, c.Packages = tc.version, tc.packages })
		got := env.API.ConsoleTokenSupport(context.Background(), "pve")
		if got.Tokens != tc.want || !strings.Contains(got.Reason, tc.reason) {
			t.Errorf("%s %s: %v %q", tc.version, tc.packages, got.Tokens, got.Reason)
		}
	}

	env := simtest.Start(t, func(c *pvesim.Config) {
		c.Tokens = append(c.Tokens, pvesim.Token{ID: "audit@pve!ro", Secret: "s", Privileges: []string{"VM.Audit", "VM.Console"}})
	})
	api, err := goproxmox.New(goproxmox.Options{URL: env.Sim.URL(), TokenID: "audit@pve!ro", TokenSecret: "s",
		HTTP: goproxmox.HTTPOptions{TLS: goproxmox.TLSOptions{Fingerprint: env.Sim.Fingerprint()}, Timeout: 10 * time.Second}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := api.PackageVersions(context.Background(), "pve"); !errors.Is(err, pve.ErrForbidden) {
		t.Errorf("PackageVersions without Sys.Audit: %v", err)
	}
	got := api.ConsoleTokenSupport(context.Background(), "pve")
	if got.Tokens != pve.ConsoleTokensUnknown || !strings.Contains(got.Reason, "needs Sys.Audit on /nodes/pve") {
		t.Errorf("without Sys.Audit: %v %q", got.Tokens, got.Reason)
	}
}

// A stale console ticket: vncwebsocket answers 401 "permission denied -
// invalid PVEVNC ticket" (pve-common src/PVE/Ticket.pm); the adapter
// reports a console ticket problem, worth a new attach, never a rejected
// token.
func TestStaleConsoleTicket(t *testing.T) {
	env := simtest.Start(t, func(c *pvesim.Config) {
		c.Faults = []pvesim.Fault{{Method: "POST", Path: "/nodes/pve/lxc/9000/termproxy", Nth: 1, Kind: pvesim.FaultStaleTicket}}
	})
	term, err := env.API.OpenTerminal(context.Background(), pve.CT("pve", 9000))
	if err == nil {
		term.Close()
		t.Fatal("a stale ticket opened the console")
	}
	var api *pve.APIError
	if !errors.As(err, &api) || api.Status != 401 || api.Message != "permission denied - invalid PVEVNC ticket" {
		t.Errorf("error %v: want the websocket's 401", err)
	}
	if !errors.Is(err, pve.ErrConsoleTicket) || !errors.Is(err, pve.ErrTransient) || errors.Is(err, pve.ErrUnauthorized) {
		t.Errorf("%v: console ticket %v, transient %v, unauthorized %v", err,
			errors.Is(err, pve.ErrConsoleTicket), errors.Is(err, pve.ErrTransient), errors.Is(err, pve.ErrUnauthorized))
	}
	// The next attach gets a fresh ticket.
	term, err = env.API.OpenTerminal(context.Background(), pve.CT("pve", 9000))
	if err != nil {
		t.Fatalf("second attach: %v", err)
	}
	term.Close()
}

// On a node whose packages refuse tokens, the handshake's closed socket
// is the token refusal the provisioner falls back on, before and after
// ConsoleTokenSupport was asked.
func TestConsoleRefusesTokensAtHandshake(t *testing.T) {
	env := simtest.Start(t, func(c *pvesim.Config) { c.Version, c.Packages = "9.1", pvesim.PackagesPreApril2026 })
	for _, ask := range []bool{false, true} {
		if ask {
			env.API.ConsoleTokenSupport(context.Background(), "pve")
		}
		_, err := env.API.OpenTerminal(context.Background(), pve.CT("pve", 9000))
		if !errors.Is(err, pve.ErrConsoleRefusesTokens) || errors.Is(err, pve.ErrUnauthorized) || errors.Is(err, pve.ErrConsoleTicket) {
			t.Errorf("asked=%v: %v", ask, err)
		}
	}
}
