package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/migrahosting/cloudpods/ipam"
	"github.com/migrahosting/cloudpods/provisioner"
	"github.com/migrahosting/cloudpods/provisioner/pve"
	"github.com/migrahosting/cloudpods/provisioner/service"
)

// failingFlows fails every flow with err.
type failingFlows struct{ err error }

func (f failingFlows) Create(ctx context.Context, req provisioner.CreateRequest) (provisioner.CreateResult, error) {
	return provisioner.CreateResult{VMID: req.Spec.VMID}, f.err
}
func (f failingFlows) Destroy(ctx context.Context, req provisioner.DestroyRequest) (provisioner.DestroyResult, error) {
	return provisioner.DestroyResult{VMID: req.VMID}, f.err
}
func (f failingFlows) Backup(ctx context.Context, req provisioner.BackupRequest) (provisioner.Backup, error) {
	return provisioner.Backup{}, f.err
}
func (f failingFlows) Health(ctx context.Context, node string, vmid int, deep bool) (provisioner.Health, error) {
	return provisioner.Health{VMID: vmid, Node: node, State: provisioner.Unknown}, f.err
}
func (f failingFlows) List(ctx context.Context, tenant, status string) ([]provisioner.Pod, error) {
	return nil, f.err
}
func (f failingFlows) Inspect(ctx context.Context, node string, vmid int) (provisioner.DestroyResult, error) {
	return provisioner.DestroyResult{}, f.err
}

// NodeLimits fails too: the service then leaves the bounds to the job's
// preflight, and the job fails with the kind under test.
func (f failingFlows) NodeLimits(ctx context.Context, node string) (provisioner.NodeLimits, error) {
	return provisioner.NodeLimits{}, f.err
}

// TestErrorKindsThroughCLIAndService: every kind of failure, through the
// CLI (its exit code) and through the service (the HTTP status of a
// synchronous answer, the JSON kind of that answer and of a failed job):
// both come from provisioner.KindOf and Kind.Codes, so they cannot
// disagree.
func TestErrorKindsThroughCLIAndService(t *testing.T) {
	step := func(err error, left bool) error {
		return &provisioner.StepError{Step: provisioner.StepClone, VMID: 9101, Err: err, Left: left}
	}
	tests := []struct {
		kind   provisioner.Kind
		err    error
		exit   int
		status int
	}{
		{provisioner.KindInvalid, fmt.Errorf("%w: --ip: not an address", errUsage), 2, http.StatusBadRequest},
		{provisioner.KindInvalid, step(fmt.Errorf("hostname: %w", provisioner.ErrInvalidSpec), false), 2, http.StatusBadRequest},
		{provisioner.KindPreflight, step(fmt.Errorf("storage full: %w", provisioner.ErrPreflight), false), 3, http.StatusUnprocessableEntity},
		{provisioner.KindConflict, step(fmt.Errorf("vmid taken: %w", provisioner.ErrConflict), false), 4, http.StatusConflict},
		{provisioner.KindConflict, fmt.Errorf("reserve web in pool default: %w", ipam.ErrPoolExhausted), 4, http.StatusConflict},
		{provisioner.KindAuth, step(&pve.APIError{Status: 401, Message: "authentication failure"}, false), 5, http.StatusBadGateway},
		{provisioner.KindTimeout, step(fmt.Errorf("task: %w", pve.ErrWaitTimeout), false), 6, http.StatusGatewayTimeout},
		{provisioner.KindUnreachable, step(&pve.TransportError{Method: "GET", Path: "/access/permissions", Err: syscall.ECONNREFUSED}, false), 7, http.StatusBadGateway},
		{provisioner.KindRefused, fmt.Errorf("destroy CT 9000: %w", provisioner.ErrRefused), 8, http.StatusForbidden},
		{provisioner.KindLocked, step(&pve.APIError{Method: "POST", Path: "/nodes/pve/lxc/9000/clone", Status: 500, Message: "CT is locked (disk)"}, false), 9, http.StatusConflict},
		{provisioner.KindLeftBehind, step(&pve.TaskError{Type: "vzstart", ExitStatus: "startup failed"}, true), 10, http.StatusBadGateway},
		{provisioner.KindInterrupted, step(fmt.Errorf("%w before step start", provisioner.ErrInterrupted), true), 130, http.StatusServiceUnavailable},
		{provisioner.KindNotFound, fmt.Errorf("read CT 9101: %w", &pve.APIError{Method: "GET", Status: 500, Message: "Configuration file 'nodes/pve/lxc/9101.conf' does not exist"}), 1, http.StatusNotFound},
		{provisioner.KindRegistry, step(fmt.Errorf("IPAM: %w", &ipam.RegistryError{Path: "/var/lib/cloudpods/ipam.json", Problem: `has no lease list ("leases" is null or missing)`}), false), 11, http.StatusInternalServerError},
		{provisioner.KindFailed, step(&pve.TaskError{Type: "vzstart", ExitStatus: "startup for container '9101' failed"}, false), 1, http.StatusBadGateway},
	}
	covered := map[provisioner.Kind]bool{}
	for i, tt := range tests {
		covered[tt.kind] = true
		t.Run(fmt.Sprintf("%d %s", i, tt.kind), func(t *testing.T) {
			if got := provisioner.KindOf(tt.err); got != tt.kind {
				t.Fatalf("KindOf = %s, want %s", got, tt.kind)
			}
			if got := exitCode(tt.err); got != tt.exit {
				t.Errorf("CLI exit code %d, want %d", got, tt.exit)
			}
			srv := newKindServer(t, tt.err)
			rec := srv.do(t, "GET", service.Base+"/9101/health", "")
			var body struct{ Kind string }
			_ = json.Unmarshal(rec.Body.Bytes(), &body)
			if rec.Code != tt.status || body.Kind != string(tt.kind) {
				t.Errorf("service answered %d %q, want %d %q", rec.Code, body.Kind, tt.status, tt.kind)
			}
			job := srv.createJob(t)
			switch {
			case tt.kind == provisioner.KindInterrupted:
				// The service runs an interrupted job again at its next start.
				if job.Status != service.StatusQueued {
					t.Errorf("interrupted job is %s, want queued again", job.Status)
				}
			case job.Status != service.StatusFailed || job.Error == nil || job.Error.Kind != string(tt.kind):
				t.Errorf("job %s with error %+v, want failed as %s", job.Status, job.Error, tt.kind)
			}
		})
	}
	for _, k := range provisioner.Kinds {
		if !covered[k] {
			t.Errorf("kind %s is not in the table", k)
		}
	}
}

// TestExitCodesAreREADMEs: the kinds' exit codes are exactly the codes of
// README's "Exit codes" table and of docs/retry-policy.md's.
func TestExitCodesAreREADMEs(t *testing.T) {
	seen := map[int]bool{}
	produced := []int{}
	for _, k := range append([]provisioner.Kind{provisioner.KindNone}, provisioner.Kinds...) {
		code, _ := k.Codes()
		if !seen[code] {
			seen[code] = true
			produced = append(produced, code)
		}
	}
	sort.Ints(produced)
	for _, doc := range []struct{ file, heading string }{
		{"../../README.md", "## Exit codes"},
		{"../../docs/retry-policy.md", "## Errors and exit codes"},
	} {
		text, err := os.ReadFile(doc.file)
		if err != nil {
			t.Fatal(err)
		}
		i := strings.Index(string(text), "\n"+doc.heading+"\n")
		if i < 0 {
			t.Fatalf("%s has no %q", doc.file, doc.heading)
		}
		section := string(text)[i+1:]
		if j := strings.Index(section[3:], "\n## "); j >= 0 {
			section = section[:j+3]
		}
		var documented []int
		for _, m := range regexp.MustCompile(`(?m)^\| (\d+) \|`).FindAllStringSubmatch(section, -1) {
			n, _ := strconv.Atoi(m[1])
			documented = append(documented, n)
		}
		if fmt.Sprint(documented) != fmt.Sprint(produced) {
			t.Errorf("%s documents exit codes %v, the kinds produce %v", doc.file, documented, produced)
		}
	}
	for _, code := range produced {
		if code != exitOK && exitSentences[code] == "" {
			t.Errorf("exit %d has no sentence", code)
		}
	}
}

// kindServer is the service over failingFlows.
type kindServer struct{ srv *service.Server }

func newKindServer(t *testing.T, err error) *kindServer {
	t.Helper()
	store, serr := service.OpenDirStore(t.TempDir())
	if serr != nil {
		t.Fatal(serr)
	}
	srv, serr := service.New(service.Options{Flows: failingFlows{err: err}, Store: store,
		AuthTokens: []service.Token{{Requester: "panel", Secret: "kinds-token-0123456789abcdef01"}}})
	if serr != nil {
		t.Fatal(serr)
	}
	ctx, cancel := context.WithCancel(context.Background())
	if err := srv.Start(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cancel()
		_ = srv.Shutdown(context.Background())
		store.Close()
	})
	return &kindServer{srv: srv}
}

func (k *kindServer) do(t *testing.T, method, path, body string) *httptest.ResponseRecorder {
	t.Helper()
	req := httptest.NewRequest(method, path, strings.NewReader(body))
	req.Header.Set("Authorization", "Bearer kinds-token-0123456789abcdef01")
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	rec := httptest.NewRecorder()
	k.srv.ServeHTTP(rec, req)
	return rec
}

// createJob submits a create and waits for its job to end (or, for an
// interruption, to be queued again).
func (k *kindServer) createJob(t *testing.T) service.Job {
	t.Helper()
	rec := k.do(t, "POST", service.Base, `{"tenantId":"acme","vmid":9101,"hostname":"migra-client-01","ip":"10.1.10.91","cores":2,"memoryMb":2048}`)
	var acc struct{ JobID string }
	if rec.Code != http.StatusAccepted || json.Unmarshal(rec.Body.Bytes(), &acc) != nil {
		t.Fatalf("create answered %d: %s", rec.Code, rec.Body)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		var j service.Job
		if err := json.Unmarshal(k.do(t, "GET", service.Base+"/jobs/"+acc.JobID, "").Body.Bytes(), &j); err != nil {
			t.Fatal(err)
		}
		if j.Status == service.StatusFailed || j.Status == service.StatusSucceeded || (j.Status == service.StatusQueued && j.Attempts > 0) {
			return j
		}
		if time.Now().After(deadline) {
			t.Fatalf("job %s still %s", j.ID, j.Status)
		}
		time.Sleep(2 * time.Millisecond)
	}
}
