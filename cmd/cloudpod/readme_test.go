package main

import (
	"bytes"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// readmeBlocks are README's fenced sh blocks that call cloudpod or curl:
// the examples that run against the simulator with its golden template.
// The sections from "## Storages" to "## Connecting to a real PVE" start
// from a node without it (template build makes it) and fetch from
// loopback mirrors: TestReadmeExamplesRun runs those; "## Clusters" wants
// a cluster: TestReadmeClusterExamples.
func readmeBlocks(t *testing.T) []string {
	t.Helper()
	readme, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	text := string(readme)
	i, j := strings.Index(text, "\n## Storages\n"), strings.Index(text, "\n## Connecting to a real PVE\n")
	if i < 0 || j < i {
		t.Fatal("README has no sections from \"## Storages\" to \"## Connecting to a real PVE\"")
	}
	text = text[:i] + text[j:]
	// "## Clusters" runs on three nodes: TestReadmeClusterExamples.
	if i, j := strings.Index(text, "\n## Clusters\n"), strings.Index(text, "\n### Makespan on three nodes\n"); i >= 0 && j > i {
		text = text[:i] + text[j:]
	}
	var out []string
	for _, m := range regexp.MustCompile("(?s)```sh\n(.*?)```").FindAllStringSubmatch(text, -1) {
		if regexp.MustCompile(`(?m)^(cloudpod|curl) `).MatchString(m[1]) {
			out = append(out, m[1])
		}
	}
	return out
}

// commands splits a block into its commands, joining continued lines.
func commands(block string) []string {
	var out []string
	var cur strings.Builder
	for _, line := range strings.Split(strings.TrimRight(block, "\n"), "\n") {
		if strings.HasSuffix(line, `\`) {
			cur.WriteString(strings.TrimSuffix(line, `\`))
			continue
		}
		cur.WriteString(line)
		out = append(out, cur.String())
		cur.Reset()
	}
	return out
}

// TestREADMEExamples runs README's examples as written: each fenced block
// that calls cloudpod against the simulator, as a shell script with the
// built cloudpod on PATH and the connection in the documented variables
// (PVE_URL, PVE_TOKEN_ID, PVE_TOKEN_SECRET, PVE_FINGERPRINT; the audit log
// and IPAM registry in CLOUDPODS_AUDIT_LOG and CLOUDPODS_IPAM_FILE, away
// from the machine's own); and the panel's curl example against `cloudpod
// serve`, with CLOUDPODS_URL, TOKEN and JOB_ID as its text says, which
// must answer 202.
func TestREADMEExamples(t *testing.T) {
	skipIfShort(t)
	sh, err := exec.LookPath("sh")
	if err != nil {
		t.Skip("no sh")
	}
	blocks := readmeBlocks(t)
	if len(blocks) != 2 {
		t.Fatalf("README has %d runnable blocks, want the commands and the panel's curl", len(blocks))
	}
	bin := cloudpodBinary(t, "")
	path := t.TempDir()
	must(t, os.Symlink(bin, filepath.Join(path, "cloudpod")))
	env := func(c *cli, dir string, extra ...string) []string {
		settings := filepath.Join(dir, "empty.env")
		must(t, os.WriteFile(settings, nil, 0o600))
		return append([]string{"PATH=" + path + ":" + os.Getenv("PATH"), "HOME=" + dir,
			"PVE_URL=" + c.sim.URL(), "PVE_TOKEN_ID=" + testTokenID, "PVE_TOKEN_SECRET=" + testTokenSecret, "PVE_FINGERPRINT=" + c.sim.Fingerprint(),
			"CLOUDPODS_CONFIG=" + settings, "CLOUDPODS_AUDIT_LOG=" + filepath.Join(dir, "audit.log"), "CLOUDPODS_IPAM_FILE=" + filepath.Join(dir, "ipam.json")}, extra...)
	}

	for _, block := range blocks {
		if !regexp.MustCompile(`(?m)^cloudpod `).MatchString(block) {
			continue
		}
		c := startCLI(t)
		dir := t.TempDir()
		// The block as one script (it writes a file with a here-document),
		// stopping at the first command that fails; -x names it.
		cmd := exec.Command(sh, "-ex")
		cmd.Dir, cmd.Env, cmd.Stdin = dir, env(c, dir), strings.NewReader(block)
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Errorf("README's commands: %v\n%s", err, lastLines(string(out), 30))
		}
		if g, ok := c.sim.Guest(9101); ok {
			t.Errorf("CT 9101 outlived the example's destroy: %+v", g)
		}
		for _, vmid := range []int{9201, 9302} {
			if g, ok := c.sim.Guest(vmid); !ok || g.Status != "running" {
				t.Errorf("CT %d after the examples: %+v", vmid, g)
			}
		}
	}

	// The panel's example, against the service.
	if _, err := exec.LookPath("curl"); err != nil {
		t.Skip("no curl for the panel's example")
	}
	c := startCLI(t)
	dir := t.TempDir()
	srv := startServeProgram(t, bin, env(c, dir), []string{"--listen", "127.0.0.1:0", "--auth-file", writeTokens(t), "--state-dir", filepath.Join(dir, "jobs")})
	var jobID string
	for _, block := range blocks {
		if !regexp.MustCompile(`(?m)^curl `).MatchString(block) {
			continue
		}
		for i, command := range commands(block) {
			cmd := exec.Command(sh, "-ec", command)
			cmd.Dir, cmd.Env = dir, env(c, dir, "CLOUDPODS_URL="+srv.url, "TOKEN="+serveTestToken, "JOB_ID="+jobID)
			var stdout, stderr bytes.Buffer
			cmd.Stdout, cmd.Stderr = &stdout, &stderr
			if err := cmd.Run(); err != nil {
				t.Fatalf("%s: %v\n%s%s", command, err, stdout.String(), stderr.String())
			}
			var answer struct {
				JobID  string `json:"jobId"`
				Status string `json:"status"`
				Error  string `json:"error"`
			}
			if err := json.Unmarshal(stdout.Bytes(), &answer); err != nil || answer.JobID == "" || answer.Error != "" {
				t.Fatalf("%s answered %q (%v)", command, stdout.String(), err)
			}
			if i == 0 {
				jobID = answer.JobID
			}
		}
	}
	// The service's request log has the status each curl got.
	if !regexp.MustCompile(`"method":"POST".*"route":"/internal/proxmox/cloudpods","status":202`).MatchString(srv.log()) {
		t.Errorf("the example's POST did not get 202:\n%s", srv.log())
	}
}
