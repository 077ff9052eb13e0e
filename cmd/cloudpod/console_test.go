package main

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/migrahosting/cloudpods/fixtures/pvesim"
)

// create -o json carries the console path in its result, and says it in
// a preflight event; where the package versions cannot be read, the path
// is the token, untested, with the reason.
func TestCreateSaysItsConsolePathAsJSON(t *testing.T) {
	c := startCLI(t)
	must(t, c.sim.AddFault(pvesim.Fault{Method: "GET", Path: "/nodes/pve/apt/versions", Kind: pvesim.Fault500, Message: "apt cache unreadable"}))
	code, stdout, stderr := c.run(t, "", "create", "9101", "migra-client-01", "91", "-o", "json")
	if code != exitOK {
		t.Fatalf("exit %d\n%s%s", code, stdout, stderr)
	}
	var said string
	var result struct {
		Type    string `json:"type"`
		Console struct{ Path, Reason string }
	}
	for _, line := range strings.Split(strings.TrimSpace(stdout), "\n") {
		var ev struct{ Type, Step, Phase, Message string }
		must(t, json.Unmarshal([]byte(line), &ev))
		if ev.Type == "event" && ev.Step == "preflight" && ev.Phase == "info" {
			said = ev.Message
		}
		if ev.Type == "result" {
			must(t, json.Unmarshal([]byte(line), &result))
		}
	}
	const reason = "read the package versions of node pve: GET /nodes/pve/apt/versions: 500 apt cache unreadable; whether the console accepts API tokens is unknown"
	if said != "console path: API token, untested — "+reason+" — trying it; should the console refuse it, netplan is not pushed and the pod relies on net0" {
		t.Errorf("preflight said %q", said)
	}
	if result.Console.Path != "token-unknown" || result.Console.Reason != reason {
		t.Errorf("result's console = %+v", result.Console)
	}
}

// A console ticket that expired before it was used (pvesim's staleticket:
// the websocket answers 401 "permission denied - invalid PVEVNC ticket",
// pve-common src/PVE/Ticket.pm) is a console ticket problem: create says
// so and attaches again with a fresh ticket, as health --deep does;
// nothing blames the token, nothing exits 5. (A ticket refused at every
// attach: TestConsoleTicketRefusedOnTheFake.)
func TestStaleConsoleTicketThroughTheCLI(t *testing.T) {
	c := startCLI(t)
	for _, step := range []struct {
		args []string
		said string
	}{
		{[]string{"create", "9101", "migra-client-01", "91"}, "network    info: console of CT 9101: the console ticket expired or was refused (websocket: 401 permission denied - invalid PVEVNC ticket); attaching again with a fresh one in "},
		{[]string{"health", "9101", "--deep"}, "healthy: up "},
	} {
		must(t, c.sim.AddFault(pvesim.Fault{Method: "POST", Path: "/nodes/pve/lxc/9101/termproxy", Nth: 1, Kind: pvesim.FaultStaleTicket}))
		code, stdout, stderr := c.run(t, "", step.args...)
		if code != exitOK || !strings.Contains(stdout, step.said) {
			t.Errorf("%v: exit %d, want 0 and %q:\n%s%s", step.args, code, step.said, stdout, stderr)
		}
		for _, bad := range []string{"refused the API token", "token was rejected", "authentication failed"} {
			if strings.Contains(stdout+stderr, bad) {
				t.Errorf("%v blames the token (%q):\n%s%s", step.args, bad, stdout, stderr)
			}
		}
		c.sim.ClearFaults()
	}
}
