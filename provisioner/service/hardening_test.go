package service

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net/http"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"
)

// TestHeadWhereGet: HEAD is answered wherever GET is, with GET's status
// and headers and no body; the probes need no token.
func TestHeadWhereGet(t *testing.T) {
	h := start(t, newFakeFlows(), "", nil)
	for _, path := range []string{"/healthz", "/readyz"} {
		rec := h.do("HEAD", path, "", "Authorization", "")
		if rec.Code != http.StatusOK || rec.Header().Get("Content-Type") != "application/json" {
			t.Errorf("HEAD %s: %d %v", path, rec.Code, rec.Header())
		}
	}
	if rec := h.do("HEAD", Base, ""); rec.Code != http.StatusOK {
		t.Errorf("HEAD %s: %d", Base, rec.Code)
	}
	if rec := h.do("HEAD", Base, "", "Authorization", ""); rec.Code != http.StatusUnauthorized {
		t.Errorf("HEAD %s without a token: %d", Base, rec.Code)
	}
	if rec := h.do("HEAD", Base+"/9101/backup", ""); rec.Code != http.StatusMethodNotAllowed || rec.Header().Get("Allow") != "POST" {
		t.Errorf("HEAD on a POST route: %d Allow %q", rec.Code, rec.Header().Get("Allow"))
	}
}

// TestMetricsOpenByFlag: /metrics needs a token unless MetricsPublic.
func TestMetricsOpenByFlag(t *testing.T) {
	for _, public := range []bool{false, true} {
		h := start(t, newFakeFlows(), "", func(o *Options) { o.MetricsPublic = public })
		want := http.StatusUnauthorized
		if public {
			want = http.StatusOK
		}
		if rec := h.do("GET", "/metrics", "", "Authorization", ""); rec.Code != want {
			t.Errorf("public %v: GET /metrics without a token: %d, want %d", public, rec.Code, want)
		}
	}
}

// TestMetricsMethodLabelIsBounded: methods outside the API are counted as
// one "other" series, however many names a client invents.
func TestMetricsMethodLabelIsBounded(t *testing.T) {
	h := start(t, newFakeFlows(), "", nil)
	for i := range 500 {
		h.srv.ServeHTTP(discard{}, newRequest(randomMethod(rand.New(rand.NewPCG(uint64(i), 1)), 1024), "/healthz"))
	}
	text := h.do("GET", "/metrics", "").Body.String()
	if !strings.Contains(text, `cloudpods_http_requests_total{method="other",route="unmatched",code="405"} 500`+"\n") {
		t.Errorf("the invented methods are not one series:\n%s", text)
	}
	if len(text) > 16<<10 {
		t.Errorf("/metrics is %d bytes after 500 invented methods", len(text))
	}
}

// TestRenewKeepsQueuedReservations: queued automatic creates have their
// reservations renewed while they wait; explicit ones hold none.
func TestRenewKeepsQueuedReservations(t *testing.T) {
	g := newGate()
	flows := newFakeFlows()
	flows.create = g.create
	alloc := &countingAllocator{}
	h := start(t, flows, "", func(o *Options) { o.Allocator, o.Workers, o.RenewEvery = alloc, 1, 10*time.Millisecond })
	mustAccepted(t, h.do("POST", Base, createBodyJSON(9201, "explicit", "10.1.10.201")))
	<-g.blocked
	a := mustAccepted(t, h.do("POST", Base, `{"tenantId":"acme","hostname":"waiting","cores":1,"memoryMb":512}`))
	deadline := time.Now().Add(10 * time.Second)
	for alloc.renewed("waiting") < 2 {
		if time.Now().After(deadline) {
			t.Fatalf("the queued create's reservation was renewed %d times", alloc.renewed("waiting"))
		}
		time.Sleep(5 * time.Millisecond)
	}
	if n := alloc.renewed("explicit"); n != 0 {
		t.Errorf("the explicit create's (absent) reservation was renewed %d times", n)
	}
	close(g.release)
	h.waitJob(a.JobID, StatusSucceeded)
}

// TestCreateAboveTheNodeNamesTheLimit: the limit comes from Flows.NodeLimits.
func TestCreateAboveTheNodeNamesTheLimit(t *testing.T) {
	h := start(t, newFakeFlows(), "", nil)
	rec := h.do("POST", Base, `{"tenantId":"acme","vmid":9101,"ip":"10.1.10.91","hostname":"big","cores":2,"memoryMb":9223372036854775807}`)
	if e := decode[errorBody](t, rec); rec.Code != http.StatusBadRequest || !strings.Contains(e.Errors["memoryMb"], "131072 MB") {
		t.Errorf("%d %s", rec.Code, rec.Body.String())
	}
	if h.flows.createCount() != 0 {
		t.Error("a create ran")
	}
}

type countingAllocator struct {
	mu    sync.Mutex
	renew map[string]int
}

func (a *countingAllocator) Reserve(ctx context.Context, hostname, tenant string) (int, netip.Addr, error) {
	return 9150, netip.MustParseAddr("10.1.10.150"), nil
}

func (a *countingAllocator) Release(ctx context.Context, hostname, tenant string, vmid int, ip netip.Addr) error {
	return nil
}

func (a *countingAllocator) Renew(ctx context.Context, hostname, tenant string, vmid int, ip netip.Addr) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.renew == nil {
		a.renew = map[string]int{}
	}
	a.renew[hostname]++
	return nil
}

func (a *countingAllocator) renewed(hostname string) int {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.renew[hostname]
}

// randomMethod is an HTTP token of n random letters.
func randomMethod(r *rand.Rand, n int) string {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte('A' + r.IntN(26))
	}
	return string(b)
}

func newRequest(method, path string) *http.Request {
	req, err := http.NewRequest(method, "http://cloudpods.test"+path, nil)
	if err != nil {
		panic(fmt.Sprintf("%s %s: %v", method[:8], path, err))
	}
	return req
}

// discard is a ResponseWriter that keeps nothing.
type discard struct{}

func (discard) Header() http.Header         { return http.Header{} }
func (discard) Write(b []byte) (int, error) { return len(b), nil }
func (discard) WriteHeader(int)             {}
