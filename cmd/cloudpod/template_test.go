package main

import (
	"crypto/sha256"
	"encoding/hex"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"testing"

	"github.com/migrahosting/cloudpods/fixtures/pvesim"
)

// withNetworkToken gives the CLI's token what download-url needs on top of
// PVEAdmin (Sys.AccessNetwork) and what a privileged CT needs on PVE 9
// (Sys.Modify).
func withNetworkToken(cfg *pvesim.Config) {
	cfg.Tokens[0].Privileges = append(pvesim.PVEAdminPrivileges(cfg.Version), "Sys.AccessNetwork", "Sys.Modify")
}

// mustRun runs the CLI and fails the test unless it exits with code.
func (c *cli) mustRun(t *testing.T, code int, args ...string) (stdout, stderr string) {
	t.Helper()
	got, out, errs := c.run(t, "", args...)
	if got != code {
		t.Fatalf("%v: exit %d, want %d\nstdout:\n%s\nstderr:\n%s", args, got, code, out, errs)
	}
	return out, errs
}

func wantIn(t *testing.T, what, text string, subs ...string) {
	t.Helper()
	for _, s := range subs {
		if !strings.Contains(text, s) {
			t.Errorf("%s lacks %q:\n%s", what, s, text)
		}
	}
}

const debian12 = "debian-12-standard_12.7-1_amd64.tar.zst"

// lineWith is the first line of out that starts with prefix.
func lineWith(out, prefix string) string {
	for _, l := range strings.Split(out, "\n") {
		if strings.HasPrefix(l, prefix) {
			return l
		}
	}
	return ""
}

// TestTemplateDownloadReusesTheCachedCopy: the catalogue entry twice; the
// second run has PVE confirm the copy's sha512 and fetches nothing.
func TestTemplateDownloadReusesTheCachedCopy(t *testing.T) {
	c := startCLIWith(t, withNetworkToken)
	out, _ := c.mustRun(t, 0, "template", "download", debian12, "--storage", "local")
	wantIn(t, "first download", out, "local:vztmpl/"+debian12+" stored", "verified by PVE against the catalogue's sha512")
	out, _ = c.mustRun(t, 0, "template", "download", debian12, "--storage", "local")
	wantIn(t, "second download", out, "template transfer   skip: reused the copy already on local: PVE confirmed its sha512", "local:vztmpl/"+debian12+" already there, reused")
	out, _ = c.mustRun(t, 0, "template", "download", debian12, "--storage", "local", "-o", "json")
	wantIn(t, "JSON", out, `"cached":true`, `"changed":false`, `"volid":"local:vztmpl/`+debian12+`"`)
	out, _ = c.mustRun(t, 0, "template", "list")
	wantIn(t, "template list", out, "TEMPLATE", "CATALOGUE", "ON STORAGE")
	wantIn(t, "debian 12's line", lineWith(out, debian12), "debian-12 ", " yes ", " local:vztmpl/"+debian12)
	wantIn(t, "debian 13's line", lineWith(out, "debian-13-standard_13.1-2_amd64.tar.zst"), " yes ", " -")
	audit, _ := os.ReadFile(c.audit)
	wantIn(t, "audit log", string(audit), `"command":"content catalogue","volume":"local:vztmpl/`+debian12+`"`)
}

// TestTemplateDownloadWrongChecksumLeavesNoFile: a wrong --checksum fails
// naming both sums, and no file is left, from the catalogue and from a
// URL; a URL without a checksum is refused before any call.
func TestTemplateDownloadWrongChecksumLeavesNoFile(t *testing.T) {
	c := startCLIWith(t, withNetworkToken)
	const debian13 = "debian-13-standard_13.1-2_amd64.tar.zst"
	data, _ := pvesim.ApplianceArchive(debian13)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { _, _ = w.Write(data) }))
	defer srv.Close()
	sum := sha256.Sum256(data)
	actual := hex.EncodeToString(sum[:])
	wrong := strings.Repeat("ab", 32)
	url := srv.URL + "/custom/" + debian13

	_, errs := c.mustRun(t, exitFailed, "template", "download", url, "--storage", "local", "--checksum", "sha256:"+wrong)
	wantIn(t, "URL with a wrong checksum", errs, "checksum mismatch for "+debian13+": expected sha256:"+wrong+", got sha256:"+actual, "nothing was stored")
	if p, ok := c.sim.ContentFile("local:vztmpl/" + debian13); ok {
		t.Errorf("a file was left: %s", p)
	}
	_, errs = c.mustRun(t, exitFailed, "template", "download", debian13, "--storage", "local", "--checksum", "sha512:"+strings.Repeat("0", 128))
	wantIn(t, "catalogue entry with a wrong checksum", errs, "expected sha512:"+strings.Repeat("0", 128), "nothing was downloaded")
	if _, ok := c.sim.ContentFile("local:vztmpl/" + debian13); ok {
		t.Error("a file was left after the catalogue mismatch")
	}
	_, errs = c.mustRun(t, exitUsage, "template", "download", url, "--storage", "local")
	wantIn(t, "URL without a checksum", errs, "cannot be verified: pass --checksum ALGO:HEX", "or --no-verify")

	out, _ := c.mustRun(t, 0, "template", "download", url, "--storage", "local", "--checksum", "sha256:"+actual)
	wantIn(t, "URL with the right checksum", out, "local:vztmpl/"+debian13+" stored", "verified by PVE (sha256)")
	out, _ = c.mustRun(t, 0, "template", "download", url, "--storage", "local", "--checksum", "sha256:"+actual)
	wantIn(t, "URL again", out, "already there, reused")
	// A wrong checksum against the cached copy leaves the copy alone.
	_, errs = c.mustRun(t, exitFailed, "template", "download", url, "--storage", "local", "--checksum", "sha256:"+wrong)
	wantIn(t, "wrong checksum over a cached copy", errs, "the copy of "+debian13+" already on storage local has sha256:"+actual+", not the expected sha256:"+wrong)
	if _, ok := c.sim.ContentFile("local:vztmpl/" + debian13); !ok {
		t.Error("the cached copy was removed")
	}
}

// TestTemplateDownloadDryRunAndPrivileges: a dry run names the storage it
// picked and why; without Sys.AccessNetwork a URL is refused in
// preflight, naming the privilege.
func TestTemplateDownloadDryRunAndPrivileges(t *testing.T) {
	c := startCLI(t) // PVEAdmin: no Sys.AccessNetwork
	out, _ := c.mustRun(t, 0, "template", "download", debian12, "--dry-run")
	wantIn(t, "dry run", out, "POST   /nodes/pve/aplinfo  storage=iso-store template="+debian12,
		"why:", "storage iso-store: the active vztmpl storage with the most room")
	if _, ok := c.sim.ContentFile("iso-store:vztmpl/" + debian12); ok {
		t.Error("the dry run downloaded")
	}
	_, errs := c.mustRun(t, exitPreflight, "template", "download", "https://127.0.0.1:1/x_1_amd64.tar.zst", "--storage", "local", "--checksum", "md5:"+strings.Repeat("0", 32))
	wantIn(t, "no network privilege", errs, "the API token lacks Sys.AccessNetwork on /nodes/pve")
}

func TestStorageList(t *testing.T) {
	c := startCLI(t)
	out, _ := c.mustRun(t, 0, "storage", "list")
	wantIn(t, "storage list", out, "STORAGE", "clients-main", "images,rootdir", "[", "%", "vzdump-backups", "fullest")
	if n := strings.Count(out, "fullest"); n != 1 {
		t.Errorf("%d storages marked fullest:\n%s", n, out)
	}
	out, _ = c.mustRun(t, 0, "storage", "list", "--content", "rootdir", "-o", "json")
	wantIn(t, "JSON", out, `"storage":"clients-main"`, `"used_fraction":`)
	if strings.Contains(out, `"storage":"local"`) {
		t.Errorf("--content rootdir listed local:\n%s", out)
	}
}
