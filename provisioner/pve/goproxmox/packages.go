package goproxmox

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"sync"

	"github.com/migrahosting/cloudpods/provisioner/pve"
)

// PackageVersions reads GET /nodes/{node}/apt/versions (pve-manager
// PVE/API2/APT.pm versions), which needs Sys.Audit on /nodes/{node}.
func (c *Client) PackageVersions(ctx context.Context, node string) (pve.Packages, error) {
	var raw []struct {
		Package      string `json:"Package"`
		Version      string `json:"Version"`
		OldVersion   string `json:"OldVersion"`
		CurrentState string `json:"CurrentState"`
	}
	if err := c.call(ctx, "GET", "/nodes/"+url.PathEscape(node)+"/apt/versions", nil, &raw); err != nil {
		return nil, fmt.Errorf("read the package versions of node %s: %w", node, err)
	}
	out := make(pve.Packages, len(raw))
	for _, p := range raw {
		out[p.Package] = pve.PackageVersion{OldVersion: p.OldVersion, Version: p.Version, State: p.CurrentState}
	}
	return out, nil
}

// ConsoleTokenSupport judges from node's package versions whether its
// console accepts this client's API token, and remembers the answer for
// OpenTerminal, which then knows what a socket closed after the ticket line
// means. It never fails: what it cannot read it reports as unknown, with
// the reason (Sys.Audit on /nodes/{node} missing, PVE unreachable).
func (c *Client) ConsoleTokenSupport(ctx context.Context, node string) pve.ConsoleTokenVerdict {
	pkgs, err := c.PackageVersions(ctx, node)
	var v pve.ConsoleTokenVerdict
	switch {
	case errors.Is(err, pve.ErrForbidden):
		v = pve.ConsoleTokenVerdict{Tokens: pve.ConsoleTokensUnknown, Reason: fmt.Sprintf(
			"the token may not read node %s's package versions (it needs Sys.Audit on /nodes/%s), so whether the console accepts API tokens is unknown", node, node)}
	case err != nil:
		v = pve.ConsoleTokenVerdict{Tokens: pve.ConsoleTokensUnknown, Reason: fmt.Sprintf("%v; whether the console accepts API tokens is unknown", err)}
	default:
		v = pve.ConsoleAcceptsTokens(pkgs)
	}
	c.verdicts.set(node, v.Tokens)
	return v
}

// ConsolePath: a configured console login opens every console; without
// one, the API token does, as far as the node's packages let it.
func (c *Client) ConsolePath(ctx context.Context, node string) pve.ConsolePath {
	if c.console != nil {
		return pve.ConsolePath{Login: c.opts.Console.User}
	}
	return pve.ConsolePath{Tokens: c.ConsoleTokenSupport(ctx, node)}
}

// consoleVerdicts remembers ConsoleTokenSupport's answer per node.
type consoleVerdicts struct {
	mu     sync.Mutex
	byNode map[string]pve.ConsoleTokens
}

func (v *consoleVerdicts) set(node string, t pve.ConsoleTokens) {
	v.mu.Lock()
	defer v.mu.Unlock()
	if v.byNode == nil {
		v.byNode = map[string]pve.ConsoleTokens{}
	}
	v.byNode[node] = t
}

func (v *consoleVerdicts) get(node string) pve.ConsoleTokens {
	v.mu.Lock()
	defer v.mu.Unlock()
	return v.byNode[node]
}
