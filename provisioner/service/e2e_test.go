package service

import (
	"context"
	"net/http"
	"testing"

	"github.com/migrahosting/cloudpods/provisioner"
	"github.com/migrahosting/cloudpods/provisioner/internal/simtest"
)

// TestEndToEndAgainstSimulator drives the real provisioner through the API
// against the PVE simulator: create, read, back up, destroy.
func TestEndToEndAgainstSimulator(t *testing.T) {
	env := simtest.Start(t, nil)
	prov := simtest.Provisioner(env.API, provisioner.Options{})
	store, err := OpenDirStore(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	srv, err := New(Options{Flows: prov, AuthTokens: testTokens, Store: store,
		Ready: func(ctx context.Context) error { _, err := env.API.Version(ctx); return err }})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	if err := srv.Start(ctx); err != nil {
		t.Fatal(err)
	}
	defer srv.Shutdown(context.Background())
	h := &harness{t: t, srv: srv}

	if rec := h.do("GET", "/readyz", ""); rec.Code != http.StatusOK {
		t.Fatalf("readyz: %d %s", rec.Code, rec.Body.String())
	}
	a := mustAccepted(t, h.do("POST", Base, createBodyJSON(9101, "migra-client-01", "10.1.10.91")))
	j := h.waitJob(a.JobID, StatusSucceeded)
	if res := decodeRaw[provisioner.CreateResult](t, j.Result); res.VMID != 9101 || res.IP != "10.1.10.91/24" || res.Node != "pve" {
		t.Errorf("create result %+v", res)
	}
	if g, ok := env.Sim.Guest(9101); !ok || g.Status != "running" {
		t.Fatalf("CT 9101 in the simulator: %+v %v", g, ok)
	}

	rec := h.do("GET", Base+"/9101", "")
	if d := decode[podDetail](t, rec); rec.Code != http.StatusOK || d.Tenant != "acme" || d.State != "ready" || d.IP != "10.1.10.91" {
		t.Errorf("GET pod: %d %s", rec.Code, rec.Body.String())
	}
	rec = h.do("GET", Base+"?tenant=acme", "")
	if l := decode[struct{ Pods []provisioner.Pod }](t, rec); len(l.Pods) != 1 || l.Pods[0].VMID != 9101 {
		t.Errorf("list: %s", rec.Body.String())
	}
	if rec := h.do("GET", Base+"/9101/health", ""); rec.Code != http.StatusOK {
		t.Errorf("health: %d %s", rec.Code, rec.Body.String())
	}

	a = mustAccepted(t, h.do("POST", Base+"/9101/backup", ""))
	j = h.waitJob(a.JobID, StatusSucceeded)
	if b := decodeRaw[provisioner.Backup](t, j.Result); b.VMID != 9101 || b.VolID == "" {
		t.Errorf("backup result %s", j.Result)
	}

	a = mustAccepted(t, h.do("DELETE", Base+"/9101?force=1", ""))
	h.waitJob(a.JobID, StatusSucceeded)
	if _, ok := env.Sim.Guest(9101); ok {
		t.Error("CT 9101 still exists after destroy")
	}
	if rec := h.do("GET", Base+"/9101", ""); rec.Code != http.StatusNotFound {
		t.Errorf("GET destroyed pod: %d %s", rec.Code, rec.Body.String())
	}
	if rec := h.do("DELETE", Base+"/9000?force=1", ""); rec.Code != http.StatusForbidden {
		t.Errorf("DELETE the template: %d %s", rec.Code, rec.Body.String())
	}
}

// TestEndToEndShutdownResumes stops the service right after a create is
// accepted: whichever step boundary the job reached, it is saved as queued
// and the next server finishes it, converging on what the first one made.
func TestEndToEndShutdownResumes(t *testing.T) {
	env := simtest.Start(t, nil)
	dir := t.TempDir()
	serve := func() (*Server, *DirStore) {
		store, err := OpenDirStore(dir)
		if err != nil {
			t.Fatal(err)
		}
		srv, err := New(Options{Flows: simtest.Provisioner(env.API, provisioner.Options{}), AuthTokens: testTokens, Store: store})
		if err != nil {
			t.Fatal(err)
		}
		if err := srv.Start(context.Background()); err != nil {
			t.Fatal(err)
		}
		return srv, store
	}

	srv, store := serve()
	h := &harness{t: t, srv: srv}
	a := mustAccepted(t, h.do("POST", Base, createBodyJSON(9102, "migra-client-02", "10.1.10.92")))
	if err := srv.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
	store.Close()
	if j := h.waitJob(a.JobID, StatusQueued); j.Error != nil {
		t.Fatalf("stopped job: %+v", j)
	}

	srv, store = serve()
	defer store.Close()
	defer srv.Shutdown(context.Background())
	h = &harness{t: t, srv: srv}
	j := h.waitJob(a.JobID, StatusSucceeded)
	if g, ok := env.Sim.Guest(9102); !ok || g.Status != "running" {
		t.Fatalf("CT 9102 after the resumed job (attempts %d): %+v %v", j.Attempts, g, ok)
	}
}
