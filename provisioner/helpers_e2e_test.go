package provisioner_test

import (
	"context"

	"github.com/migrahosting/cloudpods/provisioner/internal/simtest"
	"github.com/migrahosting/cloudpods/provisioner/pve"
)

func cloneOpts(vmid int) pve.CloneOptions {
	return pve.CloneOptions{NewID: vmid, Hostname: "naive", Full: true, Storage: "clients-main"}
}

func configUpdate(key, value string) pve.ConfigUpdate {
	return pve.ConfigUpdate{Set: map[string]string{key: value}}
}

func waitTask(ctx context.Context, env *simtest.Env, upid string) (pve.TaskStatus, error) {
	return pve.WaitTask(ctx, env.API, "pve", upid, pve.WaitOptions{})
}
