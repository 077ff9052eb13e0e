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
// storages, templates, containers from OS templates and OpenWrt routers,
// in order, against one simulator that starts without the golden template
// (template build makes it), with the mirrors the examples name served on
// loopback. Each must exit 0.
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
	subst := strings.NewReplacer("https://mirror.example", templates.URL, "$SUM", hex.EncodeToString(sum[:]),
		"https://downloads.openwrt.org", owrt.URL, "/root/template.pw", pw)
	for _, ex := range examples {
		args := strings.Fields(subst.Replace(ex))[1:]
		if code, out, errs := c.run(t, "", args...); code != 0 {
			t.Fatalf("README example %q: exit %d\n%s%s", ex, code, out, errs)
		}
	}
	if g, ok := c.sim.Guest(9000); !ok || g.Config["template"] != "1" {
		t.Error("the examples did not build CT 9000")
	}
	for _, id := range []int{300, 400, 401} {
		if g, ok := c.sim.Guest(id); !ok || g.Status != "running" {
			t.Errorf("CT %d after the examples: %+v", id, g)
		}
	}
}
