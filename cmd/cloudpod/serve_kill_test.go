package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/migrahosting/cloudpods/fixtures/pvesim"
	"github.com/migrahosting/cloudpods/ipam"
	"github.com/migrahosting/cloudpods/netcfg"
	"github.com/migrahosting/cloudpods/provisioner"
	"github.com/migrahosting/cloudpods/provisioner/pve/goproxmox"
	"github.com/migrahosting/cloudpods/provisioner/service"
)

// serveChild is `cloudpod serve` running as a child process of the test
// binary (TestMain runs the CLI when CLOUDPODS_CLI_CHILD=1).
type serveChild struct {
	t    *testing.T
	cmd  *exec.Cmd
	url  string
	mu   sync.Mutex
	logs bytes.Buffer
	done chan error
}

// startServe runs `cloudpod serve args...` and waits until it listens; the
// address comes from its "listening" log line, as an operator would read it.
func startServe(t *testing.T, args []string) *serveChild {
	t.Helper()
	return startServeProgram(t, os.Args[0], append(os.Environ(), "CLOUDPODS_CLI_CHILD=1"), args)
}

// startServeProgram runs `program serve args...` with env.
func startServeProgram(t *testing.T, program string, env, args []string) *serveChild {
	t.Helper()
	c := &serveChild{t: t, done: make(chan error, 1)}
	c.cmd = exec.Command(program, append([]string{"serve"}, args...)...)
	c.cmd.Env = env
	stderr, err := c.cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := c.cmd.Start(); err != nil {
		t.Fatalf("start cloudpod serve: %v", err)
	}
	listening := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			line := sc.Bytes()
			c.mu.Lock()
			c.logs.Write(line)
			c.logs.WriteByte('\n')
			c.mu.Unlock()
			var entry struct{ Msg, Listen string }
			if json.Unmarshal(line, &entry) == nil && entry.Msg == "cloudpod serve is listening" {
				listening <- entry.Listen
			}
		}
		c.done <- c.cmd.Wait()
	}()
	t.Cleanup(func() {
		if c.cmd.ProcessState == nil {
			_ = c.cmd.Process.Kill()
			<-c.done
		}
	})
	select {
	case addr := <-listening:
		c.url = "http://" + addr
	case err := <-c.done:
		t.Fatalf("cloudpod serve exited before listening (%v):\n%s", err, c.log())
	case <-time.After(15 * time.Second):
		t.Fatalf("cloudpod serve did not listen within 15s:\n%s", c.log())
	}
	return c
}

func (c *serveChild) log() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.logs.String()
}

// kill ends the process the hard way: no shutdown, no saving.
func (c *serveChild) kill() {
	c.t.Helper()
	if err := c.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		c.t.Fatal(err)
	}
	var exit *exec.ExitError
	if err := <-c.done; !errors.As(err, &exit) || exit.Sys().(syscall.WaitStatus).Signal() != syscall.SIGKILL {
		c.t.Fatalf("cloudpod serve after SIGKILL: %v", err)
	}
}

// call sends one authenticated request.
func (c *serveChild) call(method, path, body string) (int, []byte) {
	c.t.Helper()
	req, err := http.NewRequest(method, c.url+path, strings.NewReader(body))
	if err != nil {
		c.t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+serveTestToken)
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		c.t.Fatalf("%s %s: %v\n%s", method, path, err, c.log())
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, b
}

// TestServeKilledMidCloneRecovers kills `cloudpod serve` with SIGKILL while
// PVE is cloning the pod, starts it again on the same state directory, and
// checks that the job ends in a definite state with nothing orphaned: one
// CT 9101 (none if the job failed and rolled back), no lock left on the
// template or the pod, the IPAM lease matching the pod, one clone only.
// With vmid and ip left out, the command's own IPAM wiring picks them.
func TestServeKilledMidCloneRecovers(t *testing.T) {
	skipIfShort(t)
	tests := []struct {
		name string
		body string
	}{
		{"vmid and ip given", `{"tenantId":"t-100","vmid":9101,"hostname":"migra-client-01","ip":"10.1.10.91","cores":2,"memoryMb":2048}`},
		{"vmid and ip from IPAM", `{"tenantId":"t-100","hostname":"migra-client-01","cores":2,"memoryMb":2048}`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel() // each has its own simulator; most of the time is the clone's
			killMidClone(t, tt.body)
		})
	}
}

func killMidClone(t *testing.T, body string) {
	dir := t.TempDir()
	const tokenID, secret = "cloudpods@pve!serve", "5e7e0000-4000-8000-8000-00000000beef"
	sim, err := pvesim.Start(context.Background(), pvesim.Config{
		Listen: "127.0.0.1:0", Scale: 1, DataDir: filepath.Join(dir, "sim"), AuthFailDelay: -1,
		Tokens:        []pvesim.Token{{ID: tokenID, Secret: secret}},
		TaskDurations: map[string]time.Duration{"vzclone": 2 * time.Second, "vzstart": 200 * time.Millisecond},
	})
	if err != nil {
		t.Fatal(err)
	}
	defer sim.Close()
	api, err := goproxmox.New(goproxmox.Options{URL: sim.URL(), TokenID: tokenID, TokenSecret: secret,
		HTTP: goproxmox.HTTPOptions{TLS: goproxmox.TLSOptions{Fingerprint: sim.Fingerprint()}, Timeout: 10 * time.Second}})
	if err != nil {
		t.Fatal(err)
	}
	tokenFile, configFile := filepath.Join(dir, "pve.token"), filepath.Join(dir, "cloudpods.env")
	if err := os.WriteFile(tokenFile, []byte(secret), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(configFile, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	stateDir, ipamFile := filepath.Join(dir, "jobs"), filepath.Join(dir, "ipam.json")
	args := []string{"--listen", "127.0.0.1:0", "--auth-file", writeTokens(t), "--state-dir", stateDir,
		"--workers", "2", "--queue-size", "8", "--config", configFile,
		"--pve-url", sim.URL(), "--token-id", tokenID, "--token-file", tokenFile, "--fingerprint", sim.Fingerprint(),
		"--ipam-file", ipamFile, "--audit-log", filepath.Join(dir, "audit.log")}

	first := startServe(t, args)
	status, b := first.call("POST", service.Base, body)
	if status != http.StatusAccepted {
		t.Fatalf("create: %d %s", status, b)
	}
	var accepted struct {
		JobID string
		VMID  int
		IP    string
	}
	if err := json.Unmarshal(b, &accepted); err != nil || accepted.JobID == "" || accepted.VMID != 9101 || accepted.IP != "10.1.10.91" {
		t.Fatalf("202 body %s (%v), want job for CT 9101 at 10.1.10.91", b, err)
	}
	waitFor(t, 10*time.Second, "the clone of CT 9101 to be in progress", func() bool {
		g, ok := sim.Guest(9101)
		return ok && g.Lock == "create"
	})
	first.kill()
	if st := storedStatus(t, stateDir, accepted.JobID); st != "running" {
		t.Fatalf("the job was %q when the service died, want running: the kill was not mid-job", st)
	}

	second := startServe(t, args)
	var job service.Job
	waitFor(t, 30*time.Second, "the job to end", func() bool {
		status, b := second.call("GET", service.Base+"/jobs/"+accepted.JobID, "")
		if status != http.StatusOK || json.Unmarshal(b, &job) != nil {
			t.Fatalf("GET job: %d %s", status, b)
		}
		return job.Status == service.StatusSucceeded || job.Status == service.StatusFailed
	})
	t.Logf("job %s after %d attempts (%s)", job.Status, job.Attempts, job.Note)
	// The restarted service counted its own requests to PVE.
	if status, b := second.call("GET", "/metrics", ""); status != http.StatusOK ||
		!strings.Contains(string(b), `cloudpods_pve_requests_total{method="GET",path="/nodes/{node}/lxc/{vmid}/config",code="200"}`) {
		t.Errorf("metrics (%d) lack PVE request counts:\n%s", status, b)
	}

	guests, err := api.Guests(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	var pods []int
	for _, g := range guests {
		if g.VMID != 9000 {
			pods = append(pods, g.VMID)
		}
		if g.Lock != "" {
			t.Errorf("%s %d is left locked (%s)", g.Type, g.VMID, g.Lock)
		}
	}
	if tpl, ok := sim.Guest(9000); !ok || tpl.Lock != "" {
		t.Errorf("template CT 9000: lock %q (exists %v)", tpl.Lock, ok)
	}
	if n := sim.Requests()["POST /nodes/{node}/lxc/{vmid}/clone"]; n != 1 {
		t.Errorf("%d clone requests, want 1: the re-run must converge on the clone in flight, not make another", n)
	}
	leases := activeLeases(t, ipamFile)
	switch job.Status {
	case service.StatusSucceeded:
		if len(pods) != 1 || pods[0] != 9101 {
			t.Fatalf("guests besides the template: %v, want [9101]", pods)
		}
		g, _ := sim.Guest(9101)
		net0, err := netcfg.ParseNet0(g.Config["net0"])
		if g.Status != "running" || err != nil || net0.IP != "10.1.10.91/24" {
			t.Errorf("CT 9101 is %s with net0 %q", g.Status, g.Config["net0"])
		}
		if m, ok := provisioner.ParseMarker(g.Config["description"]); !ok || m.State != "ready" || m.Tenant != "t-100" {
			t.Errorf("CT 9101 marker %+v (found %v)", m, ok)
		}
		if l := leases[9101]; len(leases) != 1 || l.IP != netip.MustParseAddr("10.1.10.91") || l.State != ipam.StateAssigned || l.Hostname != "migra-client-01" {
			t.Errorf("IPAM leases %+v, want 10.1.10.91 assigned to CT 9101", leases)
		}
		if job.Attempts != 2 {
			t.Errorf("attempts %d, want 2", job.Attempts)
		}
	case service.StatusFailed:
		if len(pods) != 0 || len(leases) != 0 {
			t.Errorf("the job failed (%+v) but left guests %v and leases %+v", job.Error, pods, leases)
		}
	}
}

func waitFor(t *testing.T, within time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(within)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", within, what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// storedStatus reads a job's status from the job store's file, as it was
// left on disk.
func storedStatus(t *testing.T, stateDir, id string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(stateDir, id+".json"))
	if err != nil {
		t.Fatal(err)
	}
	var j struct{ Status string }
	if err := json.Unmarshal(b, &j); err != nil {
		t.Fatal(err)
	}
	return j.Status
}

func activeLeases(t *testing.T, path string) map[int]ipam.Lease {
	t.Helper()
	reg, err := ipam.NewFileStore(path).Load(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	out := map[int]ipam.Lease{}
	for _, l := range reg.Leases {
		if l.Active(time.Now()) {
			if _, dup := out[l.VMID]; dup {
				t.Errorf("VMID %d holds two active leases", l.VMID)
			}
			out[l.VMID] = l
		}
	}
	return out
}
