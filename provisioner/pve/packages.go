package pve

import (
	"fmt"

	"github.com/migrahosting/cloudpods/provisioner/pve/debversion"
)

// PackageVersion is one package as GET /nodes/{node}/apt/versions lists
// it (pve-manager PVE/API2/APT.pm versions).
type PackageVersion struct {
	// OldVersion is what is installed ("OldVersion"); Version is apt's
	// candidate, what an update would install ("Version"). They differ on a
	// node with updates pending.
	OldVersion string
	Version    string
	// State is dpkg's CurrentState: "Installed", "ConfigFiles", …
	State string
}

// Packages are a node's package versions by package name.
type Packages map[string]PackageVersion

// Installed is the version of name that runs on the node, "" when the
// package is not (correctly) installed — what pveversion -v prints.
func (p Packages) Installed(name string) string {
	v, ok := p[name]
	if !ok || v.State != "Installed" {
		return ""
	}
	if v.OldVersion != "" {
		return v.OldVersion
	}
	return v.Version
}

// ConsoleTokens says whether a node's console (termproxy) accepts a ticket
// an API token owns.
type ConsoleTokens int

const (
	// ConsoleTokensUnknown: the versions could not be read or judged.
	ConsoleTokensUnknown ConsoleTokens = iota
	// ConsoleTokensRefused: termproxy checks tickets through /access/ticket,
	// which takes the token id for a user name and refuses it.
	ConsoleTokensRefused
	// ConsoleTokensAccepted: termproxy checks tickets through
	// /access/vncticket, which accepts a token's.
	ConsoleTokensAccepted
)

func (t ConsoleTokens) String() string {
	switch t {
	case ConsoleTokensRefused:
		return "refused"
	case ConsoleTokensAccepted:
		return "accepted"
	}
	return "unknown"
}

// ConsoleTokenVerdict is the judgement and the sentence that explains it,
// fit to show the operator before a run.
type ConsoleTokenVerdict struct {
	Tokens ConsoleTokens
	Reason string
}

// consoleFix is where the April 2026 updates (2026-04-21) made the console
// accept API tokens, per pve-container major version: pve-container starts
// termproxy with --vncticket-endpoint (pve-container
// src/PVE/API2/LXC.pm termproxy), and pve-access-control has the
// /access/vncticket endpoint it asks (src/PVE/API2/AccessControl.pm).
var consoleFix = map[int]struct{ container, accessControl, release string }{
	5: {"5.3.4", "8.2.3", "PVE 8"},
	6: {"6.1.3", "9.0.4", "PVE 9"},
}

// ConsoleAcceptsTokens judges from a node's package versions whether its
// console accepts API-token tickets.
func ConsoleAcceptsTokens(p Packages) ConsoleTokenVerdict {
	pc, ac := p.Installed("pve-container"), p.Installed("libpve-access-control")
	if pc == "" {
		return ConsoleTokenVerdict{ConsoleTokensUnknown, "PVE lists no installed pve-container, so whether its console accepts API tokens is unknown"}
	}
	major := debversion.Major(pc)
	fix, known := consoleFix[major]
	switch {
	case !known && major > 6:
		return ConsoleTokenVerdict{ConsoleTokensAccepted, fmt.Sprintf("pve-container %s is newer than the console's token fix (6.1.3)", pc)}
	case !known:
		return ConsoleTokenVerdict{ConsoleTokensRefused, fmt.Sprintf("pve-container %s predates PVE 8; its console refuses API-token tickets", pc)}
	case !debversion.AtLeast(pc, fix.container):
		reason := fmt.Sprintf("pve-container %s starts the console without --vncticket-endpoint, so it refuses API-token tickets (fixed in %s for %s, 2026-04-21)", pc, fix.container, fix.release)
		if cand := p["pve-container"].Version; debversion.AtLeast(cand, fix.container) {
			reason += fmt.Sprintf("; the node's repository offers %s: apt full-upgrade installs it", cand)
		}
		return ConsoleTokenVerdict{ConsoleTokensRefused, reason}
	case ac == "":
		return ConsoleTokenVerdict{ConsoleTokensUnknown, fmt.Sprintf("pve-container %s has the console's token fix, but PVE lists no installed libpve-access-control", pc)}
	case !debversion.AtLeast(ac, fix.accessControl):
		return ConsoleTokenVerdict{ConsoleTokensRefused, fmt.Sprintf("libpve-access-control %s lacks /access/vncticket (%s needs %s), which pve-container %s's console asks", ac, fix.release, fix.accessControl, pc)}
	}
	return ConsoleTokenVerdict{ConsoleTokensAccepted, fmt.Sprintf("pve-container %s and libpve-access-control %s check console tickets through /access/vncticket, which accepts API tokens", pc, ac)}
}
