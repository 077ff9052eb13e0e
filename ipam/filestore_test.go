package ipam

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestFileStoreMissingFileIsEmpty(t *testing.T) {
	s := NewFileStore(filepath.Join(t.TempDir(), "sub", "ipam.json"))
	reg, err := s.Load(context.Background())
	if err != nil || len(reg.Leases) != 0 || reg.Version != registryVersion {
		t.Fatalf("Load of a missing file = %+v, %v; want an empty registry", reg, err)
	}
	if _, err := os.Stat(s.Path()); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("Load created the file: %v", err)
	}
}

func TestFileStoreRoundTrip(t *testing.T) {
	ctx := context.Background()
	s := NewFileStore(filepath.Join(t.TempDir(), "state", "cloudpods", "ipam.json"))
	at := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	in := []Lease{
		{Pool: "default", IP: addr("10.1.10.92"), VMID: 9102, Hostname: "b", State: StateAssigned, Source: SourceCloudpod, ReservedAt: at, UpdatedAt: at},
		{Pool: "default", VMID: 9150, Hostname: "vmid-only", State: StateAssigned, Source: SourcePVE, ReservedAt: at, UpdatedAt: at},
		{Pool: "default", IP: addr("10.1.10.91"), VMID: 9101, Hostname: "a", Owner: "job-1", Tenant: "acme", State: StateReserved,
			Source: SourceCloudpod, ReservedAt: at, UpdatedAt: at, ExpiresAt: at.Add(time.Minute)},
	}
	if err := s.Update(ctx, func(r *Registry) error { r.Leases = append(r.Leases, in...); return nil }); err != nil {
		t.Fatalf("Update: %v", err)
	}
	reg, err := s.Load(ctx)
	if err != nil {
		t.Fatalf("Load: %v", err)
	}
	if len(reg.Leases) != 3 {
		t.Fatalf("got %d leases, want 3", len(reg.Leases))
	}
	// Sorted by address; the address-less lease first.
	if reg.Leases[0].VMID != 9150 || reg.Leases[0].IP.IsValid() || reg.Leases[1] != in[2] || reg.Leases[2] != in[0] {
		t.Fatalf("round trip changed leases:\n got %+v\nwant %+v", reg.Leases, in)
	}
	raw, _ := os.ReadFile(s.Path())
	for _, want := range []string{`"ip":"10.1.10.91"`, `"state":"reserved"`, `"expires_at":"2026-03-01T12:01:00Z"`, `"version": 1`} {
		if !strings.Contains(string(raw), want) {
			t.Errorf("registry file lacks %s:\n%s", want, raw)
		}
	}
	if strings.Count(string(raw), "expires_at") != 1 {
		t.Errorf("expires_at written for leases without expiry:\n%s", raw)
	}
	if fi, err := os.Stat(s.Path()); err != nil || fi.Mode().Perm() != 0o640 {
		t.Errorf("registry mode = %v, %v; want 0640", fi.Mode().Perm(), err)
	}
}

func TestFileStoreUnchangedIsNotRewritten(t *testing.T) {
	ctx := context.Background()
	s := NewFileStore(filepath.Join(t.TempDir(), "ipam.json"))
	if err := s.Update(ctx, func(r *Registry) error {
		r.Leases = append(r.Leases, Lease{Pool: "default", IP: addr("10.1.10.91"), VMID: 9101, State: StateAssigned})
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	before, _ := os.Stat(s.Path())
	if err := s.Update(ctx, func(*Registry) error { return nil }); err != nil {
		t.Fatal(err)
	}
	after, _ := os.Stat(s.Path())
	if !os.SameFile(before, after) {
		t.Fatal("a no-op Update replaced the registry file")
	}
}

func TestFileStoreFnErrorDiscardsChanges(t *testing.T) {
	ctx := context.Background()
	s := NewFileStore(filepath.Join(t.TempDir(), "ipam.json"))
	boom := errors.New("boom")
	err := s.Update(ctx, func(r *Registry) error {
		r.Leases = append(r.Leases, Lease{IP: addr("10.1.10.91")})
		return boom
	})
	if !errors.Is(err, boom) {
		t.Fatalf("Update = %v, want boom", err)
	}
	reg, err := s.Load(ctx)
	if err != nil || len(reg.Leases) != 0 {
		t.Fatalf("registry after failed Update = %+v, %v; want empty", reg, err)
	}
}

// TestFileStoreCorruptFileIsNeverOverwritten: only a file that does not
// exist is an empty registry. One that exists but is empty, cut short,
// unparsable or without its lease list is ErrRegistryCorrupt, for Load
// and Update alike, and stays as it is.
func TestFileStoreCorruptFileIsNeverOverwritten(t *testing.T) {
	ctx := context.Background()
	for _, tt := range []struct {
		name, content, says string
	}{
		{"empty", "", "is empty (0 bytes), though it exists"},
		{"blank", "\n  \n", "is empty (4 bytes)"},
		{"cut short", `{"version":1,"leases":[{"ip":"10.1.10.91"`, "is damaged (unexpected end of JSON input)"},
		{"not JSON", "leases: []", "is damaged (invalid character"},
		{"null leases", `{"version":1,"leases":null}`, `has no lease list ("leases" is null or missing)`},
		{"no leases", `{"version":1}`, `has no lease list`},
	} {
		t.Run(tt.name, func(t *testing.T) {
			s := NewFileStore(filepath.Join(t.TempDir(), "ipam.json"))
			if err := os.WriteFile(s.Path(), []byte(tt.content), 0o640); err != nil {
				t.Fatal(err)
			}
			_, err := s.Load(ctx)
			var re *RegistryError
			if !errors.Is(err, ErrRegistryCorrupt) || !errors.As(err, &re) || !strings.Contains(err.Error(), tt.says) ||
				!strings.Contains(err.Error(), "cloudpod ip sync --repair") || strings.Contains(err.Error(), "\n") {
				t.Fatalf("Load = %v, want ErrRegistryCorrupt saying %q and how to recover, in one line", err, tt.says)
			}
			called := false
			if err := s.Update(ctx, func(*Registry) error { called = true; return nil }); !errors.Is(err, ErrRegistryCorrupt) {
				t.Fatalf("Update on a corrupt registry = %v", err)
			}
			if called {
				t.Fatal("Update ran fn on a corrupt registry")
			}
			if got, _ := os.ReadFile(s.Path()); string(got) != tt.content {
				t.Fatalf("corrupt registry was rewritten to %q", got)
			}
		})
	}
}

func TestFileStoreNewerVersionRefused(t *testing.T) {
	s := NewFileStore(filepath.Join(t.TempDir(), "ipam.json"))
	if err := os.WriteFile(s.Path(), []byte(`{"version":2,"leases":[]}`), 0o640); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Load(context.Background()); err == nil || !strings.Contains(err.Error(), "newer") {
		t.Fatalf("Load = %v, want a version error", err)
	}
}

// A writer that dies after writing its temp file but before the rename
// leaves the old registry in place; the next Update cleans up.
func TestFileStoreCrashMidWriteLeavesRegistryReadable(t *testing.T) {
	ctx := context.Background()
	env := newTestEnv(t, DefaultPool(), DefaultVMIDs())
	first := env.reserve(t, Request{Hostname: "web1", Owner: "job-1"})

	dir := filepath.Dir(env.store.Path())
	torn := filepath.Join(dir, env.store.tempPrefix()+"123456")
	if err := os.WriteFile(torn, []byte(`{"version":1,"leases":[{"ip":"10.1.10.`), 0o640); err != nil {
		t.Fatal(err)
	}
	leases, err := env.alloc.List(ctx)
	if err != nil || len(leases) != 1 || leases[0].IP != first.IP {
		t.Fatalf("List after a crashed write = %+v, %v; want the one lease", leases, err)
	}
	second := env.reserve(t, Request{Hostname: "web2", Owner: "job-2"})
	if second.IP == first.IP {
		t.Fatalf("second lease reuses %s", first.IP)
	}
	if _, err := os.Stat(torn); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("stale temp file survived the next Update: %v", err)
	}
	raw, err := os.ReadFile(env.store.Path())
	if err != nil {
		t.Fatal(err)
	}
	var reg Registry
	if err := json.Unmarshal(raw, &reg); err != nil || len(reg.Leases) != 2 {
		t.Fatalf("registry after recovery = %d leases, %v", len(reg.Leases), err)
	}
}

func TestFileStoreUpdateHonoursContextWhileLocked(t *testing.T) {
	s := NewFileStore(filepath.Join(t.TempDir(), "ipam.json"))
	unlock, err := lockExclusive(context.Background(), s.lockPath())
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	called := false
	err = s.Update(ctx, func(*Registry) error { called = true; return nil })
	if !errors.Is(err, context.Canceled) || called {
		t.Fatalf("Update under a held lock with a cancelled ctx = %v (fn called %v); want context.Canceled", err, called)
	}
	unlock()
	// The abandoned waiter must let go of the lock once it gets it.
	if err := s.Update(context.Background(), func(*Registry) error { called = true; return nil }); err != nil || !called {
		t.Fatalf("Update after unlock = %v, called %v", err, called)
	}
}
