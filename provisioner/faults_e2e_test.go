package provisioner_test

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sirupsen/logrus"
	logtest "github.com/sirupsen/logrus/hooks/test"

	"github.com/migrahosting/cloudpods/fixtures/pvesim"
	"github.com/migrahosting/cloudpods/ipam"
	"github.com/migrahosting/cloudpods/netcfg"
	"github.com/migrahosting/cloudpods/provisioner"
	"github.com/migrahosting/cloudpods/provisioner/internal/simtest"
	"github.com/migrahosting/cloudpods/provisioner/pve"
	"github.com/migrahosting/cloudpods/provisioner/pve/goproxmox"
)

var update = flag.Bool("update", false, "rewrite docs/fault-matrix.md from the fault-matrix test")

// podEnv is a simulator, a client for it with its own HTTP timeout, and an
// IPAM registry file: everything one create needs, and what its tests
// inspect afterwards.
type podEnv struct {
	sim      *pvesim.Sim
	api      *goproxmox.Client
	ipamPath string
	// simLog hears the simulator's "injecting fault" lines, clientLog the
	// transport's retries.
	simLog    *logtest.Hook
	clientLog *logtest.Hook
}

type envOptions struct {
	httpTimeout time.Duration
	mutate      func(*pvesim.Config)
}

func startPodEnv(t *testing.T, o envOptions) *podEnv {
	t.Helper()
	logger, hook := logtest.NewNullLogger()
	logger.SetLevel(logrus.InfoLevel)
	env := simtest.Start(t, func(c *pvesim.Config) {
		c.Logger = logger
		if o.mutate != nil {
			o.mutate(c)
		}
	})
	if o.httpTimeout == 0 {
		o.httpTimeout = 10 * time.Second
	}
	clientLogger, clientHook := logtest.NewNullLogger()
	clientLogger.SetLevel(logrus.DebugLevel)
	api, err := goproxmox.New(goproxmox.Options{URL: env.Sim.URL(), TokenID: simtest.TokenID, TokenSecret: simtest.TokenSecret, Logger: clientLogger,
		HTTP: goproxmox.HTTPOptions{TLS: goproxmox.TLSOptions{Fingerprint: env.Sim.Fingerprint()}, Timeout: o.httpTimeout, Retries: 2}})
	if err != nil {
		t.Fatal(err)
	}
	return &podEnv{sim: env.Sim, api: api, ipamPath: filepath.Join(t.TempDir(), "ipam.json"), simLog: hook, clientLog: clientHook}
}

// allocator is an IPAM allocator over the env's registry file, as the CLI
// builds one (each process, or test "process", has its own).
func (e *podEnv) allocator(t testing.TB, api pve.API) *ipam.Allocator {
	t.Helper()
	a, err := ipam.New(ipam.NewFileStore(e.ipamPath), ipam.DefaultPool(), ipam.DefaultVMIDs(), provisioner.Inventory{API: api})
	if err != nil {
		t.Fatal(err)
	}
	return a
}

func (e *podEnv) provisioner(t testing.TB, api pve.API, opts provisioner.Options) *provisioner.Provisioner {
	opts.Addresses = provisioner.IPAM{Allocator: e.allocator(t, api)}
	return simtest.Provisioner(api, opts)
}

// faultsInjected counts the simulator's injected faults.
func (e *podEnv) faultsInjected() int {
	n := 0
	for _, entry := range e.simLog.AllEntries() {
		if entry.Message == "pvesim: injecting fault" {
			n++
		}
	}
	return n
}

// transportRetries counts the requests the transport repeated.
func (e *podEnv) transportRetries() int {
	n := 0
	for _, entry := range e.clientLog.AllEntries() {
		if entry.Message == "retrying request" {
			n++
		}
	}
	return n
}

// activeLeases lists the registry's leases that hold an address or VMID.
func (e *podEnv) activeLeases(t testing.TB) []ipam.Lease {
	t.Helper()
	ls, err := e.allocator(t, e.api).List(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	var out []ipam.Lease
	for _, l := range ls {
		if l.Active(time.Now()) {
			out = append(out, l)
		}
	}
	return out
}

// checkPod asserts one correct pod: running, unlocked, net0 and the netplan
// file in the pod rendered from the spec, marker ready, lease assigned,
// the template unlocked, and no other new guest.
func (e *podEnv) checkPod(t testing.TB, spec provisioner.Spec) {
	t.Helper()
	g, ok := e.sim.Guest(spec.VMID)
	if !ok {
		t.Fatalf("CT %d does not exist", spec.VMID)
	}
	if g.Status != "running" || g.Lock != "" {
		t.Errorf("CT %d is %s with lock %q", spec.VMID, g.Status, g.Lock)
	}
	n, err := netcfg.ParseNet0(g.Config["net0"])
	if err != nil || n.IP != spec.Address().String() || n.GW != spec.Gateway.String() {
		t.Errorf("CT %d net0 = %q (%v), want ip %s", spec.VMID, g.Config["net0"], err, spec.Address())
	}
	if m, ok := provisioner.ParseMarker(g.Config["description"]); !ok || m.State != "ready" || m.VMID != spec.VMID {
		t.Errorf("CT %d marker = %+v, %v; want ready", spec.VMID, m, ok)
	}
	want, _ := netcfg.RenderNetplan(netcfg.Spec{Interface: "eth0", Bridge: spec.Bridge, Address: spec.Address(), Gateway: spec.Gateway,
		Nameservers: spec.DNS, HWAddr: n.HWAddr})
	if got, err := os.ReadFile(filepath.Join(e.sim.RootDir(spec.VMID), netcfg.NetplanPath)); err != nil || string(got) != string(want) {
		t.Errorf("CT %d netplan = %q (%v), want %q", spec.VMID, got, err, want)
	}
	if tpl, _ := e.sim.Guest(spec.Template); tpl.Lock != "" {
		t.Errorf("template %d left locked (%s)", spec.Template, tpl.Lock)
	}
	var found bool
	for _, l := range e.activeLeases(t) {
		if l.Hostname == spec.Hostname {
			if found || l.VMID != spec.VMID || l.IP != spec.IP || l.State != ipam.StateAssigned {
				t.Errorf("lease %+v for %s, want one assigned lease %s VMID %d", l, spec.Hostname, spec.IP, spec.VMID)
			}
			found = true
		}
	}
	if !found {
		t.Errorf("no IPAM lease for %s", spec.Hostname)
	}
}

// checkNothingLeft asserts a clean failure: no CT at the VMID, no new
// guest, the template unlocked, no active IPAM lease.
func (e *podEnv) checkNothingLeft(t testing.TB, spec provisioner.Spec, guestsBefore string) {
	t.Helper()
	if g, ok := e.sim.Guest(spec.VMID); ok {
		t.Errorf("CT %d left behind (status %s, lock %q)", spec.VMID, g.Status, g.Lock)
	}
	if after := simGuestIDs(e.sim); after != guestsBefore {
		t.Errorf("guests went from %s to %s", guestsBefore, after)
	}
	if tpl, _ := e.sim.Guest(spec.Template); tpl.Lock != "" {
		t.Errorf("template %d left locked (%s)", spec.Template, tpl.Lock)
	}
	if ls := e.activeLeases(t); len(ls) > 0 {
		t.Errorf("IPAM still holds %+v", ls)
	}
}

func simGuestIDs(sim *pvesim.Sim) string {
	var ids []string
	for id := 100; id < 10000; id++ {
		if _, ok := sim.Guest(id); ok {
			ids = append(ids, fmt.Sprint(id))
		}
	}
	return strings.Join(ids, ",")
}

// transcript collects progress for the matrix's details.
type transcript struct {
	mu    sync.Mutex
	lines []string
}

func (tr *transcript) Report(ev provisioner.Event) {
	tr.mu.Lock()
	defer tr.mu.Unlock()
	if ev.Phase == provisioner.PhaseInfo || ev.Phase == provisioner.PhaseFail || ev.Phase == provisioner.PhaseWarn || ev.Step == "rollback" {
		tr.lines = append(tr.lines, fmt.Sprintf("%s %s: %s", ev.Step, ev.Phase, ev.Message))
	}
}

func (tr *transcript) retried() bool {
	tr.mu.Lock()
	defer tr.mu.Unlock()
	for _, l := range tr.lines {
		if strings.Contains(l, "retrying in") {
			return true
		}
	}
	return false
}

// consoleFaults wraps the API so the console stream itself can fail: the
// connection dropping under a command, or the output stopping. Both fire
// once, on the nth byte sent to any console.
type consoleFaults struct {
	pve.API
	kind string // "drop" | "slow"
	nth  int

	mu     sync.Mutex
	writes int
	fired  bool
}

func (c *consoleFaults) OpenTerminal(ctx context.Context, g pve.GuestRef) (pve.Terminal, error) {
	term, err := c.API.OpenTerminal(ctx, g)
	if err != nil {
		return nil, err
	}
	return &faultyTerminal{Terminal: term, c: c, closed: make(chan struct{})}, nil
}

func (c *consoleFaults) hasFired() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.fired
}

type faultyTerminal struct {
	pve.Terminal
	c         *consoleFaults
	mu        sync.Mutex
	stalled   bool
	closed    chan struct{}
	closeOnce sync.Once
}

func (f *faultyTerminal) Write(p []byte) (int, error) {
	f.c.mu.Lock()
	f.c.writes++
	fire := !f.c.fired && f.c.writes == f.c.nth
	if fire {
		f.c.fired = true
	}
	f.c.mu.Unlock()
	if !fire {
		return f.Terminal.Write(p)
	}
	if f.c.kind == "drop" {
		// The command goes out, then the connection dies under it.
		n, _ := f.Terminal.Write(p)
		f.Terminal.Close()
		return n, nil
	}
	f.mu.Lock()
	f.stalled = true
	f.mu.Unlock()
	return f.Terminal.Write(p)
}

func (f *faultyTerminal) Read(p []byte) (int, error) {
	n, err := f.Terminal.Read(p)
	f.mu.Lock()
	stalled := f.stalled
	f.mu.Unlock()
	if stalled {
		<-f.closed
		return 0, io.EOF
	}
	return n, err
}

func (f *faultyTerminal) Close() error {
	f.closeOnce.Do(func() { close(f.closed) })
	return f.Terminal.Close()
}

// The fault matrix: every step of create × every fault.

type matrixFault struct {
	name string // column heading
	kind pvesim.FaultKind
	// after: PVE acts, then the answer is lost.
	after bool
}

var (
	fault500      = matrixFault{name: "500 with message", kind: pvesim.Fault500}
	fault596After = matrixFault{name: "596 empty body (after acting)", kind: pvesim.Fault596, after: true}
	faultDrop     = matrixFault{name: "dropped connection", kind: pvesim.FaultDrop}
	faultSlow     = matrixFault{name: "slow past the timeout", kind: pvesim.FaultSlow}
	faultLock     = matrixFault{name: "lock error", kind: pvesim.FaultLock}
	faultTask     = matrixFault{name: "task ends in error", kind: pvesim.FaultTaskFail}
	// The long run adds the other halves of 596 and drop.
	fault596Before = matrixFault{name: "596 (before acting)", kind: pvesim.Fault596}
	faultDropAfter = matrixFault{name: "dropped (after acting)", kind: pvesim.FaultDrop, after: true}
)

// matrixStep is one row: the request a fault hits for that step of create.
type matrixStep struct {
	name   string
	method string
	path   string
	// exec: the fault is in the console stream, not an HTTP request.
	exec bool
	// taskFault replaces the fault for the kinds that hit a task: a task
	// row's lock and task-error cells end the task the POST started.
	taskFault map[pvesim.FaultKind]pvesim.Fault
	na        map[pvesim.FaultKind]string
}

const (
	okAfterRetry = "ok after retry"
	cleanFailure = "clean failure, nothing left"
)

var (
	naNoTask      = "no task: the call answers synchronously"
	naTaskRow     = "the POST answers; its task failing is the task row"
	naConsoleByte = "the console is a byte stream: no HTTP status, lock or task inside it"
	vzcloneStatus = `^/nodes/pve/tasks/UPID:[^/]*:vzclone:[^/]*/status$`
	vzstartStatus = `^/nodes/pve/tasks/UPID:[^/]*:vzstart:[^/]*/status$`
)

var matrixSteps = []matrixStep{
	{name: "preflight", method: "GET", path: "/access/permissions", na: map[pvesim.FaultKind]string{pvesim.FaultTaskFail: naNoTask}},
	{name: "clone", method: "POST", path: "/nodes/pve/lxc/9000/clone", na: map[pvesim.FaultKind]string{pvesim.FaultTaskFail: naTaskRow}},
	{name: "clone task", method: "GET", path: vzcloneStatus, taskFault: map[pvesim.FaultKind]pvesim.Fault{
		pvesim.FaultLock:     {Method: "POST", Path: "/nodes/pve/lxc/9000/clone", Nth: 1, Times: 2, Kind: pvesim.FaultTaskFail, Message: "clone failed: cfs-lock 'storage-clients-main' error: got lock request timeout"},
		pvesim.FaultTaskFail: {Method: "POST", Path: "/nodes/pve/lxc/9000/clone", Nth: 1, Kind: pvesim.FaultTaskFail, Message: "clone failed: error with cfs lock 'storage-clients-main': zfs error: out of space"},
	}},
	{name: "config", method: "PUT", path: "/nodes/pve/lxc/9101/config", na: map[pvesim.FaultKind]string{pvesim.FaultTaskFail: naNoTask}},
	{name: "start", method: "POST", path: "/nodes/pve/lxc/9101/status/start", na: map[pvesim.FaultKind]string{pvesim.FaultTaskFail: naTaskRow}},
	{name: "start task", method: "GET", path: vzstartStatus, taskFault: map[pvesim.FaultKind]pvesim.Fault{
		pvesim.FaultLock:     {Method: "POST", Path: "/nodes/pve/lxc/9101/status/start", Nth: 1, Times: 2, Kind: pvesim.FaultTaskFail, Message: "CT is locked (create)"},
		pvesim.FaultTaskFail: {Method: "POST", Path: "/nodes/pve/lxc/9101/status/start", Nth: 1, Kind: pvesim.FaultTaskFail, Message: "startup for container '9101' failed"},
	}},
	{name: "termproxy", method: "POST", path: "/nodes/pve/lxc/9101/termproxy", na: map[pvesim.FaultKind]string{
		pvesim.FaultTaskFail: "termproxy's task ends when the console closes; nothing waits on it"}},
	{name: "websocket", method: "GET", path: "/nodes/pve/lxc/9101/vncwebsocket", na: map[pvesim.FaultKind]string{pvesim.FaultTaskFail: naNoTask}},
	{name: "exec", exec: true, na: map[pvesim.FaultKind]string{pvesim.Fault500: naConsoleByte, pvesim.Fault596: naConsoleByte,
		pvesim.FaultLock: naConsoleByte, pvesim.FaultTaskFail: naConsoleByte}},
	{name: "verify", method: "GET", path: "/nodes/pve/lxc/9101/interfaces", na: map[pvesim.FaultKind]string{pvesim.FaultTaskFail: naNoTask}},
}

// cellResult is one cell of the matrix.
type cellResult struct {
	outcome string // okAfterRetry, cleanFailure, or "n/a: why"
	detail  string
}

// matrixTimeout is the HTTP timeout of the slow cells; the fault waits
// three times as long.
const matrixTimeout = time.Second

func TestFaultMatrix(t *testing.T) {
	faults := []matrixFault{fault500, fault596After, faultDrop, faultSlow, faultLock, faultTask, fault596Before, faultDropAfter}
	results := make([][]cellResult, len(matrixSteps))
	sem := make(chan struct{}, 6)
	var wg sync.WaitGroup
	for i, step := range matrixSteps {
		results[i] = make([]cellResult, len(faults))
		for j, f := range faults {
			if why, ok := step.na[f.kind]; ok {
				results[i][j] = cellResult{outcome: "n/a: " + why}
				continue
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				sem <- struct{}{}
				defer func() { <-sem }()
				t.Run(step.name+"/"+f.name, func(t *testing.T) {
					results[i][j] = runCell(t, step, f)
				})
			}()
		}
	}
	wg.Wait()
	table := matrixMarkdown(faults, results)
	t.Log("\n" + table)
	doc := filepath.Join("..", "docs", "fault-matrix.md")
	if *update {
		if err := os.WriteFile(doc, []byte(table), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	if t.Failed() || !matrixComplete(results) {
		return // a failed or skipped cell (-short) found nothing to compare
	}
	checkMatrixPublished(t, table, doc, filepath.Join("..", "README.md"))
}

// matrixComplete says whether every cell ran to an outcome.
func matrixComplete(results [][]cellResult) bool {
	for _, row := range results {
		for _, c := range row {
			if c.outcome == "" {
				return false
			}
		}
	}
	return true
}

// checkMatrixPublished fails when the table in docs/fault-matrix.md or
// README's copy of it says other than this run found: both are claims this
// test holds. Only the table rows are compared; the per-cell details carry
// retry delays and ports that differ from run to run.
func checkMatrixPublished(t *testing.T, table string, files ...string) {
	t.Helper()
	for _, file := range files {
		text, err := os.ReadFile(file)
		if err != nil {
			t.Fatal(err)
		}
		for _, line := range strings.Split(table, "\n") {
			if strings.HasPrefix(line, "| ") && !strings.Contains(string(text), line+"\n") {
				t.Errorf("%s lacks this run's fault-matrix row %q; rewrite docs/fault-matrix.md with -update and copy its table to README", file, line)
			}
		}
	}
}

// runCell creates CT 9101 with one fault armed, classifies the outcome,
// checks it is one of the two acceptable ones, then runs the same create
// again without the fault and checks it converges on one correct pod.
func runCell(t *testing.T, step matrixStep, f matrixFault) cellResult {
	o := envOptions{}
	if f.kind == pvesim.FaultSlow {
		o.httpTimeout = matrixTimeout
	}
	env := startPodEnv(t, o)
	var api pve.API = env.api
	var console *consoleFaults
	opts := provisioner.Options{}
	switch {
	case step.exec:
		// The third line typed is inside the netplan write.
		console = &consoleFaults{API: env.api, kind: map[pvesim.FaultKind]string{pvesim.FaultDrop: "drop", pvesim.FaultSlow: "slow"}[f.kind], nth: 3}
		if console.kind == "" {
			t.Fatalf("no console fault for %s", f.kind)
		}
		api = console
		opts.ExecTimeout = 2 * time.Second
	case step.taskFault[f.kind].Kind != "":
		must(t, env.sim.AddFault(step.taskFault[f.kind]))
	default:
		fault := pvesim.Fault{Method: step.method, Path: step.path, Nth: 1, Kind: f.kind, After: f.after}
		switch f.kind {
		case pvesim.Fault500:
			fault.Message = "injected: unexpected error in " + step.name
		case pvesim.FaultSlow:
			fault.Delay = 3 * matrixTimeout
		case pvesim.FaultLock:
			fault.Times = 3 // waited out with backoff, not just once
		}
		must(t, env.sim.AddFault(fault))
	}
	spec := seedSpec(9101, "migra-client-01", 91)
	before := simGuestIDs(env.sim)
	prov := env.provisioner(t, api, opts)
	var tr transcript
	_, err := prov.Create(context.Background(), provisioner.CreateRequest{Spec: spec, Reporter: &tr})

	fired := env.faultsInjected() > 0
	if console != nil {
		fired = console.hasFired()
	}
	if !fired {
		t.Fatalf("the fault never fired (err %v)", err)
	}
	var res cellResult
	if err == nil {
		env.checkPod(t, spec)
		res.outcome = okAfterRetry
		res.detail = strings.Join(tr.lines, "; ")
		switch {
		case tr.retried():
		case env.transportRetries() > 0:
			res.detail = "the transport repeated the read; " + res.detail
		case step.method == "GET":
			res.detail = "the read was repeated below the retry policy (Go's HTTP client re-sends a read whose reused connection dropped; verify polls until its deadline); " + res.detail
		default:
			res.detail = "the already-done check found the action done, nothing repeated; " + res.detail
		}
	} else {
		env.checkNothingLeft(t, spec, before)
		res.outcome = cleanFailure
		res.detail = err.Error()
		var se *provisioner.StepError
		if !errors.As(err, &se) || se.RolledBack == "" {
			t.Errorf("error %v does not say what it left", err)
		}
	}
	if t.Failed() {
		res.outcome = "FAILED: " + res.outcome
	}

	env.sim.ClearFaults()
	res2, err := env.provisioner(t, env.api, provisioner.Options{}).Create(context.Background(), provisioner.CreateRequest{Spec: spec})
	if err != nil {
		t.Fatalf("re-run without the fault: %v", err)
	}
	env.checkPod(t, spec)
	if res.outcome == okAfterRetry && res2.Changed {
		t.Errorf("re-run after a success changed something")
	}
	return res
}

// matrixMarkdown renders the matrix and, under it, what happened in each
// cell.
func matrixMarkdown(faults []matrixFault, results [][]cellResult) string {
	var b strings.Builder
	b.WriteString("# Fault matrix\n\n")
	b.WriteString("Generated by `go test ./provisioner -run TestFaultMatrix -update`.\n")
	b.WriteString("Each cell creates CT 9101 against pvesim with one fault armed on the request of that step, then runs the same\n")
	b.WriteString("command again without the fault. A cell passes when the create either succeeds after retrying or reconciling\n")
	b.WriteString("(\"" + okAfterRetry + "\") or fails leaving no CT, no PVE lock and no IPAM reservation (\"" + cleanFailure + "\"),\n")
	b.WriteString("and the re-run then converges on one correct pod. See docs/retry-policy.md for why each outcome is what it is.\n\n")
	b.WriteString("| step |")
	for _, f := range faults {
		b.WriteString(" " + f.name + " |")
	}
	b.WriteString("\n|---|")
	for range faults {
		b.WriteString("---|")
	}
	b.WriteString("\n")
	notes := map[string]int{}
	var noteOrder []string
	for i, step := range matrixSteps {
		fmt.Fprintf(&b, "| %s |", step.name)
		for j := range faults {
			c := results[i][j]
			if why, ok := strings.CutPrefix(c.outcome, "n/a: "); ok {
				n, seen := notes[why]
				if !seen {
					n = len(notes) + 1
					notes[why] = n
					noteOrder = append(noteOrder, why)
				}
				fmt.Fprintf(&b, " n/a [%d] |", n)
				continue
			}
			fmt.Fprintf(&b, " %s |", c.outcome)
		}
		b.WriteString("\n")
	}
	b.WriteString("\n")
	for _, why := range noteOrder {
		fmt.Fprintf(&b, "[%d] %s.  \n", notes[why], why)
	}
	b.WriteString("\n## What happened in each cell\n\n")
	for i, step := range matrixSteps {
		for j, f := range faults {
			c := results[i][j]
			if strings.HasPrefix(c.outcome, "n/a") {
				continue
			}
			fmt.Fprintf(&b, "- **%s × %s**: %s — %s\n", step.name, f.name, c.outcome, oneLine(c.detail))
		}
	}
	return b.String()
}

var spaces = regexp.MustCompile(`\s+`)

// oneLine keeps a detail readable in a list item: one line, UPIDs and
// markers shortened, long texts cut.
func oneLine(s string) string {
	s = spaces.ReplaceAllString(s, " ")
	s = regexp.MustCompile(`UPID:[^ :]*(:[^ :]*){6,7}:`).ReplaceAllString(s, "UPID:…")
	s = regexp.MustCompile(`run [0-9a-f]{16}`).ReplaceAllString(s, "run …")
	if len(s) > 600 {
		s = s[:600] + "…"
	}
	return strings.ReplaceAll(s, "|", "\\|")
}

// TestKeepOnFailureMarksThePodFailed: with KeepOnFailure a failure after
// the clone leaves the CT, clearly marked, and its reservation.
func TestKeepOnFailureMarksThePodFailed(t *testing.T) {
	env := startPodEnv(t, envOptions{})
	must(t, env.sim.AddFault(pvesim.Fault{Method: "POST", Path: "/nodes/pve/lxc/9101/status/start", Kind: pvesim.FaultTaskFail, Message: "startup for container '9101' failed"}))
	spec := seedSpec(9101, "migra-client-01", 91)
	_, err := env.provisioner(t, env.api, provisioner.Options{}).Create(context.Background(), provisioner.CreateRequest{Spec: spec, KeepOnFailure: true})
	var se *provisioner.StepError
	if !errors.As(err, &se) || se.Step != provisioner.StepStart || !strings.Contains(se.RolledBack, "marked failed") {
		t.Fatalf("err = %v, want a start failure that kept the CT marked failed", err)
	}
	g, ok := env.sim.Guest(9101)
	if !ok {
		t.Fatal("CT 9101 was not kept")
	}
	m, _ := provisioner.ParseMarker(g.Config["description"])
	if m.State != "failed" || !strings.Contains(g.Config["tags"], "cloudpod-failed") || !strings.Contains(g.Config["description"], "failed at start") {
		t.Errorf("kept CT: marker %+v, tags %q, description %q", m, g.Config["tags"], g.Config["description"])
	}
	if ls := env.activeLeases(t); len(ls) != 1 || ls[0].VMID != 9101 {
		t.Errorf("leases = %+v, want the kept CT's reservation", ls)
	}
	// The same command again finishes the kept pod.
	env.sim.ClearFaults()
	if _, err := env.provisioner(t, env.api, provisioner.Options{}).Create(context.Background(), provisioner.CreateRequest{Spec: spec}); err != nil {
		t.Fatalf("re-run: %v", err)
	}
	env.checkPod(t, spec)
	if g, _ := env.sim.Guest(9101); strings.Contains(g.Config["tags"], "cloudpod-failed") {
		t.Errorf("tags still say failed: %q", g.Config["tags"])
	}
}

// TestTimeoutsApplySeparately: the HTTP timeout bounds each request, the
// task timeout each task wait, and neither stands in for the other.
func TestTimeoutsApplySeparately(t *testing.T) {
	t.Run("a task may outlast the HTTP timeout", func(t *testing.T) {
		env := startPodEnv(t, envOptions{httpTimeout: 300 * time.Millisecond, mutate: func(c *pvesim.Config) {
			c.TaskDurations = map[string]time.Duration{"vzclone": 100 * time.Second} // ×0.01: a 1 s clone
		}})
		spec := seedSpec(9101, "migra-client-01", 91)
		if _, err := env.provisioner(t, env.api, provisioner.Options{}).Create(context.Background(), provisioner.CreateRequest{Spec: spec}); err != nil {
			t.Fatalf("create: %v", err)
		}
		env.checkPod(t, spec)
	})
	t.Run("the HTTP timeout ends a silent request", func(t *testing.T) {
		env := startPodEnv(t, envOptions{httpTimeout: 300 * time.Millisecond})
		// Every attempt the transport makes (1 + 2 retries) is slow.
		must(t, env.sim.AddFault(pvesim.Fault{Method: "GET", Path: "/access/permissions", Kind: pvesim.FaultSlow, Delay: time.Second}))
		spec := seedSpec(9101, "migra-client-01", 91)
		before := simGuestIDs(env.sim)
		_, err := env.provisioner(t, env.api, provisioner.Options{}).Create(context.Background(), provisioner.CreateRequest{Spec: spec})
		var te *pve.TransportError
		if !errors.As(err, &te) || !errors.Is(err, pve.ErrMaybeApplied) || !strings.Contains(err.Error(), "Client.Timeout") {
			t.Fatalf("err = %v, want a transport timeout", err)
		}
		env.checkNothingLeft(t, spec, before)
	})
	t.Run("the task timeout ends a long task wait and rolls back", func(t *testing.T) {
		env := startPodEnv(t, envOptions{mutate: func(c *pvesim.Config) {
			c.TaskDurations = map[string]time.Duration{"vzclone": 100 * time.Second}
		}})
		spec := seedSpec(9101, "migra-client-01", 91)
		before := simGuestIDs(env.sim)
		_, err := env.provisioner(t, env.api, provisioner.Options{TaskTimeout: 200 * time.Millisecond}).Create(context.Background(), provisioner.CreateRequest{Spec: spec})
		var se *provisioner.StepError
		if !errors.Is(err, pve.ErrWaitTimeout) || !errors.As(err, &se) || se.Step != provisioner.StepClone || !strings.Contains(se.RolledBack, "destroyed") {
			t.Fatalf("err = %v, want a clone wait timeout, rolled back", err)
		}
		env.checkNothingLeft(t, spec, before)
	})
}

// TestStopAtStepBoundarySaysWhatIsLeft: Stop (SIGINT/SIGTERM) ends the run
// between steps; the error names the state, and the same command finishes.
func TestStopAtStepBoundarySaysWhatIsLeft(t *testing.T) {
	for _, tt := range []struct {
		stopAt string // the step whose start closes Stop
		left   string
		leases int
	}{
		{stopAt: provisioner.StepPreflight, left: "nothing was created", leases: 0},
		{stopAt: provisioner.StepStart, left: "CT 9101 exists, partly provisioned", leases: 1},
	} {
		t.Run(tt.stopAt, func(t *testing.T) {
			env := startPodEnv(t, envOptions{})
			spec := seedSpec(9101, "migra-client-01", 91)
			stop := make(chan struct{})
			var once sync.Once
			rep := provisioner.ReporterFunc(func(ev provisioner.Event) {
				if ev.Step == tt.stopAt && ev.Phase == provisioner.PhaseStart {
					once.Do(func() { close(stop) })
				}
			})
			_, err := env.provisioner(t, env.api, provisioner.Options{}).Create(context.Background(), provisioner.CreateRequest{Spec: spec, Stop: stop, Reporter: rep})
			var se *provisioner.StepError
			if !errors.Is(err, provisioner.ErrInterrupted) || !errors.As(err, &se) || !strings.Contains(err.Error(), tt.left) {
				t.Fatalf("err = %v, want interrupted saying %q", err, tt.left)
			}
			t.Log(err)
			if n := len(env.activeLeases(t)); n != tt.leases {
				t.Errorf("%d active leases, want %d", n, tt.leases)
			}
			if _, err := env.provisioner(t, env.api, provisioner.Options{}).Create(context.Background(), provisioner.CreateRequest{Spec: spec}); err != nil {
				t.Fatalf("re-run: %v", err)
			}
			env.checkPod(t, spec)
		})
	}
}
