package provisioner

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/migrahosting/cloudpods/fixtures/openwrtmirror"
	"github.com/migrahosting/cloudpods/fixtures/ostemplate"
)

func TestLatestOpenWrt(t *testing.T) {
	tests := []struct{ json, want, err string }{
		{`{"stable_version":"24.10.2","versions_list":["24.10.2","24.10.1","23.05.5"]}`, "24.10.2", ""},
		{`{"stable_version":"25.12.0","versions_list":["25.12.0","24.10.10","24.10.9","24.10.0-rc7"]}`, "24.10.10", ""},
		{`{"versions_list":["23.05.5","22.03.7"]}`, "", "the mirror lists no 24.x release (23.05.5, 22.03.7): pass --version"},
		{`<html>`, "", "is not JSON"},
	}
	for _, tt := range tests {
		got, err := latestOpenWrt([]byte(tt.json))
		if tt.err != "" {
			if err == nil || !strings.Contains(err.Error(), tt.err) {
				t.Errorf("%s: %q %v, want %q", tt.json, got, err, tt.err)
			}
			continue
		}
		if err != nil || got != tt.want {
			t.Errorf("%s: %q %v, want %q", tt.json, got, err, tt.want)
		}
	}
}

func TestSumFor(t *testing.T) {
	sums := []byte(strings.Repeat("a", 64) + " *openwrt-24.10.0-x86-64-rootfs.tar.gz\n" + strings.Repeat("b", 64) + "  openwrt-24.10.0-x86-64-generic-ext4-combined.img.gz\n")
	if s, ok := sumFor(sums, "openwrt-24.10.0-x86-64-rootfs.tar.gz"); !ok || s != strings.Repeat("a", 64) {
		t.Errorf("with '*': %q %v", s, ok)
	}
	if s, ok := sumFor(sums, "openwrt-24.10.0-x86-64-generic-ext4-combined.img.gz"); !ok || s != strings.Repeat("b", 64) {
		t.Errorf("without '*': %q %v", s, ok)
	}
	if _, ok := sumFor(sums, "openwrt-24.10.1-x86-64-rootfs.tar.gz"); ok {
		t.Error("found a line that is not there")
	}
}

// TestCheckOpenWrtRootfs: the release's tarball passes; another release,
// another target, a non-OpenWrt archive and a non-gzip file are refused.
func TestCheckOpenWrtRootfs(t *testing.T) {
	dir := t.TempDir()
	write := func(name string, b []byte) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, b, 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	good, err := openwrtmirror.Rootfs("24.10.0")
	if err != nil {
		t.Fatal(err)
	}
	if err := checkOpenWrtRootfs(write("good.tar.gz", good), "24.10.0"); err != nil {
		t.Errorf("the release's rootfs: %v", err)
	}
	if err := checkOpenWrtRootfs(write("good.tar.gz", good), "24.10.1"); err == nil || !strings.Contains(err.Error(), "is not release 24.10.1") {
		t.Errorf("another release: %v", err)
	}
	arm, _ := ostemplate.TarBytes([]ostemplate.Entry{{Path: "/etc/openwrt_release", Mode: 0o644, Data: "DISTRIB_RELEASE='24.10.0'\nDISTRIB_TARGET='mediatek/filogic'\n"}}, "gz")
	if err := checkOpenWrtRootfs(write("arm.tar.gz", arm), "24.10.0"); err == nil || !strings.Contains(err.Error(), "not for x86/64") {
		t.Errorf("another target: %v", err)
	}
	debian, _ := ostemplate.TarBytes([]ostemplate.Entry{{Path: "/etc/debian_version", Mode: 0o644, Data: "12.7\n"}}, "gz")
	if err := checkOpenWrtRootfs(write("debian.tar.gz", debian), "24.10.0"); err == nil || !strings.Contains(err.Error(), "not an OpenWrt rootfs") {
		t.Errorf("a Debian archive: %v", err)
	}
	if err := checkOpenWrtRootfs(write("plain", []byte("not gzip")), "24.10.0"); err == nil || !strings.Contains(err.Error(), "not gzip-compressed") {
		t.Errorf("not gzip: %v", err)
	}
}

func TestParseUCIShow(t *testing.T) {
	out := "firewall.@defaults[0]=defaults\nfirewall.@defaults[0].input='REJECT'\nfirewall.@zone[0]=zone\nfirewall.@zone[0].name='lan'\n" +
		"firewall.@zone[0].network='lan'\nfirewall.@zone[1]=zone\nfirewall.@zone[1].name='wan'\nfirewall.@zone[1].network='wan' 'wan6'\n" +
		"firewall.ntp=rule\nfirewall.ntp.name='it'\\''s'\n"
	s := parseUCIShow(out)
	if s["@zone[1]"][""] != "zone" || s["@zone[1]"]["network"] != "wan wan6" || s["@zone[0]"]["name"] != "lan" || s["ntp"]["name"] != "it's" {
		t.Errorf("parsed %v", s)
	}
}
