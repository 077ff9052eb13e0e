package provisioner_test

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/migrahosting/cloudpods/fixtures/pvesim"
	"github.com/migrahosting/cloudpods/ipam"
	"github.com/migrahosting/cloudpods/provisioner"
	"github.com/migrahosting/cloudpods/provisioner/internal/simtest"
	"github.com/migrahosting/cloudpods/provisioner/pve/goproxmox"
)

// The crash tests run creates in child processes (this test binary again,
// in TestChildCreate) against a simulator in the parent, and kill them for
// real. The child is wired the way the CLI is: settings from the CLI's
// environment variables, a file IPAM registry shared by every process, an
// audit log, JSON-lines progress on stdout.

const childEnv = "CLOUDPODS_TEST_CHILD_HOST"

// TestChildCreate is the child process: one `cloudpod create --vmid auto
// --ip auto` of the hostname in $CLOUDPODS_TEST_CHILD_HOST. SIGTERM and
// SIGINT stop it at the next step boundary, as in the CLI.
func TestChildCreate(t *testing.T) {
	host := os.Getenv(childEnv)
	if host == "" {
		t.Skip("a child process of the crash and multi-process tests")
	}
	os.Exit(childCreate(host))
}

func childCreate(host string) int {
	log := logrus.New()
	log.SetOutput(os.Stderr)
	log.SetLevel(logrus.DebugLevel)
	log.SetFormatter(&logrus.JSONFormatter{})
	api, err := goproxmox.New(goproxmox.Options{URL: os.Getenv("PVE_URL"), TokenID: os.Getenv("PVE_TOKEN_ID"), TokenSecret: os.Getenv("PVE_TOKEN_SECRET"),
		Logger: log, HTTP: goproxmox.HTTPOptions{TLS: goproxmox.TLSOptions{Fingerprint: os.Getenv("PVE_FINGERPRINT")}, Timeout: 10 * time.Second, Retries: 3}})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	alloc, err := ipam.New(ipam.NewFileStore(os.Getenv("CLOUDPODS_IPAM_FILE")), ipam.DefaultPool(), ipam.DefaultVMIDs(), provisioner.Inventory{API: api}, ipam.WithLogger(log))
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	audit := &provisioner.AuditLog{Path: os.Getenv("CLOUDPODS_AUDIT_LOG"), Requester: "crash-test", TokenID: os.Getenv("PVE_TOKEN_ID")}
	prov := provisioner.New(api, provisioner.Options{Retry: simtest.FastRetry, TaskTimeout: 30 * time.Second, Addresses: provisioner.IPAM{Allocator: alloc}, Audit: audit, Logger: log})

	stop := make(chan struct{})
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM)
	go func() {
		<-sigs
		close(stop)
	}()
	var mu sync.Mutex
	out := json.NewEncoder(os.Stdout)
	emit := func(v any) {
		mu.Lock()
		defer mu.Unlock()
		_ = out.Encode(v)
	}
	spec := provisioner.DefaultSpec()
	spec.Hostname = host
	res, err := prov.Create(context.Background(), provisioner.CreateRequest{Spec: spec, Stop: stop, Requester: "crash-test",
		Reporter: provisioner.ReporterFunc(func(ev provisioner.Event) {
			emit(struct {
				Type string `json:"type"`
				provisioner.Event
			}{"event", ev})
		})})
	result := childResult{Type: "result", CreateResult: res}
	if err != nil {
		result.Error = err.Error()
	}
	emit(result)
	switch {
	case err == nil:
		return 0
	case errors.Is(err, provisioner.ErrInterrupted):
		return 130
	}
	return 1
}

type childResult struct {
	Type string `json:"type"`
	provisioner.CreateResult
	Error string `json:"error,omitempty"`
}

// child is one child create process.
type child struct {
	cmd    *exec.Cmd
	stdout io.ReadCloser
	stderr strings.Builder
	events []provisioner.Event
	result childResult
}

func (e *podEnv) childEnv(auditLog, host string) []string {
	return append(os.Environ(),
		childEnv+"="+host,
		"PVE_URL="+e.sim.URL(),
		"PVE_TOKEN_ID="+simtest.TokenID,
		"PVE_TOKEN_SECRET="+simtest.TokenSecret,
		"PVE_FINGERPRINT="+e.sim.Fingerprint(),
		"CLOUDPODS_IPAM_FILE="+e.ipamPath,
		"CLOUDPODS_AUDIT_LOG="+auditLog,
	)
}

func startChild(t *testing.T, env []string) *child {
	t.Helper()
	c := &child{cmd: exec.Command(os.Args[0], "-test.run=^TestChildCreate$", "-test.count=1")}
	c.cmd.Env = env
	c.cmd.Stderr = &lockedWriter{b: &c.stderr}
	var err error
	if c.stdout, err = c.cmd.StdoutPipe(); err != nil {
		t.Fatal(err)
	}
	if err := c.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.cmd.Process.Kill() })
	return c
}

type lockedWriter struct {
	mu sync.Mutex
	b  *strings.Builder
}

func (w *lockedWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.b.Write(p)
}

// follow reads the child's progress; at reports whether to stop reading
// (and the caller to act) after an event.
func (c *child) follow(t *testing.T, at func(provisioner.Event) bool) bool {
	t.Helper()
	sc := bufio.NewScanner(c.stdout)
	for sc.Scan() {
		var line struct {
			Type string `json:"type"`
		}
		if err := json.Unmarshal(sc.Bytes(), &line); err != nil {
			t.Fatalf("child printed %q: %v", sc.Text(), err)
		}
		switch line.Type {
		case "event":
			var ev provisioner.Event
			_ = json.Unmarshal(sc.Bytes(), &ev)
			c.events = append(c.events, ev)
			if at != nil && at(ev) {
				return true
			}
		case "result":
			_ = json.Unmarshal(sc.Bytes(), &c.result)
		}
	}
	return false
}

// finish reads the rest of the child's output and its exit status.
func (c *child) finish(t *testing.T) int {
	t.Helper()
	c.follow(t, nil)
	err := c.cmd.Wait()
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		if ws, ok := ee.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
			return -int(ws.Signal())
		}
		return ee.ExitCode()
	}
	if err != nil {
		t.Fatalf("child: %v", err)
	}
	return 0
}

// crashSteps are the steps a child is killed in, and the request that
// shows the step's action is under way (the kill then lands while PVE
// works on it); "" kills as soon as the step starts.
var crashSteps = []struct {
	step    string
	request string
}{
	{provisioner.StepValidate, ""},
	{provisioner.StepPreflight, ""},
	{provisioner.StepReserve, ""},
	{provisioner.StepClone, "POST /nodes/{node}/lxc/{vmid}/clone"},
	{provisioner.StepConfigure, "PUT /nodes/{node}/lxc/{vmid}/config"},
	{provisioner.StepClaim, "GET /cluster/resources"},
	{provisioner.StepStart, "POST /nodes/{node}/lxc/{vmid}/status/start"},
	{provisioner.StepNetwork, "POST /nodes/{node}/lxc/{vmid}/termproxy"},
	{provisioner.StepVerify, ""},
	{provisioner.StepFinalize, ""},
}

// crashEnv is a simulator whose tasks take long enough (a 300 ms clone) for
// a kill to land while one runs.
func crashEnv(t *testing.T) *podEnv {
	return startPodEnv(t, envOptions{mutate: func(c *pvesim.Config) { c.Scale = 0.1 }})
}

func TestKill9AtEachStepConverges(t *testing.T) {
	for _, cs := range crashSteps {
		t.Run(cs.step, func(t *testing.T) {
			t.Parallel()
			env := crashEnv(t)
			audit := filepath.Join(t.TempDir(), "audit.log")
			procEnv := env.childEnv(audit, "migra-client-01")
			first := startChild(t, procEnv)
			killed := first.follow(t, func(ev provisioner.Event) bool {
				if ev.Step != cs.step || ev.Phase != provisioner.PhaseStart {
					return false
				}
				if cs.request != "" {
					waitForRequest(t, env.sim, cs.request)
				}
				if err := first.cmd.Process.Signal(syscall.SIGKILL); err != nil {
					t.Fatal(err)
				}
				return true
			})
			if !killed {
				t.Fatalf("the child never entered step %s: %s", cs.step, first.stderr.String())
			}
			if code := first.finish(t); code != -int(syscall.SIGKILL) {
				t.Fatalf("first run ended with %d, want killed by SIGKILL", code)
			}

			second := startChild(t, procEnv)
			if code := second.finish(t); code != 0 {
				t.Fatalf("re-run exited %d: %s\n%s", code, second.result.Error, second.stderr.String())
			}
			env.checkOnePod(t, "migra-client-01", second.result)
			t.Logf("killed in %s; the re-run: %s", cs.step, summary(second.events))
		})
	}
}

// summary lists what a run found already done or had to redo.
func summary(evs []provisioner.Event) string {
	var out []string
	for _, ev := range evs {
		if ev.Phase == provisioner.PhaseSkip || ev.Phase == provisioner.PhaseInfo {
			out = append(out, fmt.Sprintf("%s %s (%s)", ev.Step, ev.Phase, ev.Message))
		}
	}
	return strings.Join(out, "; ")
}

// waitForRequest waits until the simulator has seen a request, so a kill
// lands while PVE acts on it.
func waitForRequest(t *testing.T, sim *pvesim.Sim, key string) {
	deadline := time.Now().Add(10 * time.Second)
	for sim.Requests()[key] == 0 {
		if time.Now().After(deadline) {
			t.Errorf("the child never sent %s", key)
			return
		}
		time.Sleep(time.Millisecond)
	}
}

// checkOnePod asserts exactly one pod of hostname, correct, at the result's
// VMID and IP, and a registry holding exactly its lease.
func (e *podEnv) checkOnePod(t *testing.T, hostname string, res childResult) {
	t.Helper()
	var pods []int
	for id := 100; id < 10000; id++ {
		if g, ok := e.sim.Guest(id); ok && g.Config["hostname"] == hostname {
			pods = append(pods, id)
		}
	}
	if len(pods) != 1 || pods[0] != res.VMID {
		t.Fatalf("pods named %s: %v, want exactly CT %d", hostname, pods, res.VMID)
	}
	e.checkOneOf(t, hostname, res)
	if ls := e.activeLeases(t); len(ls) != 1 {
		t.Errorf("active leases %+v, want exactly the pod's", ls)
	}
}

// parseIP reads a result's address, "10.1.10.91/24".
func parseIP(t testing.TB, s string) netip.Addr {
	t.Helper()
	p, err := netip.ParsePrefix(s)
	if err != nil {
		t.Fatalf("result IP %q: %v", s, err)
	}
	return p.Addr()
}

func keys(m map[int]string) []int {
	out := make([]int, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}

// TestSigtermStopsAtAStepBoundary: SIGTERM lets the step in flight finish,
// stops before the next, exits 130 and says what it left; the same command
// then finishes the pod.
func TestSigtermStopsAtAStepBoundary(t *testing.T) {
	env := crashEnv(t)
	procEnv := env.childEnv(filepath.Join(t.TempDir(), "audit.log"), "migra-client-01")
	first := startChild(t, procEnv)
	first.follow(t, func(ev provisioner.Event) bool {
		if ev.Step == provisioner.StepStart && ev.Phase == provisioner.PhaseStart {
			_ = first.cmd.Process.Signal(syscall.SIGTERM)
			return true
		}
		return false
	})
	if code := first.finish(t); code != 130 {
		t.Fatalf("exit %d (%s), want 130", code, first.result.Error)
	}
	last := first.events[len(first.events)-1]
	if last.Step != provisioner.StepStart || last.Phase != provisioner.PhaseDone {
		t.Errorf("last event %+v, want the start step finished before stopping", last)
	}
	if !strings.Contains(first.result.Error, "stopped on request before step network") || !strings.Contains(first.result.Error, "run the same command again") {
		t.Errorf("error %q does not say where it stopped and what to do", first.result.Error)
	}
	second := startChild(t, procEnv)
	if code := second.finish(t); code != 0 {
		t.Fatalf("re-run exited %d: %s", code, second.result.Error)
	}
	env.checkOnePod(t, "migra-client-01", second.result)
}
