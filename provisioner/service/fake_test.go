package service

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/migrahosting/cloudpods/provisioner"
	"github.com/migrahosting/cloudpods/provisioner/pve"
)

// fakeFlows stands in for the provisioner where PVE's behaviour does not
// matter: it records what it was asked and runs the behaviour a test sets.
type fakeFlows struct {
	mu       sync.Mutex
	creates  []provisioner.CreateRequest
	destroys []provisioner.DestroyRequest
	backups  []provisioner.BackupRequest
	// pods are the guests Inspect knows, by VMID: their description.
	pods map[int]string

	// create runs a create; nil reports a few steps and succeeds.
	create func(ctx context.Context, req provisioner.CreateRequest) (provisioner.CreateResult, error)
	// started receives each create's VMID as it begins.
	started chan int
}

func newFakeFlows() *fakeFlows {
	return &fakeFlows{pods: map[int]string{}, started: make(chan int, 64)}
}

func ourMarker(vmid int, hostname, tenant string) string {
	m, _ := json.Marshal(provisioner.Marker{Version: 1, By: "cloudpods", VMID: vmid, Hostname: hostname, Tenant: tenant, State: "ready", Created: time.Unix(1700000000, 0).UTC()})
	return "CloudPod " + hostname + "\ncloudpods-marker: " + string(m) + "\n"
}

func report(req provisioner.CreateRequest, step string, phases ...provisioner.Phase) {
	for _, ph := range phases {
		req.Reporter.Report(provisioner.Event{Time: time.Now(), VMID: req.Spec.VMID, Step: step, Phase: ph})
	}
}

func succeed(req provisioner.CreateRequest) (provisioner.CreateResult, error) {
	report(req, provisioner.StepValidate, provisioner.PhaseStart, provisioner.PhaseDone)
	report(req, provisioner.StepClone, provisioner.PhaseStart, provisioner.PhaseDone)
	report(req, provisioner.StepVerify, provisioner.PhaseStart, provisioner.PhaseDone)
	s := req.Spec
	return provisioner.CreateResult{VMID: s.VMID, Hostname: s.Hostname, IP: s.Address().String(), Node: s.Node, Status: "running", Changed: true, Steps: map[string]float64{}}, nil
}

func (f *fakeFlows) Create(ctx context.Context, req provisioner.CreateRequest) (provisioner.CreateResult, error) {
	f.mu.Lock()
	f.creates = append(f.creates, req)
	fn := f.create
	f.mu.Unlock()
	f.started <- req.Spec.VMID
	if fn != nil {
		return fn(ctx, req)
	}
	return succeed(req)
}

func (f *fakeFlows) Destroy(ctx context.Context, req provisioner.DestroyRequest) (provisioner.DestroyResult, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.destroys = append(f.destroys, req)
	delete(f.pods, req.VMID)
	req.Reporter.Report(provisioner.Event{Time: time.Now(), VMID: req.VMID, Step: "delete", Phase: provisioner.PhaseStart})
	req.Reporter.Report(provisioner.Event{Time: time.Now(), VMID: req.VMID, Step: "delete", Phase: provisioner.PhaseDone})
	return provisioner.DestroyResult{VMID: req.VMID, Node: req.Node, Existed: true}, nil
}

func (f *fakeFlows) Backup(ctx context.Context, req provisioner.BackupRequest) (provisioner.Backup, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.backups = append(f.backups, req)
	return provisioner.Backup{VolID: fmt.Sprintf("%s:backup/vzdump-lxc-%d.tar.zst", req.Storage, req.VMID), VMID: req.VMID, Storage: req.Storage}, nil
}

func (f *fakeFlows) Health(ctx context.Context, node string, vmid int, deep bool) (provisioner.Health, error) {
	if vmid == 666 {
		return provisioner.Health{VMID: vmid, Node: node, State: provisioner.Unknown}, fmt.Errorf("read CT %d: %w", vmid, pve.ErrForbidden)
	}
	return provisioner.Health{VMID: vmid, Node: node, State: provisioner.Healthy, PVEStatus: "running"}, nil
}

func (f *fakeFlows) List(ctx context.Context, tenant, status string) ([]provisioner.Pod, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []provisioner.Pod
	for vmid, desc := range f.pods {
		m, ok := provisioner.ParseMarker(desc)
		if ok && (tenant == "" || m.Tenant == tenant) {
			out = append(out, provisioner.Pod{VMID: vmid, Hostname: m.Hostname, Tenant: m.Tenant, Node: "pve", Status: "running"})
		}
	}
	return out, nil
}

func (f *fakeFlows) Inspect(ctx context.Context, node string, vmid int) (provisioner.DestroyResult, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	desc, ok := f.pods[vmid]
	if !ok {
		return provisioner.DestroyResult{VMID: vmid, Node: node}, fmt.Errorf("CT %d: %w", vmid, pve.ErrNotFound)
	}
	res := provisioner.DestroyResult{VMID: vmid, Node: node, Existed: true, IP: "10.1.10.91",
		Config: pve.Config{Values: map[string]string{"description": desc}}}
	m, ok := provisioner.ParseMarker(desc)
	res.Hostname = m.Hostname
	if ok && m.Owns(vmid) {
		res.Marker = &m
	}
	return res, nil
}

// NodeLimits is pvesim's node: 16 CPUs, 128 GiB.
func (f *fakeFlows) NodeLimits(ctx context.Context, node string) (provisioner.NodeLimits, error) {
	return provisioner.NodeLimits{Node: node, CPUs: 16, MemoryMB: 128 << 10}, nil
}

func (f *fakeFlows) createCount() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.creates)
}

// fakeAllocator hands out one fixed pair, or fails with err.
type fakeAllocator struct{ err error }

func (a fakeAllocator) Reserve(ctx context.Context, hostname, tenant string) (int, netip.Addr, error) {
	if a.err != nil {
		return 0, netip.Addr{}, a.err
	}
	return 9150, netip.MustParseAddr("10.1.10.150"), nil
}

func (a fakeAllocator) Release(ctx context.Context, hostname, tenant string, vmid int, ip netip.Addr) error {
	return nil
}

func (a fakeAllocator) Renew(ctx context.Context, hostname, tenant string, vmid int, ip netip.Addr) error {
	return nil
}

const (
	panelToken = "panel-token-0123456789abcdef0123"
	otherToken = "other-token-0123456789abcdef0123"
)

var testTokens = []Token{{Requester: "panel", Secret: panelToken}, {Requester: "ops", Secret: otherToken}}

type harness struct {
	t     *testing.T
	srv   *Server
	flows *fakeFlows
	dir   string
	store *DirStore
}

// start runs a server on a job store in dir (a fresh one when "").
func start(t *testing.T, flows *fakeFlows, dir string, tune func(*Options)) *harness {
	t.Helper()
	if dir == "" {
		dir = t.TempDir()
	}
	store, err := OpenDirStore(dir)
	if err != nil {
		t.Fatal(err)
	}
	opts := Options{Flows: flows, AuthTokens: testTokens, Store: store, Workers: 2, QueueSize: 8}
	if tune != nil {
		tune(&opts)
	}
	srv, err := New(opts)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	if err := srv.Start(ctx); err != nil {
		t.Fatal(err)
	}
	h := &harness{t: t, srv: srv, flows: flows, dir: dir, store: store}
	t.Cleanup(func() {
		cancel()
		_ = srv.Shutdown(context.Background())
		store.Close()
	})
	return h
}

// stop shuts the server down gently and releases its store.
func (h *harness) stop(ctx context.Context) error {
	err := h.srv.Shutdown(ctx)
	h.store.Close()
	return err
}

func (h *harness) do(method, path, body string, header ...string) *httptest.ResponseRecorder {
	h.t.Helper()
	req := httptest.NewRequest(method, path, strings.NewReader(body))
	req.Header.Set("Authorization", "Bearer "+panelToken)
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	for i := 0; i+1 < len(header); i += 2 {
		if header[i+1] == "" {
			req.Header.Del(header[i])
		} else {
			req.Header.Set(header[i], header[i+1])
		}
	}
	rec := httptest.NewRecorder()
	h.srv.ServeHTTP(rec, req)
	checkRecorded(h.t, req, body, rec)
	return rec
}

func decode[T any](t *testing.T, rec *httptest.ResponseRecorder) T {
	t.Helper()
	var v T
	if err := json.Unmarshal(rec.Body.Bytes(), &v); err != nil {
		t.Fatalf("answer %d is not JSON: %v\n%s", rec.Code, err, rec.Body.String())
	}
	return v
}

// waitJob polls the job until it reaches want.
func (h *harness) waitJob(id string, want Status) Job {
	h.t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		rec := h.do("GET", Base+"/jobs/"+id, "")
		if rec.Code != http.StatusOK {
			h.t.Fatalf("GET job %s: %d %s", id, rec.Code, rec.Body.String())
		}
		j := decode[Job](h.t, rec)
		if j.Status == want {
			return j
		}
		if time.Now().After(deadline) {
			h.t.Fatalf("job %s is %s, want %s: %s", id, j.Status, want, rec.Body.String())
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func createBodyJSON(vmid int, hostname, ip string) string {
	return fmt.Sprintf(`{"tenantId":"acme","vmid":%d,"hostname":%q,"ip":%q,"cores":2,"memoryMb":2048}`, vmid, hostname, ip)
}

func mustAccepted(t *testing.T, rec *httptest.ResponseRecorder) accepted {
	t.Helper()
	if rec.Code != http.StatusAccepted {
		t.Fatalf("want 202, got %d: %s", rec.Code, rec.Body.String())
	}
	return decode[accepted](t, rec)
}

// gate blocks creates in their clone step until released, each honouring
// Stop at a step boundary the way the provisioner does.
type gate struct {
	release chan struct{}
	// blocked receives the VMID of each create once it waits in clone.
	blocked chan int
}

func newGate() *gate { return &gate{release: make(chan struct{}), blocked: make(chan int, 64)} }

func (g *gate) create(ctx context.Context, req provisioner.CreateRequest) (provisioner.CreateResult, error) {
	report(req, provisioner.StepValidate, provisioner.PhaseStart, provisioner.PhaseDone)
	report(req, provisioner.StepClone, provisioner.PhaseStart)
	g.blocked <- req.Spec.VMID
	select {
	case <-g.release:
	case <-ctx.Done():
		return provisioner.CreateResult{VMID: req.Spec.VMID}, &provisioner.StepError{Step: provisioner.StepClone, VMID: req.Spec.VMID, Err: ctx.Err()}
	case <-req.Stop:
		report(req, provisioner.StepClone, provisioner.PhaseDone)
		return provisioner.CreateResult{VMID: req.Spec.VMID}, &provisioner.StepError{Step: provisioner.StepConfigure, VMID: req.Spec.VMID,
			Err: fmt.Errorf("%w before configure", provisioner.ErrInterrupted)}
	}
	report(req, provisioner.StepClone, provisioner.PhaseDone)
	return succeed(req)
}
