package provisioner_test

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/migrahosting/cloudpods/provisioner"
)

// TestPreflightRefusesMoreThanTheNodeHas: cores above the node's CPUs,
// memory or swap above its memory fail preflight (exit 3), naming each
// limit as PVE reports it; nothing is created and IPAM keeps nothing.
func TestPreflightRefusesMoreThanTheNodeHas(t *testing.T) {
	tests := []struct {
		name               string
		cores, memory, swp int
		want               []string
	}{
		{"memory", 2, 9223372036854775807 >> 20, 512, []string{"memory is more than node pve has (131072 MB): ask for at most 131072"}},
		{"swap", 2, 2048, 131073, []string{"swap is more than node pve's memory (131072 MB)"}},
		{"cores and memory", 17, 200000, 512, []string{"17 cores is more than node pve has (16 CPUs)", "200000 MB of memory"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			env := newFastEnv(t)
			spec := seedSpec(9101, "migra-client-01", 91)
			spec.Cores, spec.MemoryMB, spec.SwapMB = tt.cores, tt.memory, tt.swp
			_, err := env.provisioner(provisioner.Options{}).Create(context.Background(), provisioner.CreateRequest{Spec: spec})
			var se *provisioner.StepError
			if !errors.As(err, &se) || se.Step != provisioner.StepPreflight || provisioner.KindOf(err) != provisioner.KindPreflight {
				t.Fatalf("err = %v, want a preflight refusal", err)
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("%v does not say %q", err, w)
				}
			}
			if got := env.api.Mutations(0); len(got) != 0 {
				t.Errorf("the refused create changed %s", joined(got))
			}
			if st := env.lease(t, "10.1.10.91"); st == "reserved" || st == "assigned" {
				t.Errorf("IPAM holds 10.1.10.91 (%s)", st)
			}
		})
	}
	// Within bounds: the node's whole memory is allowed.
	env := newFastEnv(t)
	spec := seedSpec(9101, "migra-client-01", 91)
	spec.Cores, spec.MemoryMB, spec.SwapMB = 16, 131072, 131072
	if _, err := env.provisioner(provisioner.Options{}).Create(context.Background(), provisioner.CreateRequest{Spec: spec}); err != nil {
		t.Fatalf("a pod the size of the node: %v", err)
	}
}
