package goproxmox

import (
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/migrahosting/cloudpods/provisioner/pve"
)

// The guest calls for VMs, against a server that answers as PVE's
// /nodes/{node}/qemu/{vmid}/… does (pvesim serves containers; its VMs are
// read-only for now). Containers take the same code with kind lxc, which
// every end-to-end test exercises.

// request is what the server received.
type request struct {
	Method, Path string
	Params       map[string]string
}

// pveServer answers each "METHOD path" with the data of its route, as
// PVE's {"data": …} envelope, and records the requests.
type pveServer struct {
	mu     sync.Mutex
	got    []request
	routes map[string]string // "POST /nodes/pve/qemu/9201/template" → JSON data
	srv    *httptest.Server
}

func newPVEServer(t *testing.T, routes map[string]string) (*pveServer, *Client) {
	t.Helper()
	s := &pveServer{routes: routes}
	s.srv = httptest.NewTLSServer(http.HandlerFunc(s.serve))
	t.Cleanup(s.srv.Close)
	sum := sha256.Sum256(s.srv.Certificate().Raw)
	c, err := New(Options{URL: s.srv.URL, TokenID: "cloudpods@pve!provisioner", TokenSecret: "s3cret",
		HTTP: HTTPOptions{TLS: TLSOptions{Fingerprint: formatFingerprint(sum[:])}, Timeout: 5 * time.Second, Retries: 1}})
	if err != nil {
		t.Fatal(err)
	}
	return s, c
}

func (s *pveServer) serve(w http.ResponseWriter, r *http.Request) {
	path := strings.TrimPrefix(r.URL.Path, "/api2/json")
	if websocket.IsWebSocketUpgrade(r) {
		s.record(request{Method: r.Method, Path: path, Params: map[string]string{"port": r.URL.Query().Get("port"), "vncticket": r.URL.Query().Get("vncticket")}})
		s.console(w, r)
		return
	}
	params := map[string]string{}
	for k, v := range r.URL.Query() {
		params[k] = v[0]
	}
	if b, _ := io.ReadAll(r.Body); len(b) > 0 {
		var body map[string]interface{}
		if err := json.Unmarshal(b, &body); err != nil {
			http.Error(w, "not JSON", http.StatusBadRequest)
			return
		}
		for k, v := range body {
			params[k] = v.(string)
		}
	}
	s.record(request{Method: r.Method, Path: path, Params: params})
	data, ok := s.routes[r.Method+" "+path]
	if !ok {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusNotImplemented)
		_, _ = w.Write([]byte(`{"data":null,"message":"Method '` + r.Method + ` ` + path + `' not implemented"}`))
		return
	}
	w.Header().Set("Content-Type", "application/json")
	_, _ = w.Write([]byte(`{"data":` + data + `}`))
}

// console is termproxy's side of the vncwebsocket: "user:ticket\n" → "OK",
// then an echo of what the client sends as "0:LEN:DATA".
func (s *pveServer) console(w http.ResponseWriter, r *http.Request) {
	up := websocket.Upgrader{Subprotocols: []string{"binary"}}
	conn, err := up.Upgrade(w, r, nil)
	if err != nil {
		return
	}
	defer conn.Close()
	if _, msg, err := conn.ReadMessage(); err != nil || string(msg) != "root@pam:PVEVNC:TICKET\n" {
		return
	}
	_ = conn.WriteMessage(websocket.BinaryMessage, []byte("OK"))
	for {
		_, msg, err := conn.ReadMessage()
		if err != nil {
			return
		}
		if parts := strings.SplitN(string(msg), ":", 3); len(parts) == 3 && parts[0] == "0" {
			_ = conn.WriteMessage(websocket.BinaryMessage, []byte(parts[2]))
		}
	}
}

func (s *pveServer) record(r request) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.got = append(s.got, r)
}

func (s *pveServer) requests() []request {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]request(nil), s.got...)
}

const upid = `"UPID:pve:00001234:00ABCDEF:65A0B1C2:qmstart:9201:cloudpods@pve!provisioner:"`

func TestVMCalls(t *testing.T) {
	vm := pve.VM("pve", 9201)
	tests := []struct {
		name  string
		route string // METHOD path
		data  string
		call  func(c *Client) (interface{}, error)
		want  interface{}
		// params the request must carry
		params map[string]string
	}{
		{name: "config", route: "GET /nodes/pve/qemu/9201/config",
			data: `{"name":"vm-01","cores":2,"memory":"2048","ipconfig0":"ip=10.1.10.95/24,gw=10.1.10.1","digest":"abc"}`,
			call: func(c *Client) (interface{}, error) { return c.GuestConfig(context.Background(), vm) },
			want: pve.Config{Values: map[string]string{"name": "vm-01", "cores": "2", "memory": "2048", "ipconfig0": "ip=10.1.10.95/24,gw=10.1.10.1"}, Digest: "abc"}},
		{name: "config update, synchronous", route: "PUT /nodes/pve/qemu/9201/config", data: `null`,
			call: func(c *Client) (interface{}, error) {
				return nil, c.UpdateGuestConfig(context.Background(), vm, pve.ConfigUpdate{Set: map[string]string{"cores": "4"}, Delete: []string{"cmode", "tags"}, Digest: "abc"})
			},
			params: map[string]string{"cores": "4", "delete": "cmode,tags", "digest": "abc"}},
		{name: "config update, asynchronous", route: "POST /nodes/pve/qemu/9201/config", data: upid,
			call: func(c *Client) (interface{}, error) {
				return c.UpdateGuestConfigAsync(context.Background(), vm, pve.ConfigUpdate{Set: map[string]string{"scsi0": "clients-main:0,import-from=local:import/noble.qcow2"}})
			},
			want: pve.Started{UPID: strings.Trim(upid, `"`)}, params: map[string]string{"scsi0": "clients-main:0,import-from=local:import/noble.qcow2"}},
		{name: "config update, asynchronous, nothing to do", route: "POST /nodes/pve/qemu/9201/config", data: `null`,
			call: func(c *Client) (interface{}, error) {
				return c.UpdateGuestConfigAsync(context.Background(), vm, pve.ConfigUpdate{Set: map[string]string{"cores": "2"}})
			},
			want: pve.Started{}},
		{name: "status", route: "GET /nodes/pve/qemu/9201/status/current",
			data: `{"vmid":9201,"status":"running","name":"vm-01","uptime":60,"cpu":0.25,"cpus":2,"mem":1048576,"maxmem":2147483648,"qmpstatus":"running","ha":{"managed":0}}`,
			call: func(c *Client) (interface{}, error) { return c.GuestStatus(context.Background(), vm) },
			want: pve.GuestStatus{VMID: 9201, Status: "running", Name: "vm-01", Uptime: time.Minute, CPU: 0.25, CPUs: 2, Mem: 1 << 20, MaxMem: 2 << 30}},
		{name: "interfaces, from the guest agent", route: "GET /nodes/pve/qemu/9201/agent/network-get-interfaces",
			data: `{"result":[{"name":"lo","hardware-address":"00:00:00:00:00:00","ip-addresses":[{"ip-address":"127.0.0.1","ip-address-type":"ipv4","prefix":8}]},
				{"name":"eth0","hardware-address":"bc:24:11:00:23:f1","ip-addresses":[{"ip-address":"fe80::be24:11ff:fe00:23f1","ip-address-type":"ipv6","prefix":64},{"ip-address":"10.1.10.95","ip-address-type":"ipv4","prefix":24}]}]}`,
			call: func(c *Client) (interface{}, error) { return c.GuestInterfaces(context.Background(), vm) },
			want: []pve.GuestInterface{{Name: "lo", HWAddr: "00:00:00:00:00:00", Inet: "127.0.0.1/8"},
				{Name: "eth0", HWAddr: "bc:24:11:00:23:f1", Inet: "10.1.10.95/24", Inet6: "fe80::be24:11ff:fe00:23f1/64"}}},
		{name: "snapshots", route: "GET /nodes/pve/qemu/9201/snapshot", data: `[{"name":"before-upgrade","description":"x"},{"name":"current"}]`,
			call: func(c *Client) (interface{}, error) { return c.Snapshots(context.Background(), vm) },
			want: []pve.Snapshot{{Name: "before-upgrade", Description: "x"}}},
		{name: "clone names the VM", route: "POST /nodes/pve/qemu/9000/clone", data: upid,
			call: func(c *Client) (interface{}, error) {
				return c.CloneGuest(context.Background(), pve.VM("pve", 9000), pve.CloneOptions{NewID: 9201, Hostname: "vm-01", Description: "marker", Full: true, Storage: "clients-main"})
			},
			want: strings.Trim(upid, `"`), params: map[string]string{"newid": "9201", "name": "vm-01", "description": "marker", "full": "1", "storage": "clients-main"}},
		{name: "start", route: "POST /nodes/pve/qemu/9201/status/start", data: upid,
			call: func(c *Client) (interface{}, error) { return c.StartGuest(context.Background(), vm) }, want: strings.Trim(upid, `"`)},
		{name: "shutdown", route: "POST /nodes/pve/qemu/9201/status/shutdown", data: upid,
			call: func(c *Client) (interface{}, error) {
				return c.ShutdownGuest(context.Background(), vm, time.Minute, true)
			},
			want: strings.Trim(upid, `"`), params: map[string]string{"timeout": "60", "forceStop": "1"}},
		{name: "stop", route: "POST /nodes/pve/qemu/9201/status/stop", data: upid,
			call: func(c *Client) (interface{}, error) { return c.StopGuest(context.Background(), vm) }, want: strings.Trim(upid, `"`)},
		{name: "delete", route: "DELETE /nodes/pve/qemu/9201", data: upid,
			call: func(c *Client) (interface{}, error) {
				return c.DeleteGuest(context.Background(), vm, pve.DeleteOptions{Purge: true, DestroyUnreferencedDisks: true})
			},
			want: strings.Trim(upid, `"`), params: map[string]string{"purge": "1", "destroy-unreferenced-disks": "1"}},
		{name: "template conversion names its task", route: "POST /nodes/pve/qemu/9201/template", data: upid,
			call: func(c *Client) (interface{}, error) { return c.ConvertToTemplate(context.Background(), vm) },
			want: pve.Started{UPID: strings.Trim(upid, `"`)}},
		{name: "a container's template conversion answers null", route: "POST /nodes/pve/lxc/9101/template", data: `null`,
			call: func(c *Client) (interface{}, error) {
				return c.ConvertToTemplate(context.Background(), pve.CT("pve", 9101))
			},
			want: pve.Started{}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv, c := newPVEServer(t, map[string]string{tt.route: tt.data})
			got, err := tt.call(c)
			if err != nil {
				t.Fatalf("call: %v", err)
			}
			if tt.want != nil && !reflect.DeepEqual(got, tt.want) {
				t.Errorf("got %#v\nwant %#v", got, tt.want)
			}
			reqs := srv.requests()
			if len(reqs) != 1 || reqs[0].Method+" "+reqs[0].Path != tt.route {
				t.Fatalf("requests %+v, want one %s", reqs, tt.route)
			}
			for k, v := range tt.params {
				if reqs[0].Params[k] != v {
					t.Errorf("param %s = %q, want %q (all: %v)", k, reqs[0].Params[k], v, reqs[0].Params)
				}
			}
			if _, named := reqs[0].Params["hostname"]; named && strings.Contains(tt.route, "/qemu/") {
				t.Errorf("a VM call sent a container's hostname: %v", reqs[0].Params)
			}
		})
	}
}

// TestCallsRefusedBeforePVE: what PVE has no form for fails in the adapter,
// without a request.
func TestCallsRefusedBeforePVE(t *testing.T) {
	srv, c := newPVEServer(t, nil)
	ctx := context.Background()
	if _, err := c.UpdateGuestConfigAsync(ctx, pve.CT("pve", 9101), pve.ConfigUpdate{Set: map[string]string{"cores": "2"}}); err == nil {
		t.Error("a container's asynchronous config update was accepted")
	}
	if _, err := c.DeleteGuest(ctx, pve.VM("pve", 9201), pve.DeleteOptions{Force: true}); err == nil {
		t.Error("a VM's forced delete was accepted")
	}
	if _, err := c.GuestConfig(ctx, pve.GuestRef{Node: "pve", VMID: 9101}); err == nil {
		t.Error("a guest of no kind was accepted")
	}
	if reqs := srv.requests(); len(reqs) != 0 {
		t.Errorf("requests were sent: %+v", reqs)
	}
}

// TestVMConsole: a VM's console is termproxy and vncwebsocket under
// /qemu/{vmid}; a failure names the VM.
func TestVMConsole(t *testing.T) {
	srv, c := newPVEServer(t, map[string]string{
		"POST /nodes/pve/qemu/9201/termproxy": `{"port":5901,"ticket":"PVEVNC:TICKET","upid":` + upid + `,"user":"root@pam"}`,
	})
	term, err := c.OpenTerminal(context.Background(), pve.VM("pve", 9201))
	if err != nil {
		t.Fatal(err)
	}
	defer term.Close()
	if _, err := term.Write([]byte("uname\n")); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 16)
	n, err := term.Read(buf)
	if err != nil || string(buf[:n]) != "uname\n" {
		t.Errorf("read %q, %v", buf[:n], err)
	}
	var paths []string
	for _, r := range srv.requests() {
		paths = append(paths, r.Method+" "+r.Path)
	}
	if want := []string{"POST /nodes/pve/qemu/9201/termproxy", "GET /nodes/pve/qemu/9201/vncwebsocket"}; !reflect.DeepEqual(paths, want) {
		t.Errorf("requests %v, want %v", paths, want)
	}

	_, err = c.OpenTerminal(context.Background(), pve.VM("pve", 9202))
	var ce *pve.ConsoleError
	if !errors.As(err, &ce) || ce.Kind != pve.QEMU || ce.Stage != "termproxy" || !strings.HasPrefix(err.Error(), "console of VM 9202: termproxy: ") {
		t.Errorf("err = %v, want a termproxy failure of VM 9202", err)
	}
}

// The guest listing as cluster/resources answers it (pve-manager
// PVE/API2/Cluster.pm, API2Tools.pm extract_vm_stats): besides what a guest
// is, the figures that change with its config and a restart, which the
// shared inventory watches; a CT's cpulimit makes maxcpu a fraction.
func TestGuestsListing(t *testing.T) {
	_, c := newPVEServer(t, map[string]string{"GET /cluster/resources": `[
		{"id":"lxc/101","vmid":101,"type":"lxc","node":"pve","name":"web","status":"running","template":0,"lock":"backup",
		 "tags":"a;b","uptime":3600,"maxcpu":1.5,"maxmem":1073741824,"maxdisk":"8589934592","cpu":0.01},
		{"id":"qemu/9000","vmid":"9000","type":"qemu","node":"pve","status":"stopped","template":1,"uptime":0,"maxcpu":2}]`})
	got, err := c.Guests(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	want := []pve.Guest{
		{VMID: 101, Type: pve.LXC, Node: "pve", Name: "web", Status: "running", Lock: "backup", Tags: "a;b",
			Uptime: time.Hour, MaxCPU: 1.5, MaxMem: 1 << 30, MaxDisk: 8 << 30},
		{VMID: 9000, Type: pve.QEMU, Node: "pve", Status: "stopped", Template: true, MaxCPU: 2},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("guests\n got %+v\nwant %+v", got, want)
	}
}
