package pvetest

import (
	"context"
	"fmt"
	"strconv"
	"strings"

	"github.com/migrahosting/cloudpods/provisioner/pve"
)

// VM calls of the fake: a resize that changes the disk's size= field, a
// guest agent that answers for the VMs Agents names, and the mappings
// MappingList holds.

func (f *Fake) ResizeDisk(ctx context.Context, g pve.GuestRef, disk, size string) (string, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	before, after := f.enter("ResizeDisk", g, disk+" "+size)
	if before != nil {
		return "", before
	}
	got, ok := f.guest(g)
	if !ok {
		return "", notFound("PUT", g, "/resize")
	}
	v, ok := got.Config[disk]
	if !ok {
		return "", refused("PUT", g, "/resize", fmt.Sprintf("disk '%s' does not exist", disk))
	}
	upid, ok := f.startTask(g.Node, "resize", strconv.Itoa(g.VMID))
	if ok {
		got.Config[disk] = withField(v, "size", strings.TrimPrefix(size, "+"))
	}
	return answer(upid, after)
}

// agent is assert_agent_available: the config enables it, the VM runs, and
// the fake was told the guest has one (Agents).
func (f *Fake) agent(method string, g pve.GuestRef, rest string) ([]pve.GuestInterface, error) {
	got, ok := f.guest(g)
	switch {
	case !ok:
		return nil, notFound("POST", g, rest)
	case got.Config["agent"] == "" || strings.HasPrefix(got.Config["agent"], "0") || strings.Contains(got.Config["agent"], "enabled=0"):
		return nil, refused(method, g, rest, "No QEMU guest agent configured")
	case got.Status != "running":
		return nil, refused(method, g, rest, fmt.Sprintf("VM %d is not running", g.VMID))
	}
	ifs, ok := f.Agents[g.VMID]
	if !ok {
		return nil, refused(method, g, rest, "QEMU guest agent is not running")
	}
	return ifs, nil
}

func (f *Fake) AgentPing(ctx context.Context, g pve.GuestRef) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err, _ := f.enter("AgentPing", g, ""); err != nil {
		return err
	}
	_, err := f.agent("POST", g, "/agent/ping")
	return err
}

func (f *Fake) AgentExec(ctx context.Context, g pve.GuestRef, argv []string, input string) (int, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err, _ := f.enter("AgentExec", g, strings.Join(argv, " ")); err != nil {
		return 0, err
	}
	if _, err := f.agent("POST", g, "/agent/exec"); err != nil {
		return 0, err
	}
	out, code := "", 0
	if f.AgentRun != nil {
		out, code = f.AgentRun(g.VMID, argv)
	}
	f.seq++
	if f.execs == nil {
		f.execs = map[int]pve.ExecStatus{}
	}
	f.execs[f.seq] = pve.ExecStatus{Exited: true, ExitCode: code, Out: out}
	return f.seq, nil
}

func (f *Fake) AgentExecStatus(ctx context.Context, g pve.GuestRef, pid int) (pve.ExecStatus, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err, _ := f.enter("AgentExecStatus", g, strconv.Itoa(pid)); err != nil {
		return pve.ExecStatus{}, err
	}
	if _, err := f.agent("GET", g, "/agent/exec-status"); err != nil {
		return pve.ExecStatus{}, err
	}
	st, ok := f.execs[pid]
	if !ok {
		return pve.ExecStatus{}, refused("GET", g, "/agent/exec-status", "Agent error: Invalid parameter 'pid'")
	}
	delete(f.execs, pid)
	return st, nil
}

func (f *Fake) Mappings(ctx context.Context, typ string) ([]pve.Mapping, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err, _ := f.enter("Mappings", pve.GuestRef{}, typ); err != nil {
		return nil, err
	}
	return append([]pve.Mapping(nil), f.MappingList[typ]...), nil
}
