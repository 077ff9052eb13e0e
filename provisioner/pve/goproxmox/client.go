// Package goproxmox is the one implementation of pve.API: REST through
// github.com/luthermonson/go-proxmox over our own transport (typed errors,
// idempotent-only transport retries), and our own termproxy client, since
// the library's refuses API tokens.
package goproxmox

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"sort"
	"strconv"
	"strings"
	"time"

	proxmox "github.com/luthermonson/go-proxmox"
	"github.com/sirupsen/logrus"

	"github.com/migrahosting/cloudpods/provisioner/pve"
)

var (
	_ pve.API = (*Client)(nil)
	// PVE's SDN IPAM is an optional capability of the seam; this adapter
	// has it (sdn.go).
	_ pve.SDN = (*Client)(nil)
)

// Options configure a Client.
type Options struct {
	// URL is PVE's address, https://host:8006 or with /api2/json.
	URL         string
	TokenID     string // user@realm!name
	TokenSecret string
	HTTP        HTTPOptions
	// Console, when set, logs in with a user's password for the console
	// only: the path for PVE releases whose termproxy refuses API tokens.
	Console *ConsoleLogin
	Logger  logrus.FieldLogger
}

// ConsoleLogin is a PVE user (not a token) allowed VM.Console.
type ConsoleLogin struct {
	User     string // e.g. cloudpods-console@pve
	Password string
}

// Client is pve.API over go-proxmox.
type Client struct {
	px      *proxmox.Client
	base    *url.URL // https://host:port/api2/json
	opts    Options
	console *proxmox.Client
	// uploader sends uploads: the network transport with PVE's TLS and
	// typed errors, without the retrying layer (it would buffer the file).
	uploader *http.Client
	tls      *tls.Config
	log      logrus.FieldLogger
	// verdicts: what ConsoleTokenSupport found, for OpenTerminal.
	verdicts consoleVerdicts
}

// NormalizeURL accepts https://host[:port][/api2/json] and returns the API
// base with /api2/json.
func NormalizeURL(raw string) (*url.URL, error) {
	if raw == "" {
		return nil, errors.New("no PVE address: set --pve-url or PVE_URL, e.g. https://pve.example.net:8006")
	}
	if !strings.Contains(raw, "://") {
		raw = "https://" + raw
	}
	u, err := url.Parse(raw)
	if err != nil || u.Host == "" {
		return nil, fmt.Errorf("PVE address %q is not a URL: use https://host:8006", raw)
	}
	if u.Scheme != "https" {
		return nil, fmt.Errorf("PVE address %q is not https: PVE's API only speaks HTTPS on port 8006", raw)
	}
	if u.Port() == "" {
		u.Host += ":8006"
	}
	u.Path = strings.TrimSuffix(u.Path, "/")
	if !strings.HasSuffix(u.Path, "/api2/json") {
		u.Path += "/api2/json"
	}
	u.RawQuery, u.Fragment = "", ""
	return u, nil
}

// New builds a Client. It does not contact PVE.
func New(opts Options) (*Client, error) {
	base, err := NormalizeURL(opts.URL)
	if err != nil {
		return nil, err
	}
	if opts.TokenID == "" || opts.TokenSecret == "" {
		return nil, errors.New("no API token: set PVE_TOKEN_ID and PVE_TOKEN_SECRET, or --token-id and --token-file")
	}
	if !strings.Contains(opts.TokenID, "!") || !strings.Contains(opts.TokenID, "@") {
		return nil, fmt.Errorf("token id %q is not of the form user@realm!name, e.g. cloudpods@pve!provisioner", opts.TokenID)
	}
	if opts.Logger == nil {
		opts.Logger = discard
	}
	opts.HTTP.Logger = opts.Logger
	hc, tlsCfg, err := newHTTPClient(opts.HTTP)
	if err != nil {
		return nil, err
	}
	c := &Client{
		base:     base,
		opts:     opts,
		log:      opts.Logger,
		tls:      tlsCfg,
		uploader: &http.Client{Transport: apiErrorTransport{next: newBaseTransport(opts.HTTP, tlsCfg), apiBase: "/api2/json"}},
		px:       proxmox.NewClient(base.String(), proxmox.WithHTTPClient(hc), proxmox.WithAPIToken(opts.TokenID, opts.TokenSecret)),
	}
	if opts.Console != nil {
		c.console = proxmox.NewClient(base.String(), proxmox.WithHTTPClient(hc),
			proxmox.WithCredentials(&proxmox.Credentials{Username: opts.Console.User, Password: opts.Console.Password}))
	}
	return c, nil
}

// call runs one REST call and returns our typed error, not the http
// package's *url.Error wrapping of it.
func (c *Client) call(ctx context.Context, method, path string, params map[string]string, out interface{}) error {
	var err error
	switch method {
	case "GET":
		if len(params) > 0 {
			err = c.px.GetWithParams(ctx, path, params, out)
		} else {
			err = c.px.Get(ctx, path, out)
		}
	case "POST":
		err = c.px.Post(ctx, path, params, out)
	case "PUT":
		err = c.px.Put(ctx, path, params, out)
	case "DELETE":
		// PVE takes DELETE parameters in the query only.
		if len(params) > 0 {
			err = c.px.DeleteWithParams(ctx, path, params, out)
		} else {
			err = c.px.Delete(ctx, path, out)
		}
	}
	return unwrapURLError(err)
}

func unwrapURLError(err error) error {
	if err == nil {
		return nil
	}
	var apiErr *pve.APIError
	if errors.As(err, &apiErr) {
		return apiErr
	}
	var te *pve.TransportError
	if errors.As(err, &te) {
		return te
	}
	if errors.Is(err, proxmox.ErrNotAuthorized) {
		// Our transport turns 401/403 into APIErrors first; this covers a
		// session login refused inside go-proxmox.
		return fmt.Errorf("%w: %v", pve.ErrUnauthorized, err)
	}
	return err
}

func (c *Client) Version(ctx context.Context) (pve.Version, error) {
	var v pve.Version
	err := c.call(ctx, "GET", "/version", nil, &v)
	return v, err
}

func (c *Client) Permissions(ctx context.Context) (pve.Permissions, error) {
	var raw map[string]map[string]json.Number
	if err := c.call(ctx, "GET", "/access/permissions", nil, &raw); err != nil {
		return nil, err
	}
	perms := pve.Permissions{}
	for path, privs := range raw {
		perms[path] = map[string]bool{}
		for p := range privs {
			perms[path][p] = true
		}
	}
	return perms, nil
}

func (c *Client) NodeStatus(ctx context.Context, node string) (pve.NodeStatus, error) {
	var nodes []struct {
		Node   string `json:"node"`
		Status string `json:"status"`
		Uptime int64  `json:"uptime"`
	}
	if err := c.call(ctx, "GET", "/nodes", nil, &nodes); err != nil {
		return pve.NodeStatus{}, err
	}
	for _, n := range nodes {
		if n.Node == node {
			st := pve.NodeStatus{Node: n.Node, Online: n.Status == "online", Uptime: time.Duration(n.Uptime) * time.Second}
			if st.Online {
				var detail struct {
					PVEVersion string `json:"pveversion"`
					CPUInfo    struct {
						CPUs flexInt `json:"cpus"`
					} `json:"cpuinfo"`
					Memory struct {
						Total flexInt64 `json:"total"`
						Used  flexInt64 `json:"used"`
					} `json:"memory"`
					CPU float64 `json:"cpu"`
				}
				if err := c.call(ctx, "GET", "/nodes/"+url.PathEscape(node)+"/status", nil, &detail); err != nil {
					return st, err
				}
				st.PVEVersion = detail.PVEVersion
				st.CPUs, st.Memory = int(detail.CPUInfo.CPUs), int64(detail.Memory.Total)
				st.CPULoad, st.MemoryUsed = detail.CPU, int64(detail.Memory.Used)
			}
			return st, nil
		}
	}
	return pve.NodeStatus{}, fmt.Errorf("node %q: %w", node, pve.ErrNotFound)
}

func (c *Client) Storages(ctx context.Context, node string) ([]pve.Storage, error) {
	var raw []struct {
		Storage string    `json:"storage"`
		Type    string    `json:"type"`
		Content string    `json:"content"`
		Active  flexInt   `json:"active"`
		Enabled flexInt   `json:"enabled"`
		Shared  flexInt   `json:"shared"`
		Total   flexInt64 `json:"total"`
		Used    flexInt64 `json:"used"`
		Avail   flexInt64 `json:"avail"`
	}
	if err := c.call(ctx, "GET", "/nodes/"+url.PathEscape(node)+"/storage", nil, &raw); err != nil {
		return nil, err
	}
	out := make([]pve.Storage, 0, len(raw))
	for _, s := range raw {
		out = append(out, pve.Storage{ID: s.Storage, Type: s.Type, Content: splitList(s.Content), Active: s.Active == 1,
			Enabled: s.Enabled == 1, Shared: s.Shared == 1, Total: int64(s.Total), Used: int64(s.Used), Avail: int64(s.Avail)})
	}
	return out, nil
}

func (c *Client) NetworkInterfaces(ctx context.Context, node string) ([]pve.HostInterface, error) {
	var raw []struct {
		Iface  string  `json:"iface"`
		Type   string  `json:"type"`
		Active flexInt `json:"active"`
	}
	if err := c.call(ctx, "GET", "/nodes/"+url.PathEscape(node)+"/network", nil, &raw); err != nil {
		return nil, err
	}
	out := make([]pve.HostInterface, 0, len(raw))
	for _, r := range raw {
		out = append(out, pve.HostInterface{Name: r.Iface, Type: r.Type, Active: r.Active == 1})
	}
	return out, nil
}

func (c *Client) Guests(ctx context.Context) ([]pve.Guest, error) {
	var raw []struct {
		VMID     flexInt   `json:"vmid"`
		Type     string    `json:"type"`
		Node     string    `json:"node"`
		Name     string    `json:"name"`
		Status   string    `json:"status"`
		Template flexInt   `json:"template"`
		Lock     string    `json:"lock"`
		Tags     string    `json:"tags"`
		Uptime   flexInt64 `json:"uptime"`
		MaxCPU   flexFloat `json:"maxcpu"`
		MaxMem   flexInt64 `json:"maxmem"`
		MaxDisk  flexInt64 `json:"maxdisk"`
		Mem      flexInt64 `json:"mem"`
	}
	if err := c.call(ctx, "GET", "/cluster/resources", map[string]string{"type": "vm"}, &raw); err != nil {
		return nil, err
	}
	out := make([]pve.Guest, 0, len(raw))
	for _, g := range raw {
		out = append(out, pve.Guest{VMID: int(g.VMID), Type: pve.GuestKind(g.Type), Node: g.Node, Name: g.Name, Status: g.Status,
			Template: g.Template == 1, Lock: g.Lock, Tags: g.Tags, Uptime: time.Duration(g.Uptime) * time.Second,
			MaxCPU: float64(g.MaxCPU), MaxMem: int64(g.MaxMem), MaxDisk: int64(g.MaxDisk), Mem: int64(g.Mem)})
	}
	return out, nil
}

func (c *Client) Nodes(ctx context.Context) ([]pve.Node, error) {
	var raw []struct {
		Node   string    `json:"node"`
		Status string    `json:"status"`
		CPU    float64   `json:"cpu"`
		MaxCPU flexInt   `json:"maxcpu"`
		Mem    flexInt64 `json:"mem"`
		MaxMem flexInt64 `json:"maxmem"`
	}
	if err := c.call(ctx, "GET", "/cluster/resources", map[string]string{"type": "node"}, &raw); err != nil {
		return nil, err
	}
	out := make([]pve.Node, 0, len(raw))
	for _, n := range raw {
		out = append(out, pve.Node{Name: n.Node, Status: n.Status, CPU: n.CPU, MaxCPU: int(n.MaxCPU), Mem: int64(n.Mem), MaxMem: int64(n.MaxMem)})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out, nil
}

func (c *Client) VMIDFree(ctx context.Context, vmid int) (bool, error) {
	var id json.RawMessage
	err := c.call(ctx, "GET", "/cluster/nextid", map[string]string{"vmid": strconv.Itoa(vmid)}, &id)
	if errors.Is(err, pve.ErrAlreadyExists) {
		return false, nil
	}
	return err == nil, err
}

func (c *Client) Backup(ctx context.Context, node string, o pve.BackupOptions) (string, error) {
	p := map[string]string{"vmid": strconv.Itoa(o.VMID)}
	setIf(p, "storage", o.Storage)
	setIf(p, "mode", o.Mode)
	setIf(p, "compress", o.Compress)
	setIf(p, "notes-template", o.NotesTemplate)
	var upid string
	err := c.call(ctx, "POST", "/nodes/"+url.PathEscape(node)+"/vzdump", p, &upid)
	return upid, err
}

func (c *Client) StorageContent(ctx context.Context, node, storage, content string) ([]pve.Volume, error) {
	var raw []struct {
		VolID   string    `json:"volid"`
		Content string    `json:"content"`
		Format  string    `json:"format"`
		Size    flexInt64 `json:"size"`
		CTime   flexInt64 `json:"ctime"`
		VMID    flexInt   `json:"vmid"`
		Notes   string    `json:"notes"`
		Subtype string    `json:"subtype"`
	}
	var params map[string]string
	if content != "" {
		params = map[string]string{"content": content}
	}
	if err := c.call(ctx, "GET", "/nodes/"+url.PathEscape(node)+"/storage/"+url.PathEscape(storage)+"/content", params, &raw); err != nil {
		return nil, err
	}
	out := make([]pve.Volume, 0, len(raw))
	for _, v := range raw {
		out = append(out, pve.Volume{VolID: v.VolID, Content: v.Content, Format: v.Format, Size: int64(v.Size), CTime: time.Unix(int64(v.CTime), 0),
			VMID: int(v.VMID), Notes: v.Notes, Subtype: v.Subtype})
	}
	return out, nil
}

func (c *Client) TaskStatus(ctx context.Context, node, upid string) (pve.TaskStatus, error) {
	var raw taskFields
	if err := c.call(ctx, "GET", "/nodes/"+url.PathEscape(node)+"/tasks/"+url.PathEscape(upid)+"/status", nil, &raw); err != nil {
		return pve.TaskStatus{}, err
	}
	return raw.status(), nil
}

func (c *Client) TaskLog(ctx context.Context, node, upid string, start, limit int) ([]string, error) {
	var lines []struct {
		N int    `json:"n"`
		T string `json:"t"`
	}
	params := map[string]string{"start": strconv.Itoa(start), "limit": strconv.Itoa(limit)}
	if err := c.call(ctx, "GET", "/nodes/"+url.PathEscape(node)+"/tasks/"+url.PathEscape(upid)+"/log", params, &lines); err != nil {
		return nil, err
	}
	out := make([]string, 0, len(lines))
	for _, l := range lines {
		out = append(out, l.T)
	}
	return out, nil
}

func setIf(m map[string]string, k, v string) {
	if v != "" {
		m[k] = v
	}
}

func splitList(s string) []string {
	if s == "" {
		return nil
	}
	return strings.Split(s, ",")
}

// flexInt decodes PVE's integers, which arrive as numbers or strings.
type flexInt int

func (f *flexInt) UnmarshalJSON(b []byte) error {
	var v flexInt64
	if err := v.UnmarshalJSON(b); err != nil {
		return err
	}
	*f = flexInt(v)
	return nil
}

type flexInt64 int64

// flexFloat decodes PVE's numbers that may have a fraction (a CT's
// cpulimit as maxcpu), as numbers or strings.
type flexFloat float64

func (f *flexFloat) UnmarshalJSON(b []byte) error {
	s := strings.Trim(string(b), `"`)
	if s == "" || s == "null" {
		*f = 0
		return nil
	}
	x, err := strconv.ParseFloat(s, 64)
	if err != nil {
		return fmt.Errorf("not a number: %s", b)
	}
	*f = flexFloat(x)
	return nil
}

func (f *flexInt64) UnmarshalJSON(b []byte) error {
	s := strings.Trim(string(b), `"`)
	if s == "" || s == "null" {
		*f = 0
		return nil
	}
	if n, err := strconv.ParseInt(s, 10, 64); err == nil {
		*f = flexInt64(n)
		return nil
	}
	x, err := strconv.ParseFloat(s, 64)
	if err != nil {
		return fmt.Errorf("not a number: %s", b)
	}
	*f = flexInt64(x)
	return nil
}
