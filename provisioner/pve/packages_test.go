package pve

import (
	"strings"
	"testing"
)

func installed(pc, ac string) Packages {
	p := Packages{}
	if pc != "" {
		p["pve-container"] = PackageVersion{OldVersion: pc, Version: pc, State: "Installed"}
	}
	if ac != "" {
		p["libpve-access-control"] = PackageVersion{OldVersion: ac, Version: ac, State: "Installed"}
	}
	return p
}

// The split is by package level, not major version (pve-container
// src/PVE/API2/LXC.pm termproxy; pve-access-control
// src/PVE/API2/AccessControl.pm verify_vnc_ticket).
func TestConsoleAcceptsTokens(t *testing.T) {
	pending := installed("6.1.2", "9.0.6")
	pending["pve-container"] = PackageVersion{OldVersion: "6.1.2", Version: "6.1.3", State: "Installed"}
	tests := []struct {
		name   string
		pkgs   Packages
		want   ConsoleTokens
		reason string
	}{
		{"9.1 updated", installed("6.1.3", "9.0.7"), ConsoleTokensAccepted, "/access/vncticket"},
		{"9.1 before the update", installed("6.1.2", "9.0.6"), ConsoleTokensRefused, "pve-container 6.1.2 starts the console without --vncticket-endpoint"},
		{"8.4 updated", installed("5.3.4", "8.2.3"), ConsoleTokensAccepted, "pve-container 5.3.4"},
		{"8.4 before the update", installed("5.3.3", "8.2.2"), ConsoleTokensRefused, "fixed in 5.3.4 for PVE 8"},
		{"update pending: OldVersion is what runs", pending, ConsoleTokensRefused, "offers 6.1.3: apt full-upgrade"},
		{"later 9.x", installed("6.1.10", "9.1.1"), ConsoleTokensAccepted, ""},
		{"access-control too old", installed("6.1.3", "9.0.3"), ConsoleTokensRefused, "lacks /access/vncticket"},
		{"PVE 7", installed("4.4.6", "7.4.3"), ConsoleTokensRefused, "predates PVE 8"},
		{"a future major", installed("7.0.1", "10.0.1"), ConsoleTokensAccepted, ""},
		{"nothing listed", Packages{}, ConsoleTokensUnknown, "no installed pve-container"},
		{"no access-control listed", installed("6.1.3", ""), ConsoleTokensUnknown, "no installed libpve-access-control"},
		{"removed, config files left", Packages{"pve-container": {Version: "6.1.3", State: "ConfigFiles"}}, ConsoleTokensUnknown, ""},
	}
	for _, tc := range tests {
		got := ConsoleAcceptsTokens(tc.pkgs)
		if got.Tokens != tc.want || !strings.Contains(got.Reason, tc.reason) {
			t.Errorf("%s: %v %q, want %v and %q in the reason", tc.name, got.Tokens, got.Reason, tc.want, tc.reason)
		}
	}
}
