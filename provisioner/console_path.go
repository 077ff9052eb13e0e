package provisioner

import (
	"context"
	"errors"
	"fmt"

	"github.com/migrahosting/cloudpods/provisioner/pve"
)

// ConsolePath is the way into the pod's console that create (and health
// --deep) takes, and why, as said before the console work.
type ConsolePath struct {
	// Path is token (the node's console accepts the API token),
	// token-refused (it refuses it: nothing is done inside the pod),
	// token-unknown (whether it accepts it could not be told: the token is
	// tried) or password (a password login as User, --console-user).
	Path string `json:"path"`
	// User is the console login's PVE user (path password).
	User string `json:"user,omitempty"`
	// Reason is why, from the node's package versions or from what kept
	// them from being read.
	Reason string `json:"reason,omitempty"`
}

// The console paths.
const (
	ConsoleToken        = "token"
	ConsoleTokenRefused = "token-refused"
	ConsoleTokenUnknown = "token-unknown"
	ConsolePassword     = "password"
)

// consolePath asks the API how it will reach node's consoles.
func (p *Provisioner) consolePath(ctx context.Context, node string) ConsolePath {
	c := p.api.ConsolePath(ctx, node)
	switch {
	case c.Login != "":
		return ConsolePath{Path: ConsolePassword, User: c.Login, Reason: "a console login is configured (--console-user)"}
	case c.Tokens.Tokens == pve.ConsoleTokensAccepted:
		return ConsolePath{Path: ConsoleToken, Reason: c.Tokens.Reason}
	case c.Tokens.Tokens == pve.ConsoleTokensRefused:
		return ConsolePath{Path: ConsoleTokenRefused, Reason: c.Tokens.Reason}
	}
	return ConsolePath{Path: ConsoleTokenUnknown, Reason: c.Tokens.Reason}
}

// consoleFix is what an operator does about a console that refuses the
// API token.
const consoleFix = "pass --console-user and --console-password-file to log in with a password instead"

// String is the path and its reason.
func (c ConsolePath) String() string {
	switch c.Path {
	case ConsolePassword:
		return fmt.Sprintf("password login as %s (--console-user), not the API token", c.User)
	case ConsoleToken:
		return "API token, accepted by this PVE — " + c.Reason
	case ConsoleTokenRefused:
		return "API token, refused by this PVE — " + c.Reason
	}
	return "API token, untested — " + c.Reason
}

// announceConsolePath is create's preflight saying which console path the
// network and verify steps will take, why, and what follows from it; the
// result carries it too.
func (r *createRun) announceConsolePath(ctx context.Context) {
	c := r.p.consolePath(ctx, r.spec.Node)
	r.res.Console = &c
	msg := "console path: " + c.String()
	switch c.Path {
	case ConsoleTokenRefused:
		msg += " — so netplan will not be pushed and in-pod checks will be skipped, relying on net0; " + consoleFix
	case ConsoleTokenUnknown:
		msg += " — trying it; should the console refuse it, netplan is not pushed and the pod relies on net0"
	}
	r.run.Info(msg)
}

// skipped is health --deep's note on in-pod checks it could not run: the
// console path it took, and why they did not run.
func (c ConsolePath) skipped(why error) string {
	if !errors.Is(why, pve.ErrConsoleRefusesTokens) {
		return fmt.Sprintf("deep checks skipped: %v (console path: %s)", why, c)
	}
	path := c.String()
	if c.Path != ConsoleTokenRefused {
		// The packages said otherwise, or nothing: the console is the judge.
		path += "; the console refused it"
	}
	return fmt.Sprintf("deep checks skipped: console path: %s; %s", path, consoleFix)
}
