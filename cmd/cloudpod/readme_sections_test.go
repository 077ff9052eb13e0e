package main

import (
	"crypto/sha256"
	"encoding/hex"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/migrahosting/cloudpods/fixtures/openwrtmirror"
	"github.com/migrahosting/cloudpods/fixtures/pvesim"
	"github.com/migrahosting/cloudpods/fixtures/vmimages"
)

// readmeExamples are the cloudpod command lines of README's code blocks
// between two headings, in order, without their trailing comments.
func readmeExamples(t *testing.T, from, to string) []string {
	t.Helper()
	b, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	text := string(b)
	i, j := strings.Index(text, "\n"+from+"\n"), strings.Index(text, "\n"+to+"\n")
	if i < 0 || j < i {
		t.Fatalf("README has no section %q before %q", from, to)
	}
	var out []string
	inBlock := false
	for _, line := range strings.Split(text[i:j], "\n") {
		switch {
		case strings.HasPrefix(line, "```"):
			inBlock = !inBlock
		case inBlock && strings.HasPrefix(line, "cloudpod "):
			if k := strings.Index(line, "  #"); k >= 0 {
				line = line[:k]
			}
			out = append(out, strings.TrimSpace(line))
		}
	}
	return out
}

// TestReadmeExamplesRun runs every example of README's sections on
// storages, templates, containers from OS templates, OpenWrt routers,
// images, cloud-init VMs and router VMs, in order, against one simulator
// that starts without the golden template (template build makes it), with
// the mirrors the examples name served on loopback (and the PCI mapping an
// administrator would have made). Each must exit 0.
func TestReadmeExamplesRun(t *testing.T) {
	examples := readmeExamples(t, "## Storages", "## Connecting to a real PVE")
	if len(examples) < 12 {
		t.Fatalf("only %d examples found: %q", len(examples), examples)
	}
	c := startCLIWith(t, func(cfg *pvesim.Config) { cfg.NoTemplate = true; withNetworkToken(cfg) })
	const debian13 = "debian-13-standard_13.1-2_amd64.tar.zst"
	data, _ := pvesim.ApplianceArchive(debian13)
	templates := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/templates/"+debian13 {
			http.NotFound(w, r)
			return
		}
		_, _ = w.Write(data)
	}))
	defer templates.Close()
	sum := sha256.Sum256(data)
	owrt, err := openwrtmirror.NewServer("24.10.0", "23.05.5")
	must(t, err)
	defer owrt.Close()
	pw := filepath.Join(t.TempDir(), "template.pw")
	must(t, os.WriteFile(pw, []byte("golden-pw\n"), 0o600))
	images := imageMirror(t, map[string][]byte{"noble-server-cloudimg-amd64.img": cloudImage})
	keys := filepath.Join(t.TempDir(), "keys.pub")
	must(t, os.WriteFile(keys, []byte(pubKey("ops@laptop")+"\n"), 0o644))
	c.sim.AddMapping("pci", "gpu0", "node=pve,path=0000:01:00.0,id=10de:2204") // an administrator's
	subst := strings.NewReplacer("https://mirror.example", templates.URL, "$SUM", hex.EncodeToString(sum[:]),
		"https://downloads.openwrt.org", owrt.URL, "/root/template.pw", pw, "https://cloud-images.example", images.URL,
		"$IMGSUM", vmimages.SHA256(cloudImage), " keys.pub", " "+keys)
	for _, ex := range examples {
		args := strings.Fields(subst.Replace(ex))[1:]
		if code, out, errs := c.run(t, "", args...); code != 0 {
			t.Fatalf("README example %q: exit %d\n%s%s", ex, code, out, errs)
		}
	}
	if g, ok := c.sim.Guest(9000); !ok || g.Config["template"] != "1" {
		t.Error("the examples did not build CT 9000")
	}
	for _, id := range []int{300, 400, 401, 600, 601} {
		if g, ok := c.sim.Guest(id); !ok || g.Status != "running" {
			t.Errorf("guest %d after the examples: %+v", id, g)
		}
	}
	if g, ok := c.sim.Guest(500); !ok || g.Config["template"] != "1" {
		t.Error("the examples did not make VM 500 a template")
	}
	if _, ok := c.sim.Guest(501); ok {
		t.Error("the examples did not destroy VM 501")
	}
	if _, ok := c.sim.Guest(510); ok {
		t.Error("the dry run made VM 510")
	}
}
