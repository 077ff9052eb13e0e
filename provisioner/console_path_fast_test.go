package provisioner_test

import (
	"context"
	"strings"
	"testing"

	"github.com/migrahosting/cloudpods/provisioner"
	"github.com/migrahosting/cloudpods/provisioner/pve"
	"github.com/migrahosting/cloudpods/provisioner/pvetest"
)

// Create says in preflight, as one info event before anything is
// changed, which console path it takes and why, and its result carries
// the same; the fallback where the console refuses the token stays.
func TestConsolePathSaidInPreflightOnTheFake(t *testing.T) {
	const unreadable = "read the package versions of node pve: GET /nodes/pve/apt/versions: 500 apt cache unreadable; whether the console accepts API tokens is unknown"
	for _, tc := range []struct {
		name    string
		console *pve.ConsolePath
		refuses bool
		want    provisioner.ConsolePath
		said    string
	}{
		{name: "token accepted", want: provisioner.ConsolePath{Path: provisioner.ConsoleToken, Reason: "pvetest: the console accepts API-token tickets"},
			said: "console path: API token, accepted by this PVE — pvetest: the console accepts API-token tickets"},
		{name: "token refused", refuses: true, want: provisioner.ConsolePath{Path: provisioner.ConsoleTokenRefused, Reason: "pvetest: the console refuses API-token tickets"},
			said: "console path: API token, refused by this PVE — pvetest: the console refuses API-token tickets — so netplan will not be pushed and in-pod checks will be skipped, relying on net0; pass --console-user and --console-password-file to log in with a password instead"},
		{name: "password login", console: &pve.ConsolePath{Login: "cloudpods-console@pve"},
			want: provisioner.ConsolePath{Path: provisioner.ConsolePassword, User: "cloudpods-console@pve", Reason: "a console login is configured (--console-user)"},
			said: "console path: password login as cloudpods-console@pve (--console-user), not the API token"},
		{name: "unknown", console: &pve.ConsolePath{Tokens: pve.ConsoleTokenVerdict{Tokens: pve.ConsoleTokensUnknown, Reason: unreadable}},
			want: provisioner.ConsolePath{Path: provisioner.ConsoleTokenUnknown, Reason: unreadable},
			said: "console path: API token, untested — " + unreadable + " — trying it; should the console refuse it, netplan is not pushed and the pod relies on net0"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			env := newFastEnv(t)
			env.api.Console, env.api.ConsoleRefusesTokens = tc.console, tc.refuses
			var ev events
			res, err := env.provisioner(provisioner.Options{}).Create(context.Background(),
				provisioner.CreateRequest{Spec: seedSpec(9101, "migra-client-01", 91), Reporter: &ev})
			if err != nil {
				t.Fatal(err)
			}
			if res.Console == nil || *res.Console != tc.want {
				t.Errorf("result's console = %+v, want %+v", res.Console, tc.want)
			}
			said, first := -1, -1
			for i, e := range ev.list {
				if e.Step == provisioner.StepPreflight && e.Phase == provisioner.PhaseInfo && e.Message == tc.said {
					said = i
				}
				if first < 0 && e.Step == provisioner.StepClone {
					first = i
				}
			}
			if said < 0 || first < said {
				t.Errorf("preflight did not say %q before the clone: %+v", tc.said, ev.list)
			}
			pushed := false
			for _, c := range env.api.Calls() {
				pushed = pushed || (c.Method == "exec" && strings.Contains(c.Arg, "networkctl reconfigure eth0"))
			}
			if pushed == tc.refuses {
				t.Errorf("netplan pushed = %v where the console refuses tokens = %v", pushed, tc.refuses)
			}
		})
	}
}

// health --deep, when it cannot run its in-pod checks, says which console
// path it took.
func TestHealthSaysItsConsolePathWhenItSkipsOnTheFake(t *testing.T) {
	for _, tc := range []struct {
		name    string
		console *pve.ConsolePath
		want    string
	}{
		{name: "refused, as the packages said", want: "deep checks skipped: console path: API token, refused by this PVE — pvetest: the console refuses API-token tickets; pass --console-user and --console-password-file to log in with a password instead"},
		{name: "refused, packages unread", console: &pve.ConsolePath{Tokens: pve.ConsoleTokenVerdict{Reason: "GET /nodes/pve/apt/versions: 500 boom; whether the console accepts API tokens is unknown"}},
			want: "deep checks skipped: console path: API token, untested — GET /nodes/pve/apt/versions: 500 boom; whether the console accepts API tokens is unknown; the console refused it; pass --console-user and --console-password-file to log in with a password instead"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			env := newFastEnv(t)
			env.api.AddGuest(pvetest.Guest{Kind: pve.LXC, Node: "pve", VMID: 9101, Status: "running", Config: map[string]string{"hostname": "migra-client-01"}})
			env.api.Console, env.api.ConsoleRefusesTokens = tc.console, true
			h, err := env.provisioner(provisioner.Options{}).Health(context.Background(), "pve", 9101, true)
			if err != nil {
				t.Fatal(err)
			}
			if len(h.Warnings) != 1 || h.Warnings[0] != tc.want {
				t.Errorf("warnings %q\nwant %q", h.Warnings, tc.want)
			}
		})
	}
}

// A console ticket PVE refuses at every attach (401 "permission denied -
// invalid PVEVNC ticket") ends create as a console ticket problem: every
// retry says it attaches again with a fresh ticket, and the failure is
// neither a token problem nor exit 5.
func TestConsoleTicketRefusedOnTheFake(t *testing.T) {
	env := newFastEnv(t)
	env.api.Inject(pvetest.Fault{Method: "OpenTerminal", Err: &pve.APIError{Method: "GET", Path: "/nodes/pve/lxc/9101/vncwebsocket", Status: 401,
		Message: "permission denied - invalid PVEVNC ticket"}})
	var ev events
	_, err := env.provisioner(provisioner.Options{}).Create(context.Background(),
		provisioner.CreateRequest{Spec: seedSpec(9101, "migra-client-01", 91), Reporter: &ev})
	const ticket = "console of CT 9101: the console ticket expired or was refused (termproxy: 401 permission denied - invalid PVEVNC ticket)"
	if err == nil || !strings.Contains(err.Error(), ticket) || strings.Contains(err.Error(), "token") {
		t.Fatalf("err = %v, want the console ticket problem", err)
	}
	if k := provisioner.KindOf(err); k != provisioner.KindFailed {
		t.Errorf("kind %s, want %s", k, provisioner.KindFailed)
	}
	if exit, _ := provisioner.KindOf(err).Codes(); exit == 5 {
		t.Error("a refused console ticket exits 5")
	}
	retries := 0
	for _, e := range ev.list {
		if e.Phase == provisioner.PhaseInfo && strings.HasPrefix(e.Message, ticket+"; attaching again with a fresh one in ") {
			retries++
		}
	}
	if retries != 2 { // three attempts
		t.Errorf("%d retries said so, want 2: %+v", retries, ev.list)
	}
}
