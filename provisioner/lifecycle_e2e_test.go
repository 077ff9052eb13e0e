package provisioner_test

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"net/http"
	"net/netip"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/migrahosting/cloudpods/ipam"
	"github.com/migrahosting/cloudpods/provisioner"
	"github.com/migrahosting/cloudpods/provisioner/internal/simtest"
	"github.com/migrahosting/cloudpods/provisioner/pve"
)

// lifecycle is a simulator with a provisioner wired to an IPAM registry and
// an audit log, as the CLI wires them.
type lifecycle struct {
	env   *simtest.Env
	prov  *provisioner.Provisioner
	alloc *ipam.Allocator
	audit string
}

func startLifecycle(t *testing.T) *lifecycle {
	t.Helper()
	env := simtest.Start(t, nil)
	dir := t.TempDir()
	alloc, err := ipam.New(ipam.NewFileStore(filepath.Join(dir, "ipam.json")), ipam.DefaultPool(), ipam.DefaultVMIDs(), provisioner.Inventory{API: env.API})
	if err != nil {
		t.Fatal(err)
	}
	audit := filepath.Join(dir, "audit.log")
	prov := simtest.Provisioner(env.API, provisioner.Options{
		Addresses: provisioner.IPAM{Allocator: alloc},
		Audit:     &provisioner.AuditLog{Path: audit, TokenID: simtest.TokenID},
	})
	return &lifecycle{env: env, prov: prov, alloc: alloc, audit: audit}
}

// pod creates a CloudPod of tenant at 10.1.10.<octet>.
func (l *lifecycle) pod(t *testing.T, vmid int, host string, octet int, tenant string) provisioner.Spec {
	t.Helper()
	spec := seedSpec(vmid, host, octet)
	spec.Tenant = tenant
	if _, err := l.prov.Create(context.Background(), provisioner.CreateRequest{Spec: spec, Requester: "ops"}); err != nil {
		t.Fatalf("create CT %d: %v", vmid, err)
	}
	return spec
}

// lease is the IPAM lease of ip: its state, "" when there is none.
func (l *lifecycle) lease(t *testing.T, ip netip.Addr) ipam.State {
	t.Helper()
	leases, err := l.alloc.List(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	for _, le := range leases {
		if le.IP == ip {
			return le.State
		}
	}
	return ""
}

// stop powers a CT off through the API, as an operator would.
func (l *lifecycle) stop(t *testing.T, vmid int) {
	t.Helper()
	ctx := context.Background()
	upid, err := l.env.API.StopGuest(ctx, pve.CT("pve", vmid))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := pve.WaitTask(ctx, l.env.API, "pve", upid, pve.WaitOptions{Timeout: 10 * time.Second}); err != nil {
		t.Fatal(err)
	}
}

// post calls the simulator's API directly, for what the provisioner never
// does itself (taking a snapshot).
func (l *lifecycle) post(t *testing.T, path string, params url.Values) {
	t.Helper()
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(l.env.Sim.CertPEM())
	c := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool, ServerName: "127.0.0.1"}}, Timeout: 10 * time.Second}
	req, err := http.NewRequest(http.MethodPost, l.env.Sim.URL()+"/api2/json"+path, strings.NewReader(params.Encode()))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Authorization", "PVEAPIToken="+simtest.TokenID+"="+simtest.TokenSecret)
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("POST %s: %s", path, resp.Status)
	}
}

// snapshot takes a snapshot of a CT and waits until its lock is gone.
func (l *lifecycle) snapshot(t *testing.T, vmid int, name string) {
	t.Helper()
	l.post(t, "/nodes/pve/lxc/"+strconv.Itoa(vmid)+"/snapshot", url.Values{"snapname": {name}})
	waitFor(t, func() bool { g, _ := l.env.Sim.Guest(vmid); return g.Lock == "" })
}

func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not met within 10s")
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func exists(path string) bool {
	_, err := os.Stat(path)
	return err == nil
}
