package service

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/migrahosting/cloudpods/fixtures/pvesim"
	"github.com/migrahosting/cloudpods/ipam"
	"github.com/migrahosting/cloudpods/netcfg"
	"github.com/migrahosting/cloudpods/provisioner"
	"github.com/migrahosting/cloudpods/provisioner/internal/simtest"
)

// The tests in this file drive `cloudpod serve`'s API as the hosting panel
// does: over real HTTP, against the PVE simulator, with the real
// provisioner and the IPAM registry wired as the command wires them. Every
// exchange is also checked against the OpenAPI document.

// specExample is the request of the example, verbatim.
const specExample = `{"tenantId":"t-100","vmid":9101,"hostname":"migra-client-01","ip":"10.1.10.91","cores":2,"memoryMb":2048}`

// liveService is a Server on a loopback HTTP listener over the simulator.
type liveService struct {
	t        testing.TB
	env      *simtest.Env
	srv      *Server
	url      string
	stateDir string
	ipamFile string
	// baseline is the simulator's guests before any request.
	baseline map[int]bool
	stop     func()
}

type liveOptions struct {
	sim      func(*pvesim.Config)
	tune     func(*Options)
	stateDir string
	ipamFile string
	env      *simtest.Env
}

// startLive wires the service as `cloudpod serve` does: the provisioner
// with IPAM, which serves both its create flow's reserve step and the API's
// own allocation.
func startLive(t testing.TB, lo liveOptions) *liveService {
	t.Helper()
	env := lo.env
	if env == nil {
		env = simtest.Start(t, lo.sim)
	}
	if lo.stateDir == "" {
		lo.stateDir = t.TempDir()
	}
	if lo.ipamFile == "" {
		lo.ipamFile = filepath.Join(t.TempDir(), "ipam.json")
	}
	alloc, err := ipam.New(ipam.NewFileStore(lo.ipamFile), ipam.DefaultPool(), ipam.DefaultVMIDs(), provisioner.Inventory{API: env.API})
	if err != nil {
		t.Fatal(err)
	}
	prov := simtest.Provisioner(env.API, provisioner.Options{Addresses: provisioner.IPAM{Allocator: alloc}})
	store, err := OpenDirStore(lo.stateDir)
	if err != nil {
		t.Fatal(err)
	}
	opts := Options{Flows: prov, AuthTokens: testTokens, Store: store, Allocator: prov,
		Ready: func(ctx context.Context) error { _, err := env.API.Version(ctx); return err }}
	if lo.tune != nil {
		lo.tune(&opts)
	}
	srv, err := New(opts)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	if err := srv.Start(ctx); err != nil {
		t.Fatal(err)
	}
	hs := httptest.NewServer(srv)
	ls := &liveService{t: t, env: env, srv: srv, url: hs.URL, stateDir: lo.stateDir, ipamFile: lo.ipamFile}
	var once sync.Once
	ls.stop = func() {
		once.Do(func() {
			hs.Close()
			if err := srv.Shutdown(context.Background()); err != nil {
				t.Errorf("shutdown: %v", err)
			}
			cancel()
			store.Close()
		})
	}
	t.Cleanup(ls.stop)
	ls.baseline = ls.guestIDs()
	return ls
}

// call sends one request; header is name, value pairs ("Authorization", ""
// sends none). The exchange must agree with the OpenAPI document.
func (ls *liveService) call(method, path, body string, header ...string) (int, http.Header, []byte) {
	ls.t.Helper()
	status, h, b, err := ls.send(method, path, body, header...)
	if err != nil {
		ls.t.Fatal(err)
	}
	return status, h, b
}

// send is call for any goroutine: it reports a transport failure instead
// of ending the test.
func (ls *liveService) send(method, path, body string, header ...string) (int, http.Header, []byte, error) {
	req, err := http.NewRequest(method, ls.url+path, strings.NewReader(body))
	if err != nil {
		return 0, nil, nil, err
	}
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
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, nil, nil, fmt.Errorf("%s %s: %w", method, path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return 0, nil, nil, fmt.Errorf("%s %s: reading the answer: %w", method, path, err)
	}
	checkContract(ls.t, req, []byte(body), resp.StatusCode, resp.Header, b)
	return resp.StatusCode, resp.Header, b, nil
}

// create POSTs a create and wants 202.
func (ls *liveService) create(body string, header ...string) (accepted, http.Header) {
	ls.t.Helper()
	a, h, err := ls.tryCreate(body, header...)
	if err != nil {
		ls.t.Fatal(err)
	}
	return a, h
}

func (ls *liveService) tryCreate(body string, header ...string) (accepted, http.Header, error) {
	status, h, b, err := ls.send("POST", Base, body, header...)
	if err != nil {
		return accepted{}, nil, err
	}
	if status != http.StatusAccepted {
		return accepted{}, nil, fmt.Errorf("POST %s: %d %s", Base, status, b)
	}
	var a accepted
	if err := json.Unmarshal(b, &a); err != nil {
		return accepted{}, nil, fmt.Errorf("202 body: %w: %s", err, b)
	}
	return a, h, nil
}

// job polls a job until it is succeeded or failed.
func (ls *liveService) job(id string, within time.Duration) Job {
	ls.t.Helper()
	deadline := time.Now().Add(within)
	for {
		status, _, b := ls.call("GET", Base+"/jobs/"+id, "")
		if status != http.StatusOK {
			ls.t.Fatalf("GET job %s: %d %s", id, status, b)
		}
		var j Job
		if err := json.Unmarshal(b, &j); err != nil {
			ls.t.Fatalf("job %s: %v: %s", id, err, b)
		}
		if !j.Status.active() {
			return j
		}
		if time.Now().After(deadline) {
			ls.t.Fatalf("job %s still %s after %s: %s", id, j.Status, within, b)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func (ls *liveService) guestIDs() map[int]bool {
	ls.t.Helper()
	guests, err := ls.env.API.Guests(context.Background())
	if err != nil {
		ls.t.Fatalf("list the simulator's guests: %v", err)
	}
	ids := map[int]bool{}
	for _, g := range guests {
		ids[g.VMID] = true
	}
	return ids
}

// made is the guests created since the service started, sorted.
func (ls *liveService) made() []int {
	var out []int
	for id := range ls.guestIDs() {
		if !ls.baseline[id] {
			out = append(out, id)
		}
	}
	slices.Sort(out)
	return out
}

func (ls *liveService) clones() int {
	return ls.env.Sim.Requests()["POST /nodes/{node}/lxc/{vmid}/clone"]
}

// leases are the registry's active leases by VMID.
func (ls *liveService) leases() map[int]ipam.Lease {
	ls.t.Helper()
	reg, err := ipam.NewFileStore(ls.ipamFile).Load(context.Background())
	if err != nil {
		ls.t.Fatalf("IPAM registry: %v", err)
	}
	out := map[int]ipam.Lease{}
	for _, l := range reg.Leases {
		if l.Active(time.Now()) {
			if prev, dup := out[l.VMID]; dup {
				ls.t.Errorf("VMID %d has two active leases: %s and %s", l.VMID, prev.IP, l.IP)
			}
			out[l.VMID] = l
		}
	}
	return out
}

// checkPod asserts the pod is what the job said: running in the
// simulator, unlocked, eth0 on its address, its marker naming the tenant,
// and its IPAM lease assigned to it.
func (ls *liveService) checkPod(vmid int, hostname, tenant string, ip netip.Addr) {
	ls.t.Helper()
	g, ok := ls.env.Sim.Guest(vmid)
	if !ok {
		ls.t.Errorf("CT %d does not exist", vmid)
		return
	}
	if g.Status != "running" || g.Lock != "" {
		ls.t.Errorf("CT %d is %s with lock %q, want running and unlocked", vmid, g.Status, g.Lock)
	}
	net0, err := netcfg.ParseNet0(g.Config["net0"])
	if err != nil || net0.IP != netip.PrefixFrom(ip, 24).String() || net0.GW != "10.1.10.1" {
		ls.t.Errorf("CT %d net0 %q, want ip=%s/24 gw=10.1.10.1 (%v)", vmid, g.Config["net0"], ip, err)
	}
	if g.Config["hostname"] != hostname {
		ls.t.Errorf("CT %d hostname %q, want %s", vmid, g.Config["hostname"], hostname)
	}
	m, ok := provisioner.ParseMarker(g.Config["description"])
	if !ok || !m.Owns(vmid) || m.Tenant != tenant || m.State != "ready" {
		ls.t.Errorf("CT %d marker %+v (found %v), want tenant %s, ready", vmid, m, ok, tenant)
	}
	l, ok := ls.leases()[vmid]
	if !ok || l.IP != ip || l.State != ipam.StateAssigned || l.Hostname != hostname {
		ls.t.Errorf("IPAM lease of CT %d: %+v (found %v), want %s assigned to %s", vmid, l, ok, ip, hostname)
	}
}

// TestSpecExampleProvisions: the example request, and the same
// request with vmid and ip left to IPAM, each end in a running pod at
// 10.1.10.91 whose job reports that address.
func TestSpecExampleProvisions(t *testing.T) {
	tests := []struct {
		name string
		body string
	}{
		{"vmid and ip given", specExample},
		{"vmid and ip from IPAM", `{"tenantId":"t-100","hostname":"migra-client-01","cores":2,"memoryMb":2048}`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ls := startLive(t, liveOptions{})
			if status, _, b := ls.call("GET", "/readyz", ""); status != http.StatusOK {
				t.Fatalf("readyz: %d %s", status, b)
			}
			a, h := ls.create(tt.body)
			if a.VMID != 9101 || a.IP != "10.1.10.91" || a.Kind != KindCreate || h.Get("Location") != Base+"/jobs/"+a.JobID {
				t.Errorf("accepted %+v, Location %q", a, h.Get("Location"))
			}
			j := ls.job(a.JobID, 30*time.Second)
			if j.Status != StatusSucceeded {
				t.Fatalf("job %s: %+v", j.Status, j.Error)
			}
			var res provisioner.CreateResult
			if err := json.Unmarshal(j.Result, &res); err != nil {
				t.Fatalf("result: %v: %s", err, j.Result)
			}
			if j.IP != "10.1.10.91" || j.VMID != 9101 || res.IP != "10.1.10.91/24" || res.VMID != 9101 || res.Status != "running" || j.Tenant != "t-100" {
				t.Errorf("job ip %q vmid %d tenant %q, result %+v", j.IP, j.VMID, j.Tenant, res)
			}
			ls.checkPod(9101, "migra-client-01", "t-100", netip.MustParseAddr("10.1.10.91"))
			if made := ls.made(); len(made) != 1 || made[0] != 9101 {
				t.Errorf("guests made: %v, want [9101]", made)
			}
			if n := ls.clones(); n != 1 {
				t.Errorf("%d clone requests, want 1", n)
			}
			status, _, b := ls.call("GET", Base+"/9101", "")
			var d podDetail
			if status != http.StatusOK || json.Unmarshal(b, &d) != nil || d.IP != "10.1.10.91" || d.Tenant != "t-100" || d.State != "ready" {
				t.Errorf("GET pod: %d %s", status, b)
			}
		})
	}
}

// TestUnauthenticatedCreateIsRefused: without a token, or with a wrong
// one, the example request is 401 and nothing reaches PVE or the store.
func TestUnauthenticatedCreateIsRefused(t *testing.T) {
	ls := startLive(t, liveOptions{})
	tests := []struct {
		name, auth, challenge string
	}{
		{"no token", "", `Bearer realm="cloudpods"`},
		{"wrong token", "Bearer wrong-token-0123456789abcdef0123", `Bearer realm="cloudpods", error="invalid_token"`},
		{"right token, wrong scheme", "Basic " + panelToken, `Bearer realm="cloudpods", error="invalid_token"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			status, h, b := ls.call("POST", Base, specExample, "Authorization", tt.auth)
			var e errorBody
			if status != http.StatusUnauthorized || json.Unmarshal(b, &e) != nil || e.Kind != "unauthorized" {
				t.Fatalf("answer %d %s, want 401 unauthorized", status, b)
			}
			if got := h.Get("WWW-Authenticate"); got != tt.challenge {
				t.Errorf("WWW-Authenticate %q, want %q", got, tt.challenge)
			}
			if status, _, _ := ls.call("GET", Base+"/jobs/x", "", "Authorization", tt.auth); status != http.StatusUnauthorized {
				t.Errorf("job read without a valid token: %d", status)
			}
		})
	}
	if n := ls.clones(); n != 0 {
		t.Errorf("%d clone requests reached PVE", n)
	}
	if made := ls.made(); len(made) != 0 {
		t.Errorf("guests made: %v", made)
	}
	if jobs, _ := filepath.Glob(filepath.Join(ls.stateDir, "*.json")); len(jobs) != 0 {
		t.Errorf("jobs stored: %v", jobs)
	}
}

// TestIdempotentReplayCreatesNothing: the same Idempotency-Key while the
// job runs, after it succeeded, and after the service restarted, answers
// with the same job and clones nothing more.
func TestIdempotentReplayCreatesNothing(t *testing.T) {
	ls := startLive(t, liveOptions{})
	first, _ := ls.create(specExample, "Idempotency-Key", "panel-order-4711")
	again, h := ls.create(specExample, "Idempotency-Key", "panel-order-4711")
	if again.JobID != first.JobID || h.Get("Idempotent-Replayed") != "true" {
		t.Errorf("replay while running: job %s (replayed %q), want %s", again.JobID, h.Get("Idempotent-Replayed"), first.JobID)
	}
	if j := ls.job(first.JobID, 30*time.Second); j.Status != StatusSucceeded {
		t.Fatalf("job %s: %+v", j.Status, j.Error)
	}
	again, h = ls.create(specExample, "Idempotency-Key", "panel-order-4711")
	if again.JobID != first.JobID || again.Status != StatusSucceeded || h.Get("Idempotent-Replayed") != "true" {
		t.Errorf("replay after success: %+v (replayed %q), want job %s succeeded", again, h.Get("Idempotent-Replayed"), first.JobID)
	}

	ls.stop()
	ls = startLive(t, liveOptions{env: ls.env, stateDir: ls.stateDir, ipamFile: ls.ipamFile})
	again, h = ls.create(specExample, "Idempotency-Key", "panel-order-4711")
	if again.JobID != first.JobID || again.Status != StatusSucceeded || h.Get("Idempotent-Replayed") != "true" {
		t.Errorf("replay after a restart: %+v (replayed %q), want job %s succeeded", again, h.Get("Idempotent-Replayed"), first.JobID)
	}
	if n := ls.clones(); n != 1 {
		t.Errorf("%d clone requests, want 1", n)
	}
	if _, ok := ls.env.Sim.Guest(9101); !ok {
		t.Error("CT 9101 does not exist")
	}
	if made := ls.made(); len(made) != 0 {
		t.Errorf("guests made by the replays: %v", made)
	}
	if jobs, _ := filepath.Glob(filepath.Join(ls.stateDir, "*.json")); len(jobs) != 1 {
		t.Errorf("jobs stored: %v, want the one", jobs)
	}
}

// TestConcurrentCreates: fifty panel requests at once, VMID and IP left to
// IPAM, each with its own hostname, at the service's default settings
// (workers and queue as `cloudpod serve` starts them): every request is
// accepted and every job succeeds with its own pod; no VMID or address is
// handed out twice. (About 8 s under -race on 2 cores: the clones are
// serialized by the template's lock.)
func TestConcurrentCreates(t *testing.T) {
	const n = 50
	ls := startLive(t, liveOptions{
		sim: func(c *pvesim.Config) { c.Scale = 0.002 },
		tune: func(o *Options) {
			if o.Workers != 0 || o.QueueSize != 0 {
				t.Fatalf("not the defaults: %d workers, queue %d", o.Workers, o.QueueSize)
			}
		},
	})
	began := time.Now()
	ids := make([]string, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			body := fmt.Sprintf(`{"tenantId":"t-%d","hostname":"burst-%02d","cores":1,"memoryMb":512}`, 100+i%5, i)
			a, _, err := ls.tryCreate(body)
			if err != nil {
				t.Error(err)
				return
			}
			ids[i] = a.JobID
		}()
	}
	wg.Wait()
	accepted := time.Since(began)
	vmids, ips := map[int]string{}, map[string]string{}
	for i, id := range ids {
		if id == "" {
			continue // its POST failed the test already
		}
		j := ls.job(id, 60*time.Second)
		host := fmt.Sprintf("burst-%02d", i)
		if j.Status != StatusSucceeded {
			t.Errorf("%s: job %s: %+v", host, j.Status, j.Error)
			continue
		}
		if other, dup := vmids[j.VMID]; dup {
			t.Errorf("VMID %d went to %s and %s", j.VMID, other, host)
		}
		if other, dup := ips[j.IP]; dup {
			t.Errorf("address %s went to %s and %s", j.IP, other, host)
		}
		vmids[j.VMID], ips[j.IP] = host, host
		ls.checkPod(j.VMID, host, j.Tenant, netip.MustParseAddr(j.IP))
	}
	if len(vmids) != n || len(ips) != n {
		t.Errorf("%d VMIDs and %d addresses for %d pods", len(vmids), len(ips), n)
	}
	running := 0
	for _, id := range ls.made() {
		if g, ok := ls.env.Sim.Guest(id); ok && g.Status == "running" {
			running++
		}
	}
	if running != n || len(ls.made()) != n || ls.clones() != n {
		t.Errorf("%d guests made, %d running, %d clone requests; want %d of each", len(ls.made()), running, ls.clones(), n)
	}
	if len(ls.leases()) != n {
		t.Errorf("%d active IPAM leases, want %d", len(ls.leases()), n)
	}
	t.Logf("%d creates accepted in %s, all done in %s", n, accepted.Round(time.Millisecond), time.Since(began).Round(time.Millisecond))
}
