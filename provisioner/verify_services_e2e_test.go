package provisioner_test

import (
	"context"
	"strings"
	"testing"

	"github.com/migrahosting/cloudpods/provisioner"
	"github.com/migrahosting/cloudpods/provisioner/internal/simtest"
)

// TestVerifyWarnsOfAnInactiveService: README's verify step, a service that
// is not active is a warning, not a failure; the pod is made and running.
func TestVerifyWarnsOfAnInactiveService(t *testing.T) {
	env := simtest.Start(t, nil)
	prov := simtest.Provisioner(env.API, provisioner.Options{})
	services := append([]string{"cloudpods-absent"}, provisioner.DefaultServices...)
	res, err := prov.Create(context.Background(), provisioner.CreateRequest{Spec: seedSpec(9101, "migra-client-01", 91), Services: services})
	if err != nil {
		t.Fatalf("create failed on an inactive service: %v", err)
	}
	if res.Status != "running" {
		t.Errorf("CT 9101 is %s, want running", res.Status)
	}
	warned := false
	for _, w := range res.Warnings {
		warned = warned || strings.Contains(w, "service cloudpods-absent is not active")
	}
	if !warned {
		t.Errorf("no warning of the inactive service: %q", res.Warnings)
	}
	for _, c := range res.Checks {
		if c.Name == "service cloudpods-absent" && c.OK {
			t.Errorf("check %+v: an absent unit reads as active", c)
		}
	}
}
