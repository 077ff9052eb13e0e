package ipam

import (
	"context"
	"errors"
	"net/netip"
	"reflect"
	"testing"
	"time"
)

// TestPeekIsWhatReserveHandsOut: Peek answers what Reserve then hands out,
// or refuses as Reserve does, and writes nothing.
func TestPeekIsWhatReserveHandsOut(t *testing.T) {
	ctx := context.Background()
	tests := []struct {
		name    string
		setup   func(t *testing.T, env *testEnv)
		req     Request
		wantIP  string
		wantErr error
	}{
		{name: "the next free pair", req: Request{Hostname: "web", Owner: "o"}, wantIP: "10.1.10.91"},
		{name: "a guest holds the first address", setup: func(t *testing.T, env *testEnv) {
			env.inv.set(Guest{VMID: 130, Type: "qemu", Name: "by-hand", Addrs: []netip.Addr{addr("10.1.10.91")}})
		}, req: Request{Hostname: "web", Owner: "o"}, wantIP: "10.1.10.92"},
		{name: "the owner's lease", setup: func(t *testing.T, env *testEnv) {
			env.reserve(t, Request{Hostname: "other", Owner: "x"})
			env.reserve(t, Request{Hostname: "web", Owner: "o"})
		}, req: Request{Hostname: "web", Owner: "o"}, wantIP: "10.1.10.92"},
		{name: "the owner's expired reservation comes back", setup: func(t *testing.T, env *testEnv) {
			env.reserve(t, Request{Hostname: "other", Owner: "x"})
			env.reserve(t, Request{Hostname: "web", Owner: "o"})
			// Both expire: .91 is free and lower, but .92 was web's.
			env.clock.Advance(DefaultReservationTTL + time.Second)
		}, req: Request{Hostname: "web", Owner: "o"}, wantIP: "10.1.10.92"},
		{name: "an explicit address", req: Request{Hostname: "web", Owner: "o", IP: addr("10.1.10.95"), VMID: 9150}, wantIP: "10.1.10.95"},
		{name: "an explicit address a guest holds", setup: func(t *testing.T, env *testEnv) {
			env.inv.set(Guest{VMID: 130, Type: "qemu", Name: "by-hand", Addrs: []netip.Addr{addr("10.1.10.94")}})
		}, req: Request{Hostname: "web", Owner: "o", IP: addr("10.1.10.94")}, wantErr: ErrAddressInUse},
		{name: "the owner holds other numbers", setup: func(t *testing.T, env *testEnv) {
			env.reserve(t, Request{Hostname: "web", Owner: "o"})
		}, req: Request{Hostname: "web", Owner: "o", IP: addr("10.1.10.95")}, wantErr: ErrLeaseConflict},
		{name: "outside the range", req: Request{Hostname: "web", IP: addr("10.1.10.200")}, wantErr: ErrOutOfRange},
		{name: "nothing free", setup: func(t *testing.T, env *testEnv) {
			for _, h := range []string{"a", "b", "c", "d"} {
				env.reserve(t, Request{Hostname: h, Owner: h})
			}
		}, req: Request{Hostname: "web", Owner: "o"}, wantErr: ErrPoolExhausted},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			env := newTestEnv(t, smallPool(), DefaultVMIDs())
			if tt.setup != nil {
				tt.setup(t, env)
			}
			before, err := env.alloc.List(ctx)
			if err != nil {
				t.Fatal(err)
			}
			peeked, perr := env.alloc.Peek(ctx, tt.req)
			after, _ := env.alloc.List(ctx)
			if !reflect.DeepEqual(before, after) {
				t.Errorf("Peek changed the registry:\n%+v\n%+v", before, after)
			}
			got, rerr := env.alloc.Reserve(ctx, tt.req)
			if tt.wantErr != nil {
				if !errors.Is(perr, tt.wantErr) || !errors.Is(rerr, tt.wantErr) {
					t.Fatalf("Peek: %v, Reserve: %v; want both %v", perr, rerr, tt.wantErr)
				}
				return
			}
			if perr != nil || rerr != nil {
				t.Fatalf("Peek: %v, Reserve: %v", perr, rerr)
			}
			if peeked.IP.String() != tt.wantIP || peeked.IP != got.IP || peeked.VMID != got.VMID {
				t.Errorf("Peek %s/%d, Reserve %s/%d, want %s", peeked.IP, peeked.VMID, got.IP, got.VMID, tt.wantIP)
			}
		})
	}
}
