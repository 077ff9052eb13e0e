package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
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

// TestSettingsFileMustBeRootsAlone: cloudpod-create reads a settings file
// only when root owns it and no one else may write it.
func TestSettingsFileMustBeRootsAlone(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to give the file away")
	}
	p := filepath.Join(t.TempDir(), "cloudpods.env")
	must(t, os.WriteFile(p, []byte("PVE_URL=https://pve:8006\n"), 0o600))
	if err := checkRootOwned(p); err != nil {
		t.Fatalf("root's 0600 file: %v", err)
	}
	must(t, os.Chmod(p, 0o620))
	if err := checkRootOwned(p); err == nil || !strings.Contains(err.Error(), "chmod go-w "+p) {
		t.Errorf("a group-writable file: %v", err)
	}
	must(t, os.Chmod(p, 0o600))
	must(t, os.Chown(p, 65534, 65534))
	if err := checkRootOwned(p); err == nil || !strings.Contains(err.Error(), "chown root: "+p) {
		t.Errorf("a file nobody owns: %v", err)
	}
	if err := checkRootOwned(filepath.Dir(p)); err == nil {
		t.Error("a directory was taken for the settings file")
	}
}

// TestSettingsFileChoosesIPAM: the settings file's CLOUDPODS_IPAM is the
// backend, as --ipam would be (cloudpod-create's only way to set it).
func TestSettingsFileChoosesIPAM(t *testing.T) {
	p := filepath.Join(t.TempDir(), "cloudpods.env")
	must(t, os.WriteFile(p, []byte("PVE_URL=https://127.0.0.1:1\nPVE_TOKEN_ID=a@pve!b\nPVE_TOKEN_SECRET=s\nPVE_FINGERPRINT="+strings.Repeat("AA:", 31)+"AA\nCLOUDPODS_IPAM=none\n"), 0o600))
	var out, errb bytes.Buffer
	code := execute(context.Background(), nil, []string{"ip", "next", "--config", p}, strings.NewReader(""), &out, &errb)
	if code != exitUsage || !strings.Contains(errb.String(), "--ipam none: there is no registry to ask") {
		t.Errorf("exit %d, %q", code, errb.String())
	}
}
