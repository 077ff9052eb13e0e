package goproxmox

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/migrahosting/cloudpods/provisioner/pve"
)

// Guest calls: containers live under /nodes/{node}/lxc/{vmid}, VMs under
// /nodes/{node}/qemu/{vmid}, with the same sub-paths wherever PVE offers
// the same call for both.

// guestPath is the API path of g plus rest ("/config", "" for the guest
// itself).
func guestPath(g pve.GuestRef, rest string) (string, error) {
	if !g.Kind.Valid() {
		return "", fmt.Errorf("guest %d on node %s: kind %q is neither lxc nor qemu", g.VMID, g.Node, g.Kind)
	}
	return "/nodes/" + url.PathEscape(g.Node) + "/" + string(g.Kind) + "/" + strconv.Itoa(g.VMID) + rest, nil
}

// guestCall is call on a path of g.
func (c *Client) guestCall(ctx context.Context, method string, g pve.GuestRef, rest string, params map[string]string, out interface{}) error {
	path, err := guestPath(g, rest)
	if err != nil {
		return err
	}
	return c.call(ctx, method, path, params, out)
}

// task is a call answered by a worker task's UPID.
func (c *Client) task(ctx context.Context, method string, g pve.GuestRef, rest string, params map[string]string) (string, error) {
	var upid string
	err := c.guestCall(ctx, method, g, rest, params, &upid)
	return upid, err
}

func (c *Client) GuestConfig(ctx context.Context, g pve.GuestRef) (pve.Config, error) {
	var raw map[string]json.RawMessage
	if err := c.guestCall(ctx, "GET", g, "/config", nil, &raw); err != nil {
		return pve.Config{}, err
	}
	cfg := pve.Config{Values: make(map[string]string, len(raw))}
	for k, v := range raw {
		var s string
		if json.Unmarshal(v, &s) != nil {
			s = strings.TrimSpace(string(v)) // numbers stay in PVE's text form
		}
		if k == "digest" {
			cfg.Digest = s
			continue
		}
		cfg.Values[k] = s
	}
	return cfg, nil
}

func configParams(upd pve.ConfigUpdate) map[string]string {
	p := make(map[string]string, len(upd.Set)+2)
	for k, v := range upd.Set {
		p[k] = v
	}
	if len(upd.Delete) > 0 {
		p["delete"] = strings.Join(upd.Delete, ",")
	}
	setIf(p, "digest", upd.Digest)
	return p
}

func (c *Client) UpdateGuestConfig(ctx context.Context, g pve.GuestRef, upd pve.ConfigUpdate) error {
	return c.guestCall(ctx, "PUT", g, "/config", configParams(upd), nil)
}

// errNoAsyncConfig: PVE's containers have only the synchronous PUT.
var errNoAsyncConfig = errors.New("containers have no asynchronous config update (POST …/config is a VM's): use UpdateGuestConfig")

func (c *Client) UpdateGuestConfigAsync(ctx context.Context, g pve.GuestRef, upd pve.ConfigUpdate) (pve.Started, error) {
	if g.Kind != pve.QEMU {
		return pve.Started{}, fmt.Errorf("%s: %w", g, errNoAsyncConfig)
	}
	// The answer is the worker's UPID, or null when it had nothing to do.
	var upid *string
	if err := c.guestCall(ctx, "POST", g, "/config", configParams(upd), &upid); err != nil {
		return pve.Started{}, err
	}
	if upid == nil {
		return pve.Started{}, nil
	}
	return pve.Started{UPID: *upid}, nil
}

func (c *Client) GuestStatus(ctx context.Context, g pve.GuestRef) (pve.GuestStatus, error) {
	var raw struct {
		VMID    flexInt   `json:"vmid"`
		Status  string    `json:"status"`
		Name    string    `json:"name"`
		Lock    string    `json:"lock"`
		Uptime  flexInt64 `json:"uptime"`
		CPU     float64   `json:"cpu"`
		CPUs    flexInt   `json:"cpus"`
		Mem     flexInt64 `json:"mem"`
		MaxMem  flexInt64 `json:"maxmem"`
		Disk    flexInt64 `json:"disk"`
		MaxDisk flexInt64 `json:"maxdisk"`
		Swap    flexInt64 `json:"swap"`
		MaxSwap flexInt64 `json:"maxswap"`
		Tags    string    `json:"tags"`
		HA      struct {
			Managed flexInt `json:"managed"`
		} `json:"ha"`
	}
	if err := c.guestCall(ctx, "GET", g, "/status/current", nil, &raw); err != nil {
		return pve.GuestStatus{}, err
	}
	return pve.GuestStatus{VMID: int(raw.VMID), Status: raw.Status, Name: raw.Name, Lock: raw.Lock,
		Uptime: time.Duration(raw.Uptime) * time.Second, CPU: raw.CPU, CPUs: int(raw.CPUs), Mem: int64(raw.Mem),
		MaxMem: int64(raw.MaxMem), Disk: int64(raw.Disk), MaxDisk: int64(raw.MaxDisk), Swap: int64(raw.Swap),
		MaxSwap: int64(raw.MaxSwap), HA: raw.HA.Managed == 1, Tags: raw.Tags}, nil
}

func (c *Client) GuestInterfaces(ctx context.Context, g pve.GuestRef) ([]pve.GuestInterface, error) {
	if g.Kind == pve.QEMU {
		return c.agentInterfaces(ctx, g)
	}
	var raw []struct {
		Name   string `json:"name"`
		HWAddr string `json:"hwaddr"`
		Inet   string `json:"inet"`
		Inet6  string `json:"inet6"`
	}
	if err := c.guestCall(ctx, "GET", g, "/interfaces", nil, &raw); err != nil {
		return nil, err
	}
	out := make([]pve.GuestInterface, 0, len(raw))
	for _, r := range raw {
		out = append(out, pve.GuestInterface{Name: r.Name, HWAddr: r.HWAddr, Inet: r.Inet, Inet6: r.Inet6})
	}
	return out, nil
}

// agentInterfaces asks a VM's guest agent (qemu-guest-agent's
// guest-network-get-interfaces, wrapped in {"result": …}); the first
// address of each family becomes Inet and Inet6, as a container reports
// them. PVE answers 500 "QEMU guest agent is not running" while the agent
// is not up.
func (c *Client) agentInterfaces(ctx context.Context, g pve.GuestRef) ([]pve.GuestInterface, error) {
	var raw struct {
		Result []struct {
			Name   string `json:"name"`
			HWAddr string `json:"hardware-address"`
			Addrs  []struct {
				IP     string  `json:"ip-address"`
				Type   string  `json:"ip-address-type"`
				Prefix flexInt `json:"prefix"`
			} `json:"ip-addresses"`
		} `json:"result"`
	}
	if err := c.guestCall(ctx, "GET", g, "/agent/network-get-interfaces", nil, &raw); err != nil {
		return nil, err
	}
	out := make([]pve.GuestInterface, 0, len(raw.Result))
	for _, r := range raw.Result {
		gi := pve.GuestInterface{Name: r.Name, HWAddr: r.HWAddr}
		for _, a := range r.Addrs {
			cidr := a.IP + "/" + strconv.Itoa(int(a.Prefix))
			switch {
			case a.Type == "ipv4" && gi.Inet == "":
				gi.Inet = cidr
			case a.Type == "ipv6" && gi.Inet6 == "":
				gi.Inet6 = cidr
			}
		}
		out = append(out, gi)
	}
	return out, nil
}

func (c *Client) Snapshots(ctx context.Context, g pve.GuestRef) ([]pve.Snapshot, error) {
	var raw []struct {
		Name        string `json:"name"`
		Description string `json:"description"`
	}
	if err := c.guestCall(ctx, "GET", g, "/snapshot", nil, &raw); err != nil {
		return nil, err
	}
	var out []pve.Snapshot
	for _, s := range raw {
		if s.Name == "current" { // PVE lists the live state as a pseudo-snapshot
			continue
		}
		out = append(out, pve.Snapshot{Name: s.Name, Description: s.Description})
	}
	return out, nil
}

func (c *Client) CloneGuest(ctx context.Context, source pve.GuestRef, o pve.CloneOptions) (string, error) {
	p := map[string]string{"newid": strconv.Itoa(o.NewID)}
	// The same name is a container's hostname and a VM's name.
	name := "hostname"
	if source.Kind == pve.QEMU {
		name = "name"
	}
	setIf(p, name, o.Hostname)
	setIf(p, "description", o.Description)
	setIf(p, "pool", o.Pool)
	if o.Full {
		p["full"] = "1"
		setIf(p, "storage", o.Storage) // PVE refuses storage for linked clones
	}
	if o.Target != source.Node {
		setIf(p, "target", o.Target)
	}
	return c.task(ctx, "POST", source, "/clone", p)
}

func (c *Client) MigrateGuest(ctx context.Context, g pve.GuestRef, target string, o pve.MigrateOptions) (string, error) {
	p := map[string]string{"target": target}
	if o.Restart && g.Kind == pve.LXC {
		p["restart"] = "1"
	}
	if o.TargetStorage != "" {
		key := "target-storage"
		if g.Kind == pve.QEMU {
			key = "targetstorage"
		}
		p[key] = o.TargetStorage
	}
	return c.task(ctx, "POST", g, "/migrate", p)
}

func (c *Client) StartGuest(ctx context.Context, g pve.GuestRef) (string, error) {
	return c.task(ctx, "POST", g, "/status/start", nil)
}

func (c *Client) ShutdownGuest(ctx context.Context, g pve.GuestRef, timeout time.Duration, forceStop bool) (string, error) {
	p := map[string]string{"timeout": strconv.Itoa(int(timeout.Seconds()))}
	if forceStop {
		p["forceStop"] = "1"
	}
	return c.task(ctx, "POST", g, "/status/shutdown", p)
}

func (c *Client) StopGuest(ctx context.Context, g pve.GuestRef) (string, error) {
	return c.task(ctx, "POST", g, "/status/stop", nil)
}

func (c *Client) DeleteGuest(ctx context.Context, g pve.GuestRef, o pve.DeleteOptions) (string, error) {
	p := map[string]string{}
	if o.Force {
		if g.Kind == pve.QEMU {
			return "", fmt.Errorf("delete %s: VMs have no force option: stop the VM first", g)
		}
		p["force"] = "1"
	}
	if o.Purge {
		p["purge"] = "1"
	}
	if o.DestroyUnreferencedDisks {
		p["destroy-unreferenced-disks"] = "1"
	}
	return c.task(ctx, "DELETE", g, "", p)
}

func (c *Client) ConvertToTemplate(ctx context.Context, g pve.GuestRef) (pve.Started, error) {
	// qemu answers the qmtemplate task's UPID; lxc answers null although
	// it forks a vztemplate worker.
	var upid *string
	if err := c.guestCall(ctx, "POST", g, "/template", nil, &upid); err != nil {
		return pve.Started{}, err
	}
	if upid == nil {
		return pve.Started{}, nil
	}
	return pve.Started{UPID: *upid}, nil
}

func (c *Client) CreateGuest(ctx context.Context, g pve.GuestRef, params map[string]string) (string, error) {
	if !g.Kind.Valid() {
		return "", fmt.Errorf("create guest %d on node %s: kind %q is neither lxc nor qemu", g.VMID, g.Node, g.Kind)
	}
	p := make(map[string]string, len(params)+1)
	for k, v := range params {
		p[k] = v
	}
	p["vmid"] = strconv.Itoa(g.VMID)
	var upid string
	err := c.call(ctx, "POST", "/nodes/"+url.PathEscape(g.Node)+"/"+string(g.Kind), p, &upid)
	return upid, err
}
