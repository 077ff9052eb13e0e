package goproxmox

import (
	"context"
	"net/url"
	"strconv"

	"github.com/migrahosting/cloudpods/provisioner/pve"
)

func (c *Client) ResizeDisk(ctx context.Context, g pve.GuestRef, disk, size string) (string, error) {
	return c.task(ctx, "PUT", g, "/resize", map[string]string{"disk": disk, "size": size})
}

func (c *Client) AgentPing(ctx context.Context, g pve.GuestRef) error {
	return c.guestCall(ctx, "POST", g, "/agent/ping", nil, nil)
}

// AgentExec sends command as a JSON array: PVE takes an array parameter
// only as repeated form keys or in a JSON body (pve-http-server
// AnyEvent.pm), and go-proxmox posts JSON.
func (c *Client) AgentExec(ctx context.Context, g pve.GuestRef, argv []string, input string) (int, error) {
	path, err := guestPath(g, "/agent/exec")
	if err != nil {
		return 0, err
	}
	body := map[string]any{"command": argv}
	if input != "" {
		body["input-data"] = input
	}
	var out struct {
		PID flexInt `json:"pid"`
	}
	if err := unwrapURLError(c.px.Post(ctx, path, body, &out)); err != nil {
		return 0, err
	}
	return int(out.PID), nil
}

func (c *Client) AgentExecStatus(ctx context.Context, g pve.GuestRef, pid int) (pve.ExecStatus, error) {
	var raw struct {
		Exited       flexInt `json:"exited"`
		ExitCode     flexInt `json:"exitcode"`
		Signal       flexInt `json:"signal"`
		Out          string  `json:"out-data"`
		Err          string  `json:"err-data"`
		OutTruncated flexInt `json:"out-truncated"`
		ErrTruncated flexInt `json:"err-truncated"`
	}
	if err := c.guestCall(ctx, "GET", g, "/agent/exec-status", map[string]string{"pid": strconv.Itoa(pid)}, &raw); err != nil {
		return pve.ExecStatus{}, err
	}
	return pve.ExecStatus{Exited: raw.Exited == 1, ExitCode: int(raw.ExitCode), Signal: int(raw.Signal), Out: raw.Out, Err: raw.Err,
		OutTruncated: raw.OutTruncated == 1, ErrTruncated: raw.ErrTruncated == 1}, nil
}

func (c *Client) Mappings(ctx context.Context, typ string) ([]pve.Mapping, error) {
	var raw []struct {
		ID          string   `json:"id"`
		Description string   `json:"description"`
		Map         []string `json:"map"`
	}
	if err := c.call(ctx, "GET", "/cluster/mapping/"+url.PathEscape(typ), nil, &raw); err != nil {
		return nil, err
	}
	out := make([]pve.Mapping, 0, len(raw))
	for _, m := range raw {
		out = append(out, pve.Mapping{ID: m.ID, Description: m.Description, Map: m.Map})
	}
	return out, nil
}
