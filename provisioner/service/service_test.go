package service

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/migrahosting/cloudpods/ipam"
	"github.com/migrahosting/cloudpods/provisioner"
	"github.com/migrahosting/cloudpods/provisioner/pve"
)

func TestAuthentication(t *testing.T) {
	h := start(t, newFakeFlows(), "", nil)
	tests := []struct {
		name, path, auth string
		want             int
		challenge        string
	}{
		{"no token", Base, "", http.StatusUnauthorized, `Bearer realm="cloudpods"`},
		{"wrong token", Base, "Bearer wrong-token-0123456789abcdef0123", http.StatusUnauthorized, `Bearer realm="cloudpods", error="invalid_token"`},
		{"token prefix", Base, "Bearer " + panelToken[:len(panelToken)-1], http.StatusUnauthorized, `Bearer realm="cloudpods", error="invalid_token"`},
		{"basic scheme", Base, "Basic " + panelToken, http.StatusUnauthorized, `Bearer realm="cloudpods", error="invalid_token"`},
		{"metrics need a token", "/metrics", "", http.StatusUnauthorized, `Bearer realm="cloudpods"`},
		{"openapi needs a token", "/openapi.json", "", http.StatusUnauthorized, `Bearer realm="cloudpods"`},
		{"readyz is open", "/readyz", "", http.StatusOK, ""},
		{"job needs a token", Base + "/jobs/x", "", http.StatusUnauthorized, `Bearer realm="cloudpods"`},
		{"healthz is open", "/healthz", "", http.StatusOK, ""},
		{"valid token", Base, "Bearer " + panelToken, http.StatusOK, ""},
		{"second token", Base, "bearer " + otherToken, http.StatusOK, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rec := h.do("GET", tt.path, "", "Authorization", tt.auth)
			if rec.Code != tt.want {
				t.Fatalf("status %d, want %d: %s", rec.Code, tt.want, rec.Body.String())
			}
			if got := rec.Header().Get("WWW-Authenticate"); got != tt.challenge {
				t.Errorf("WWW-Authenticate %q, want %q", got, tt.challenge)
			}
		})
	}
}

func TestCreateRunsToSuccess(t *testing.T) {
	flows := newFakeFlows()
	h := start(t, flows, "", nil)
	rec := h.do("POST", Base, `{"tenantId":"acme","vmid":9101,"hostname":"migra-client-01","ip":"10.1.10.91","cores":4,"memoryMb":4096,"swapMb":1024,"storage":"clients-fast","bridge":"vmbr1","template":9001}`)
	a := mustAccepted(t, rec)
	if loc := rec.Header().Get("Location"); loc != Base+"/jobs/"+a.JobID || a.Location != loc {
		t.Errorf("Location %q, body location %q, job %s", loc, a.Location, a.JobID)
	}
	if a.Status != StatusQueued || a.VMID != 9101 {
		t.Errorf("accepted %+v", a)
	}
	j := h.waitJob(a.JobID, StatusSucceeded)
	var steps []string
	for _, s := range j.Steps {
		steps = append(steps, s.Step+":"+s.State)
	}
	if got := strings.Join(steps, " "); got != "validate:done clone:done verify:done" {
		t.Errorf("steps %s", got)
	}
	res := decodeRaw[provisioner.CreateResult](t, j.Result)
	if res.VMID != 9101 || res.Hostname != "migra-client-01" || res.IP != "10.1.10.91/24" || res.Node != "pve" {
		t.Errorf("result %+v", res)
	}
	if j.Requester != "panel" || j.Attempts != 1 || j.Finished.IsZero() || j.Error != nil {
		t.Errorf("job %+v", j)
	}
	req := flows.creates[0]
	s := req.Spec
	if req.Requester != "panel" || s.Tenant != "acme" || s.Cores != 4 || s.MemoryMB != 4096 || s.SwapMB != 1024 ||
		s.Storage != "clients-fast" || s.Bridge != "vmbr1" || s.Template != 9001 || s.Subnet.String() != "10.1.10.0/24" || req.Stop == nil {
		t.Errorf("create request %+v", req)
	}
}

func decodeRaw[T any](t *testing.T, b []byte) T {
	t.Helper()
	rec := httptest.NewRecorder()
	rec.Body.Write(b)
	return decode[T](t, rec)
}

func TestCreateFailureIsStructured(t *testing.T) {
	flows := newFakeFlows()
	flows.create = func(ctx context.Context, req provisioner.CreateRequest) (provisioner.CreateResult, error) {
		report(req, provisioner.StepPreflight, provisioner.PhaseStart, provisioner.PhaseFail)
		return provisioner.CreateResult{VMID: req.Spec.VMID}, &provisioner.StepError{Step: provisioner.StepPreflight, VMID: req.Spec.VMID,
			Err: fmt.Errorf("CT 9101 already exists and was not created by cloudpods: %w", provisioner.ErrConflict)}
	}
	h := start(t, flows, "", nil)
	a := mustAccepted(t, h.do("POST", Base, createBodyJSON(9101, "migra-client-01", "10.1.10.91")))
	j := h.waitJob(a.JobID, StatusFailed)
	if j.Error == nil || j.Error.Step != provisioner.StepPreflight || j.Error.Kind != "conflict" || !strings.Contains(j.Error.Message, "not created by cloudpods") {
		t.Fatalf("error %+v", j.Error)
	}
	if len(j.Steps) != 1 || j.Steps[0].State != "failed" {
		t.Errorf("steps %+v", j.Steps)
	}
}

func TestIdempotency(t *testing.T) {
	flows := newFakeFlows()
	g := newGate()
	flows.create = g.create
	h := start(t, flows, "", nil)
	body := createBodyJSON(9101, "migra-client-01", "10.1.10.91")

	first := mustAccepted(t, h.do("POST", Base, body, "Idempotency-Key", "k-1"))
	<-flows.started
	again := h.do("POST", Base, strings.ReplaceAll(body, ",", ", "), "Idempotency-Key", "k-1")
	if got := mustAccepted(t, again); got.JobID != first.JobID || again.Header().Get("Idempotent-Replayed") != "true" {
		t.Errorf("replay gave job %s (replayed %q), want %s", got.JobID, again.Header().Get("Idempotent-Replayed"), first.JobID)
	}
	// The same body without a key, while the first job is active, is a retry too.
	if got := mustAccepted(t, h.do("POST", Base, body)); got.JobID != first.JobID {
		t.Errorf("same body gave job %s, want %s", got.JobID, first.JobID)
	}
	// Another requester's key space is its own: same key, same body, still the active job.
	if got := mustAccepted(t, h.do("POST", Base, body, "Idempotency-Key", "k-1", "Authorization", "Bearer "+otherToken)); got.JobID != first.JobID {
		t.Errorf("other requester got job %s", got.JobID)
	}
	rec := h.do("POST", Base, createBodyJSON(9101, "migra-client-01", "10.1.10.92"), "Idempotency-Key", "k-1")
	if rec.Code != http.StatusUnprocessableEntity {
		t.Fatalf("reused key with another body: %d %s", rec.Code, rec.Body.String())
	}
	if e := decode[errorBody](t, rec); e.JobID != first.JobID {
		t.Errorf("422 names job %q", e.JobID)
	}
	close(g.release)
	h.waitJob(first.JobID, StatusSucceeded)
	// After the job finished, the key still replays it rather than provisioning again.
	if got := mustAccepted(t, h.do("POST", Base, body, "Idempotency-Key", "k-1")); got.JobID != first.JobID || got.Status != StatusSucceeded {
		t.Errorf("replay after success: %+v", got)
	}
	if n := flows.createCount(); n != 1 {
		t.Errorf("%d creates ran, want 1", n)
	}
}

func TestCreateValidation(t *testing.T) {
	h := start(t, newFakeFlows(), "", nil)
	tests := []struct {
		name, body  string
		contentType string
		want        int
		fields      map[string]string // field → part of its message
	}{
		{name: "empty object", body: `{}`, want: 400, fields: map[string]string{"tenantId": "required", "hostname": "required",
			"cores": "required", "memoryMb": "required", "vmid": "until IPAM is configured", "ip": "until IPAM is configured"}},
		{name: "bad values", body: `{"tenantId":"a b","vmid":50,"hostname":"bad_host","ip":"10.1.10.1","cores":0,"memoryMb":8,"swapMb":-1,"storage":"Bad Storage","bridge":"not a bridge"}`,
			want: 400, fields: map[string]string{"tenantId": "letters", "vmid": "out of range", "hostname": "not valid", "ip": "gateway",
				"cores": "out of range", "memoryMb": "at least 16", "swapMb": "negative", "storage": "storage id", "bridge": "bridge name"}},
		{name: "ip outside the subnet", body: `{"tenantId":"acme","vmid":9101,"hostname":"h1","ip":"192.0.2.5","cores":1,"memoryMb":512}`,
			want: 400, fields: map[string]string{"ip": "not inside 10.1.10.0/24"}},
		{name: "not ipv4", body: `{"tenantId":"acme","vmid":9101,"hostname":"h1","ip":"2001:db8::1","cores":1,"memoryMb":512}`,
			want: 400, fields: map[string]string{"ip": "not an IPv4 address"}},
		{name: "vmid is the template", body: `{"tenantId":"acme","vmid":9000,"hostname":"h1","ip":"10.1.10.91","cores":1,"memoryMb":512}`,
			want: 400, fields: map[string]string{"vmid": "template itself"}},
		{name: "only vmid", body: `{"tenantId":"acme","vmid":9101,"hostname":"h1","cores":1,"memoryMb":512}`,
			want: 400, fields: map[string]string{"ip": "until IPAM is configured"}},
		{name: "unknown field", body: `{"tenantId":"acme","vmid":9101,"hostname":"h1","ip":"10.1.10.91","cores":1,"memoryMb":512,"rootPassword":"x"}`,
			want: 400, fields: map[string]string{"rootPassword": "unknown field"}},
		{name: "wrong type", body: `{"tenantId":"acme","vmid":9101,"hostname":"h1","ip":"10.1.10.91","cores":"two","memoryMb":512}`,
			want: 400, fields: map[string]string{"cores": "an integer"}},
		{name: "duplicate key", body: `{"tenantId":"acme","vmid":9101,"hostname":"h1","ip":"10.1.10.91","cores":1,"memoryMb":512,"memoryMb":9223372036854775807}`,
			want: 400, fields: map[string]string{"memoryMb": "appears twice"}},
		{name: "key in another case", body: `{"tenantId":"acme","vmid":9101,"hostname":"h1","ip":"10.1.10.91","cores":1,"memoryMb":512,"MemoryMB":4096}`,
			want: 400, fields: map[string]string{"MemoryMB": "unknown field"}},
		{name: "vmid neither number nor auto", body: `{"tenantId":"acme","vmid":"9101","hostname":"h1","ip":"10.1.10.91","cores":1,"memoryMb":512}`,
			want: 400, fields: map[string]string{"vmid": `an integer or "auto"`}},
		{name: "auto vmid without IPAM", body: `{"tenantId":"acme","vmid":"auto","hostname":"h1","ip":"auto","cores":1,"memoryMb":512}`,
			want: 400, fields: map[string]string{"vmid": "until IPAM is configured", "ip": "until IPAM is configured"}},
		{name: "not json", body: `{"tenantId":`, want: 400},
		{name: "two values", body: `{} {}`, want: 400},
		{name: "array", body: `[]`, want: 400},
		{name: "empty body", body: ``, want: 400},
		{name: "form content type", body: `{}`, contentType: "application/x-www-form-urlencoded", want: 415},
		{name: "too large", body: `{"tenantId":"` + strings.Repeat("a", MaxBodyBytes) + `"}`, want: 413},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rec := h.do("POST", Base, tt.body, "Content-Type", tt.contentType)
			if rec.Code != tt.want {
				t.Fatalf("status %d, want %d: %s", rec.Code, tt.want, rec.Body.String())
			}
			e := decode[errorBody](t, rec)
			if e.Error == "" {
				t.Errorf("no error message: %s", rec.Body.String())
			}
			for field, part := range tt.fields {
				if !strings.Contains(e.Errors[field], part) {
					t.Errorf("errors[%s] = %q, want it to mention %q", field, e.Errors[field], part)
				}
			}
			if tt.fields != nil && len(e.Errors) != len(tt.fields) {
				t.Errorf("errors %v, want exactly the fields %v", e.Errors, tt.fields)
			}
		})
	}
	if n := h.flows.createCount(); n != 0 {
		t.Errorf("%d creates ran for invalid requests", n)
	}
}

func TestAllocatorFillsVMIDAndIP(t *testing.T) {
	flows := newFakeFlows()
	h := start(t, flows, "", func(o *Options) { o.Allocator = fakeAllocator{} })
	a := mustAccepted(t, h.do("POST", Base, `{"tenantId":"acme","hostname":"auto-01","cores":1,"memoryMb":512}`))
	if a.VMID != 9150 || a.IP != "10.1.10.150" {
		t.Errorf("accepted %+v", a)
	}
	j := h.waitJob(a.JobID, StatusSucceeded)
	if !j.Request.Allocated || flows.creates[0].Spec.VMID != 9150 || flows.creates[0].Spec.IP.String() != "10.1.10.150" {
		t.Errorf("job request %+v, spec %+v", j.Request, flows.creates[0].Spec)
	}
}

// TestAllocatorFailure: IPAM refusing is the client's conflict; IPAM unable
// to read PVE is PVE's failure. Either way no job is made.
func TestAllocatorFailure(t *testing.T) {
	tests := []struct {
		name     string
		err      error
		status   int
		kind     string
		contains string
	}{
		{"pool exhausted", fmt.Errorf("reserve auto-01 in pool default: no free address: %w", ipam.ErrPoolExhausted), http.StatusConflict, kindConflict, "no free address"},
		{"hostname holds other numbers", fmt.Errorf("owner holds 10.1.10.99: %w", ipam.ErrLeaseConflict), http.StatusConflict, kindConflict, "10.1.10.99"},
		{"PVE unreachable", errors.New("reserve auto-01: list PVE guests: dial tcp 127.0.0.1:8006: connection refused"), http.StatusBadGateway, kindFailed, "connection refused"},
		{"PVE too slow", fmt.Errorf("reserve auto-01: list PVE guests: %w", context.DeadlineExceeded), http.StatusGatewayTimeout, string(provisioner.KindTimeout), "deadline"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := start(t, newFakeFlows(), "", func(o *Options) { o.Allocator = fakeAllocator{err: tt.err} })
			rec := h.do("POST", Base, `{"tenantId":"acme","hostname":"auto-01","cores":1,"memoryMb":512}`)
			e := decode[errorBody](t, rec)
			if rec.Code != tt.status || e.Kind != tt.kind || !strings.Contains(e.Error, tt.contains) {
				t.Errorf("answer %d %+v, want %d %s", rec.Code, e, tt.status, tt.kind)
			}
			h.srv.mu.Lock()
			jobs := len(h.srv.jobs)
			h.srv.mu.Unlock()
			if jobs != 0 {
				t.Errorf("%d jobs made after the allocator failed", jobs)
			}
		})
	}
}

func TestConflictWithActiveJob(t *testing.T) {
	flows := newFakeFlows()
	g := newGate()
	flows.create = g.create
	h := start(t, flows, "", nil)
	first := mustAccepted(t, h.do("POST", Base, createBodyJSON(9101, "migra-client-01", "10.1.10.91")))
	<-flows.started
	flows.pods[9101] = ourMarker(9101, "migra-client-01", "acme")
	tests := []struct{ name, method, path, body string }{
		{"same vmid", "POST", Base, createBodyJSON(9101, "migra-client-02", "10.1.10.92")},
		{"same ip", "POST", Base, createBodyJSON(9102, "migra-client-02", "10.1.10.91")},
		{"same hostname", "POST", Base, createBodyJSON(9102, "MIGRA-client-01", "10.1.10.92")},
		{"same spec, more memory", "POST", Base, strings.Replace(createBodyJSON(9101, "migra-client-01", "10.1.10.91"), "2048", "4096", 1)},
		{"destroy during create", "DELETE", Base + "/9101?force=1", ""},
		{"backup during create", "POST", Base + "/9101/backup", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rec := h.do(tt.method, tt.path, tt.body)
			if rec.Code != http.StatusConflict {
				t.Fatalf("status %d, want 409: %s", rec.Code, rec.Body.String())
			}
			if e := decode[errorBody](t, rec); e.JobID != first.JobID || e.Kind != "conflict" {
				t.Errorf("409 body %+v", e)
			}
		})
	}
	close(g.release)
	h.waitJob(first.JobID, StatusSucceeded)
	if n := flows.createCount(); n != 1 {
		t.Errorf("%d creates ran, want 1", n)
	}
}

func TestQueueFull(t *testing.T) {
	flows := newFakeFlows()
	g := newGate()
	flows.create = g.create
	h := start(t, flows, "", func(o *Options) { o.Workers, o.QueueSize, o.RetryAfter = 1, 1, 20*time.Second })
	running := mustAccepted(t, h.do("POST", Base, createBodyJSON(9101, "pod-01", "10.1.10.91")))
	<-flows.started
	waiting := mustAccepted(t, h.do("POST", Base, createBodyJSON(9102, "pod-02", "10.1.10.92")))
	rec := h.do("POST", Base, createBodyJSON(9103, "pod-03", "10.1.10.93"))
	if rec.Code != http.StatusServiceUnavailable || rec.Header().Get("Retry-After") != "20" {
		t.Fatalf("status %d, Retry-After %q: %s", rec.Code, rec.Header().Get("Retry-After"), rec.Body.String())
	}
	close(g.release)
	h.waitJob(running.JobID, StatusSucceeded)
	h.waitJob(waiting.JobID, StatusSucceeded)
	mustAccepted(t, h.do("POST", Base, createBodyJSON(9103, "pod-03", "10.1.10.93")))
}

func TestDestroy(t *testing.T) {
	flows := newFakeFlows()
	flows.pods[9101] = ourMarker(9101, "migra-client-01", "acme")
	flows.pods[200] = "a VM someone made by hand"
	h := start(t, flows, "", nil)
	tests := []struct {
		name, path string
		want       int
		field      string
	}{
		{"without force", Base + "/9101", 400, "force"},
		{"force=0", Base + "/9101?force=0", 400, "force"},
		{"ignoreOwnership is not offered", Base + "/200?force=1&ignoreOwnership=1", 400, "ignoreOwnership"},
		{"not a vmid", Base + "/abc?force=1", 400, "vmid"},
		{"not ours", Base + "/200?force=1", 403, ""},
		{"missing", Base + "/9999?force=1", 404, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rec := h.do("DELETE", tt.path, "")
			if rec.Code != tt.want {
				t.Fatalf("status %d, want %d: %s", rec.Code, tt.want, rec.Body.String())
			}
			if e := decode[errorBody](t, rec); tt.field != "" && e.Errors[tt.field] == "" {
				t.Errorf("no message for %s: %+v", tt.field, e)
			}
		})
	}
	a := mustAccepted(t, h.do("DELETE", Base+"/9101?force=1", ""))
	j := h.waitJob(a.JobID, StatusSucceeded)
	if j.Kind != KindDestroy || j.Hostname != "migra-client-01" || j.Tenant != "acme" {
		t.Errorf("job %+v", j)
	}
	if len(flows.destroys) != 1 {
		t.Fatalf("%d destroys", len(flows.destroys))
	}
	if d := flows.destroys[0]; !d.Force || !d.IfExists || d.IgnoreOwnership || d.Requester != "panel" || d.VMID != 9101 || d.Node != "" { // "": found wherever it lives
		t.Errorf("destroy request %+v", d)
	}
}

func TestBackupGetListHealth(t *testing.T) {
	flows := newFakeFlows()
	flows.pods[9101] = ourMarker(9101, "migra-client-01", "acme")
	flows.pods[9102] = ourMarker(9102, "other-01", "globex")
	h := start(t, flows, "", nil)

	a := mustAccepted(t, h.do("POST", Base+"/9101/backup", `{"storage":"t7-backup"}`))
	j := h.waitJob(a.JobID, StatusSucceeded)
	if b := decodeRaw[provisioner.Backup](t, j.Result); b.VolID != "t7-backup:backup/vzdump-lxc-9101.tar.zst" {
		t.Errorf("backup result %+v", b)
	}
	a = mustAccepted(t, h.do("POST", Base+"/9102/backup", ""))
	h.waitJob(a.JobID, StatusSucceeded)
	if flows.backups[1].Storage != provisioner.DefaultBackupStorage || flows.backups[1].Requester != "panel" {
		t.Errorf("backup request %+v", flows.backups[1])
	}
	if rec := h.do("POST", Base+"/9999/backup", ""); rec.Code != http.StatusNotFound {
		t.Errorf("backup of a missing CT: %d", rec.Code)
	}

	rec := h.do("GET", Base+"/9101", "")
	if d := decode[podDetail](t, rec); rec.Code != 200 || d.Hostname != "migra-client-01" || d.Tenant != "acme" || d.State != "ready" {
		t.Errorf("GET pod: %d %s", rec.Code, rec.Body.String())
	}
	rec = h.do("GET", Base+"?tenant=globex", "")
	if l := decode[struct{ Pods []provisioner.Pod }](t, rec); len(l.Pods) != 1 || l.Pods[0].VMID != 9102 {
		t.Errorf("list: %s", rec.Body.String())
	}
	rec = h.do("GET", Base+"/9101/health?deep=1", "")
	if hl := decode[provisioner.Health](t, rec); rec.Code != 200 || hl.State != provisioner.Healthy {
		t.Errorf("health: %d %s", rec.Code, rec.Body.String())
	}
	rec = h.do("GET", Base+"/666/health", "")
	if e := decode[errorBody](t, rec); rec.Code != http.StatusBadGateway || e.Kind != "pve_auth" {
		t.Errorf("health refused by PVE: %d %s", rec.Code, rec.Body.String())
	}
	if rec := h.do("GET", Base+"/jobs/nope", ""); rec.Code != http.StatusNotFound {
		t.Errorf("unknown job: %d", rec.Code)
	}
	if rec := h.do("PUT", Base+"/9101", ""); rec.Code != http.StatusMethodNotAllowed || rec.Header().Get("Allow") != "GET, HEAD, DELETE" {
		t.Errorf("PUT: %d Allow %q", rec.Code, rec.Header().Get("Allow"))
	}
}

// TestRestartRecovery crashes a server while a job runs (its store is
// copied as the disk stood at that moment) and starts another on the copy:
// the running job runs again and ends, the queued one runs too.
func TestRestartRecovery(t *testing.T) {
	flows := newFakeFlows()
	g := newGate()
	flows.create = g.create
	h := start(t, flows, "", func(o *Options) { o.Workers = 1 })
	running := mustAccepted(t, h.do("POST", Base, createBodyJSON(9101, "pod-01", "10.1.10.91")))
	<-g.blocked
	queued := mustAccepted(t, h.do("POST", Base, createBodyJSON(9102, "pod-02", "10.1.10.92"), "Idempotency-Key", "k-2"))

	if _, err := OpenDirStore(h.dir); err == nil || !strings.Contains(err.Error(), "in use") {
		t.Fatalf("a second server opened the live store: %v", err)
	}
	crashed := t.TempDir()
	files, _ := filepath.Glob(filepath.Join(h.dir, "*.json"))
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(crashed, filepath.Base(f)), b, 0o600); err != nil {
			t.Fatal(err)
		}
	}

	after := newFakeFlows()
	h2 := start(t, after, crashed, nil)
	j := h2.waitJob(running.JobID, StatusSucceeded)
	if j.Attempts != 2 || !strings.Contains(j.Note, "stopped during attempt 1 in step clone") {
		t.Errorf("re-run job: attempts %d, note %q", j.Attempts, j.Note)
	}
	h2.waitJob(queued.JobID, StatusSucceeded)
	if n := after.createCount(); n != 2 {
		t.Errorf("%d creates after the restart, want 2", n)
	}
	// Idempotency keys survive the restart.
	if got := mustAccepted(t, h2.do("POST", Base, createBodyJSON(9102, "pod-02", "10.1.10.92"), "Idempotency-Key", "k-2")); got.JobID != queued.JobID {
		t.Errorf("key replay after restart gave %s", got.JobID)
	}
	close(g.release)
}

func TestGracefulShutdown(t *testing.T) {
	flows := newFakeFlows()
	g := newGate()
	flows.create = g.create
	flows.pods[9102] = ourMarker(9102, "pod-02", "acme")
	h := start(t, flows, "", func(o *Options) { o.Workers = 1 })
	running := mustAccepted(t, h.do("POST", Base, createBodyJSON(9101, "pod-01", "10.1.10.91")))
	<-flows.started
	waiting := mustAccepted(t, h.do("DELETE", Base+"/9102?force=1", ""))

	if err := h.stop(context.Background()); err != nil {
		t.Fatalf("shutdown: %v", err)
	}
	if rec := h.do("POST", Base, createBodyJSON(9103, "pod-03", "10.1.10.93")); rec.Code != http.StatusServiceUnavailable {
		t.Errorf("create while stopped: %d", rec.Code)
	}
	if rec := h.do("GET", "/readyz", ""); rec.Code != http.StatusServiceUnavailable {
		t.Errorf("readyz while stopped: %d", rec.Code)
	}
	j := h.waitJob(running.JobID, StatusQueued)
	if !strings.Contains(j.Note, "shut down during attempt 1") || len(flows.destroys) != 0 {
		t.Errorf("stopped job note %q; %d destroys ran", j.Note, len(flows.destroys))
	}

	next := newFakeFlows()
	next.pods[9102] = flows.pods[9102]
	h2 := start(t, next, h.dir, nil)
	if j := h2.waitJob(running.JobID, StatusSucceeded); j.Attempts != 2 {
		t.Errorf("attempts %d", j.Attempts)
	}
	h2.waitJob(waiting.JobID, StatusSucceeded)
}

func TestShutdownAbortsAfterDeadline(t *testing.T) {
	flows := newFakeFlows()
	flows.create = func(ctx context.Context, req provisioner.CreateRequest) (provisioner.CreateResult, error) {
		<-ctx.Done() // ignores Stop: a step that cannot end early
		return provisioner.CreateResult{}, &provisioner.StepError{Step: provisioner.StepClone, Err: ctx.Err()}
	}
	h := start(t, flows, "", nil)
	a := mustAccepted(t, h.do("POST", Base, createBodyJSON(9101, "pod-01", "10.1.10.91")))
	<-flows.started
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := h.stop(ctx); !errors.Is(err, context.Canceled) {
		t.Fatalf("shutdown: %v", err)
	}
	if j := h.waitJob(a.JobID, StatusQueued); j.Error != nil {
		t.Errorf("aborted job has error %+v", j.Error)
	}
}

func TestReadyz(t *testing.T) {
	var readyErr error
	h := start(t, newFakeFlows(), "", func(o *Options) {
		o.Ready = func(ctx context.Context) error { return readyErr }
	})
	if rec := h.do("GET", "/readyz", ""); rec.Code != http.StatusOK {
		t.Errorf("ready: %d", rec.Code)
	}
	// Open to any caller, the answer names the kind of trouble and never
	// PVE's own words (its address among them).
	for _, tt := range []struct {
		err  error
		want string
	}{
		{fmt.Errorf("GET https://10.1.10.70:8006/api2/json/version: %w", pve.ErrUnauthorized), "refuses the service's API token"},
		{fmt.Errorf("dial tcp 10.1.10.70:8006: connection refused: %w", pve.ErrMaybeApplied), "does not answer"},
		{errors.New("10.1.10.70 said something odd"), "check failed"},
	} {
		readyErr = tt.err
		rec := h.do("GET", "/readyz", "", "Authorization", "")
		if rec.Code != http.StatusServiceUnavailable || !strings.Contains(rec.Body.String(), tt.want) || strings.Contains(rec.Body.String(), "10.1.10.70") {
			t.Errorf("unready (%v): %d %s", tt.err, rec.Code, rec.Body.String())
		}
	}
}

func TestMetrics(t *testing.T) {
	h := start(t, newFakeFlows(), "", nil)
	a := mustAccepted(t, h.do("POST", Base, createBodyJSON(9101, "pod-01", "10.1.10.91")))
	h.waitJob(a.JobID, StatusSucceeded)
	rec := h.do("GET", "/metrics", "")
	if ct := rec.Header().Get("Content-Type"); !strings.HasPrefix(ct, "text/plain; version=0.0.4") {
		t.Errorf("content type %q", ct)
	}
	text := rec.Body.String()
	for _, want := range []string{
		`cloudpods_jobs_finished_total{kind="create",outcome="succeeded"} 1`,
		`cloudpods_jobs_active{status="queued"} 0`,
		`cloudpods_step_duration_seconds_count{kind="create",step="clone"} 1`,
		`cloudpods_step_duration_seconds_bucket{kind="create",step="clone",le="+Inf"} 1`,
		`cloudpods_http_requests_total{method="POST",route="/internal/proxmox/cloudpods",code="202"} 1`,
		"# TYPE cloudpods_step_duration_seconds histogram",
	} {
		if !strings.Contains(text, want+"\n") {
			t.Errorf("metrics lack %q:\n%s", want, text)
		}
	}
}

func TestParseTokens(t *testing.T) {
	long := strings.Repeat("x", MinTokenLength)
	tests := []struct {
		name, in string
		want     int
		err      string
	}{
		{"comments and blanks", "# panel\n\npanel:" + long + "\nops : " + long + "y\n", 2, ""},
		{"rotation: two tokens, one requester", "panel:" + long + "\npanel:" + long + "z\n", 2, ""},
		{"no colon", "panel " + long, 0, "line 1 is not requester:token"},
		{"short token", "panel:short", 0, "shorter than"},
		{"bad requester", "pa nel:" + long, 0, "requester"},
		{"repeated token", "a:" + long + "\nb:" + long, 0, "line 2 repeats the token of line 1"},
		{"empty", "# nothing\n", 0, "no tokens"},
		{"NUL in a token", "panel:" + long + "\x00x\n", 0, "line 1: the token of panel holds whitespace, a control character or non-ASCII"},
		{"ESC in a token", "panel:" + long + "\x1b[2J\n", 0, "control character"},
		{"tab in a token", "panel:" + long + "\tx\n", 0, "control character"},
		{"non-ASCII in a token", "panel:" + long + "é\n", 0, "non-ASCII"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			toks, err := ParseTokens(strings.NewReader(tt.in))
			if tt.err != "" {
				if err == nil || !strings.Contains(err.Error(), tt.err) || strings.Contains(err.Error(), long) {
					t.Fatalf("err %v, want one mentioning %q and not the token", err, tt.err)
				}
				return
			}
			if err != nil || len(toks) != tt.want {
				t.Fatalf("got %d tokens, err %v", len(toks), err)
			}
		})
	}
}

func TestNewRefusesMissingDependencies(t *testing.T) {
	store, err := OpenDirStore(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	for _, o := range []Options{
		{Store: store, AuthTokens: testTokens},
		{Flows: newFakeFlows(), AuthTokens: testTokens},
		{Flows: newFakeFlows(), Store: store},
	} {
		if _, err := New(o); err == nil {
			t.Errorf("New(%+v) succeeded", o)
		}
	}
}
