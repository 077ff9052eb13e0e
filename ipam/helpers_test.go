package ipam

import (
	"context"
	"net/netip"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"
)

// staticInventory is a PVE cluster whose guests the test sets.
type staticInventory struct {
	mu     sync.Mutex
	guests []Guest
	err    error
}

func (s *staticInventory) Used(ctx context.Context) ([]Guest, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.err != nil {
		return nil, s.err
	}
	return slices.Clone(s.guests), nil
}

func (s *staticInventory) set(gs ...Guest) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.guests = gs
}

type fakeClock struct {
	mu  sync.Mutex
	now time.Time
}

func newFakeClock() *fakeClock {
	return &fakeClock{now: time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)}
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

func addr(s string) netip.Addr { return netip.MustParseAddr(s) }

// smallPool is 10.1.10.0/24 with .91–.95 allocatable and .93 reserved.
func smallPool() Pool {
	p := DefaultPool()
	p.Reserved = []netip.Addr{addr("10.1.10.90"), addr("10.1.10.93")}
	p.Last = addr("10.1.10.95")
	return p
}

type testEnv struct {
	alloc *Allocator
	store *FileStore
	inv   *staticInventory
	clock *fakeClock
}

func newTestEnv(t *testing.T, pool Pool, vmids VMIDRange, opts ...Option) *testEnv {
	t.Helper()
	env := &testEnv{
		store: NewFileStore(filepath.Join(t.TempDir(), "ipam.json")),
		inv:   &staticInventory{},
		clock: newFakeClock(),
	}
	a, err := New(env.store, pool, vmids, env.inv, append([]Option{WithClock(env.clock.Now)}, opts...)...)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	env.alloc = a
	return env
}

func (e *testEnv) reserve(t *testing.T, req Request) Lease {
	t.Helper()
	l, err := e.alloc.Reserve(context.Background(), req)
	if err != nil {
		t.Fatalf("Reserve(%+v): %v", req, err)
	}
	return l
}
