package provisioner_test

import (
	"context"
	"testing"

	"github.com/migrahosting/cloudpods/fixtures/pvesim"
	"github.com/migrahosting/cloudpods/provisioner"
	"github.com/migrahosting/cloudpods/provisioner/internal/simtest"
	"github.com/migrahosting/cloudpods/provisioner/pve"
)

// TestCreateOnBothNetplanLines: the golden template's netplan may be 1.0
// (apply works in a container) or 1.1.x (apply fails at udevadm and leaves
// the address); create sets the address on both and its checks pass.
func TestCreateOnBothNetplanLines(t *testing.T) {
	for _, line := range []string{"1.0", "1.1"} {
		t.Run("netplan "+line, func(t *testing.T) {
			env := simtest.Start(t, func(c *pvesim.Config) { c.Netplan = line })
			prov := simtest.Provisioner(env.API, provisioner.Options{})
			res, err := prov.Create(context.Background(), provisioner.CreateRequest{Spec: seedSpec(9101, "migra-client-01", 91)})
			if err != nil {
				t.Fatalf("create: %v", err)
			}
			ifs, err := env.API.GuestInterfaces(context.Background(), pve.CT("pve", 9101))
			if err != nil {
				t.Fatal(err)
			}
			got := ""
			for _, i := range ifs {
				if i.Name == "eth0" {
					got = i.Inet
				}
			}
			if got != "10.1.10.91/24" {
				t.Errorf("eth0 = %q, want 10.1.10.91/24", got)
			}
			for _, c := range res.Checks {
				if !c.OK {
					t.Errorf("check %s failed: %s", c.Name, c.Detail)
				}
			}
		})
	}
}
