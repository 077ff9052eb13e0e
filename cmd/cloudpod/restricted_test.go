package main

import (
	"testing"
)

func TestForbiddenFlag(t *testing.T) {
	for _, tt := range []struct {
		args []string
		want string
	}{
		{[]string{"9101", "migra-client-01", "91"}, ""},
		{[]string{"--vmid", "auto", "--host", "web", "--ip=auto", "--cores", "2", "--mem", "4096", "--swap=0", "--tenant", "acme", "--tags", "a,b"}, ""},
		{[]string{"9101", "web", "91", "-o", "json"}, ""},
		{[]string{"9101", "web", "91", "-ojson"}, ""},
		{[]string{"9101", "web", "91", "--output=json"}, ""},
		{[]string{"--", "--pve-url"}, ""}, // after --, a positional (then refused as a VMID)
		{[]string{"9101", "web", "91", "--pve-url", "https://x"}, "--pve-url"},
		{[]string{"--pve-url=https://x"}, "--pve-url"},
		{[]string{"---pve-url"}, "---pve-url"},
		{[]string{"-k"}, "-k"},
		{[]string{"--dry-run"}, "--dry-run"},
		{[]string{"--count", "5"}, "--count"},
		{[]string{"--storage", "local"}, "--storage"},
		{[]string{"--log-level", "debug"}, "--log-level"},
	} {
		if got := forbiddenFlag(tt.args); got != tt.want {
			t.Errorf("forbiddenFlag(%q) = %q, want %q", tt.args, got, tt.want)
		}
	}
}

func TestForbiddenVariable(t *testing.T) {
	for _, tt := range []struct {
		env  []string
		want string
	}{
		{[]string{"PATH=/bin", "HOME=/root", "SUDO_USER=mpanel", "TERM=xterm", "LANG=C"}, ""},
		{[]string{"PATH=/bin", "PVE_URL=https://x"}, "PVE_URL"},
		{[]string{"CLOUDPODS_AUDIT_LOG=", "PVE_FINGERPRINT=x"}, "CLOUDPODS_AUDIT_LOG"},
		{[]string{"https_proxy=http://x"}, "https_proxy"},
		{[]string{"GODEBUG=x509sha1=1"}, "GODEBUG"},
		{[]string{"SSL_CERT_FILE=/tmp/ca"}, "SSL_CERT_FILE"},
	} {
		if got := forbiddenVariable(tt.env); got != tt.want {
			t.Errorf("forbiddenVariable(%q) = %q, want %q", tt.env, got, tt.want)
		}
	}
}

func TestRestrictedByName(t *testing.T) {
	for name, want := range map[string]bool{"/usr/local/sbin/cloudpod-create": true, "cloudpod-create": true, "/usr/local/bin/cloudpod": false, "cloudpod-create.sh": false} {
		if isRestricted(name) != want {
			t.Errorf("isRestricted(%q) = %v", name, !want)
		}
	}
}
