package pve

import (
	"errors"
	"fmt"
	"testing"
)

func TestAPIErrorClassification(t *testing.T) {
	tests := []struct {
		name string
		err  *APIError
		is   []error
		not  []error
	}{
		{"clone source locked", &APIError{Status: 500, Message: "CT is locked (disk)"},
			[]error{ErrLocked, ErrTransient}, []error{ErrNotFound, ErrMaybeApplied, ErrAlreadyExists}},
		{"config flock timeout", &APIError{Status: 500, Message: "can't lock file '/run/lock/lxc/pve-config-9101.lock' - got timeout"},
			[]error{ErrLocked, ErrTransient}, nil},
		{"no worker", &APIError{Status: 500, Message: "got no worker upid - start worker failed"},
			[]error{ErrTransient}, []error{ErrLocked}},
		{"storage cfs lock", &APIError{Status: 500, Message: "cfs-lock 'storage-clients-main' error: got lock request timeout"},
			[]error{ErrTransient}, nil},
		{"already exists", &APIError{Status: 500, Message: "CT 9101 already exists on node 'pve'"},
			[]error{ErrAlreadyExists}, []error{ErrTransient}},
		{"nextid taken", &APIError{Status: 400, Errors: map[string]string{"vmid": "VM 9101 already exists"}},
			[]error{ErrAlreadyExists, ErrInvalidParameter}, nil},
		{"missing config", &APIError{Status: 500, Message: "Configuration file 'nodes/pve/lxc/9101.conf' does not exist"},
			[]error{ErrNotFound}, []error{ErrTransient}},
		{"unknown task", &APIError{Status: 400, Errors: map[string]string{"upid": "no such task"}},
			[]error{ErrNotFound, ErrInvalidParameter}, nil},
		{"596", &APIError{Status: 596, Message: "Connection timed out"},
			[]error{ErrMaybeApplied}, []error{ErrTransient}},
		{"bad token", &APIError{Status: 401, Message: "authentication failure"},
			[]error{ErrUnauthorized}, []error{ErrForbidden}},
		// pve-common src/PVE/Ticket.pm: a stale console ticket is a 401 too,
		// but never "the token was rejected".
		{"stale console ticket", &APIError{Status: 401, Method: "GET", Path: "/nodes/pve/lxc/9101/vncwebsocket", Message: "permission denied - invalid PVEVNC ticket"},
			[]error{ErrConsoleTicket}, []error{ErrUnauthorized, ErrForbidden}},
		{"missing privilege", &APIError{Status: 403, Message: "Permission check failed (/vms/9000, VM.Clone)"},
			[]error{ErrForbidden}, []error{ErrUnauthorized}},
		{"proxy 503", &APIError{Status: 503, Message: "Service Unavailable"}, []error{ErrTransient}, nil},
		{"plain 500", &APIError{Status: 500, Message: "unable to modify read-only option: 'unprivileged'"},
			nil, []error{ErrTransient, ErrLocked, ErrNotFound, ErrAlreadyExists}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			wrapped := fmt.Errorf("clone CT 9000: %w", tt.err)
			for _, target := range tt.is {
				if !errors.Is(wrapped, target) {
					t.Errorf("errors.Is(%v, %v) = false, want true", wrapped, target)
				}
			}
			for _, target := range tt.not {
				if errors.Is(wrapped, target) {
					t.Errorf("errors.Is(%v, %v) = true, want false", wrapped, target)
				}
			}
			var api *APIError
			if !errors.As(wrapped, &api) || api.Status != tt.err.Status {
				t.Errorf("errors.As did not recover the status")
			}
		})
	}
}

func TestAPIErrorMessageCarriesParameterErrors(t *testing.T) {
	e := &APIError{Method: "PUT", Path: "/nodes/pve/lxc/9101/config", Status: 400, Message: "Parameter verification failed.",
		Errors: map[string]string{"memory": "value must have a minimum value of 16", "cores": "type check ('integer') failed - got 'x'"}}
	want := "PUT /nodes/pve/lxc/9101/config: 400 Parameter verification failed.; cores: type check ('integer') failed - got 'x'; memory: value must have a minimum value of 16"
	if e.Error() != want {
		t.Errorf("Error() =\n%s\nwant\n%s", e.Error(), want)
	}
}

func TestTaskErrorClassification(t *testing.T) {
	locked := &TaskError{Type: "vzstart", ExitStatus: "CT is locked (create)"}
	if !errors.Is(locked, ErrTaskFailed) || !errors.Is(locked, ErrLocked) {
		t.Errorf("a start refused by a lock must be a failed task and a lock")
	}
	failed := &TaskError{Type: "vzclone", ExitStatus: "clone failed: no space left on device"}
	if errors.Is(failed, ErrLocked) || errors.Is(failed, ErrTransient) {
		t.Errorf("a real failure must not be retried as a lock")
	}
}

func TestParseUPID(t *testing.T) {
	tests := []struct {
		in      string
		wantErr bool
		want    UPID
	}{
		{in: "UPID:pve:000D7AA2:08D5A17C:63DF62A5:vzclone:9000:root@pam!prov:",
			want: UPID{Node: "pve", PID: 0xD7AA2, PStart: 0x08D5A17C, StartTime: 0x63DF62A5, Type: "vzclone", ID: "9000", User: "root@pam!prov"}},
		{in: "UPID:pve:000D7AA2:108D5A17C:63DF62A5:vzstart:9101:cloudpods@pve!provisioner:",
			want: UPID{Node: "pve", PID: 0xD7AA2, PStart: 0x108D5A17C, StartTime: 0x63DF62A5, Type: "vzstart", ID: "9101", User: "cloudpods@pve!provisioner"}},
		{in: "UPID:pve:000D7AA2:08D5A17C:63DF62A5:vzclone:9000:", wantErr: true},
		{in: "OK", wantErr: true},
		{in: "UPID:pve:zz:08D5A17C:63DF62A5:vzclone:9000:root@pam:", wantErr: true},
	}
	for _, tt := range tests {
		got, err := ParseUPID(tt.in)
		if (err != nil) != tt.wantErr {
			t.Fatalf("ParseUPID(%q) error = %v, wantErr %v", tt.in, err, tt.wantErr)
		}
		if err == nil {
			tt.want.Raw = tt.in
			if got != tt.want {
				t.Errorf("ParseUPID(%q) = %+v, want %+v", tt.in, got, tt.want)
			}
		}
	}
}

func TestPermissionsInherit(t *testing.T) {
	p := Permissions{"/": {"Sys.Audit": true}, "/vms": {"VM.Audit": true}, "/vms/9000": {"VM.Clone": true}}
	tests := []struct {
		path, priv string
		want       bool
	}{
		{"/vms/9000", "VM.Clone", true},
		{"/vms/9101", "VM.Clone", false},
		{"/vms/9101", "VM.Audit", true},
		{"/nodes/pve", "Sys.Audit", true},
		{"/storage/clients-main", "Datastore.AllocateSpace", false},
	}
	for _, tt := range tests {
		if got := p.Has(tt.path, tt.priv); got != tt.want {
			t.Errorf("Has(%s, %s) = %v, want %v", tt.path, tt.priv, got, tt.want)
		}
	}
}

func TestTransientMessages(t *testing.T) {
	tests := []struct {
		msg       string
		transient bool
	}{
		{"CT is locked (disk)", true},
		{"VM is locked (backup)", true},
		{"can't lock file '/run/lock/lxc/pve-config-9101.lock' - got timeout", true},
		{"cfs-lock 'file-user_cfg' error: got lock request timeout", true},
		{"got no worker upid - start worker failed", true},
		{"CT 9101 already running", false},
		{"command 'lxc-start -n 9101' failed: got timeout", false},
		{"unable to create CT 9101 - no space left on device", false},
	}
	for _, tt := range tests {
		api := &APIError{Method: "POST", Status: 500, Message: tt.msg}
		task := &TaskError{Type: "vzstart", ExitStatus: tt.msg}
		if errors.Is(api, ErrTransient) != tt.transient || errors.Is(task, ErrTransient) != tt.transient {
			t.Errorf("%q: transient = %v/%v, want %v", tt.msg, errors.Is(api, ErrTransient), errors.Is(task, ErrTransient), tt.transient)
		}
	}
	running := &APIError{Status: 500, Message: "CT 9101 already running"}
	if !errors.Is(running, ErrAlreadyRunning) || !errors.Is(&TaskError{ExitStatus: "CT 9101 already running"}, ErrAlreadyRunning) {
		t.Error("a start of a running CT must read as already running")
	}
}

func TestAPIErrorObject(t *testing.T) {
	for path, want := range map[string]string{
		"/nodes/pve/lxc/9101/status/start":                       "CT 9101",
		"/nodes/pve/qemu/120/config":                             "VM 120",
		"/nodes/pve/tasks/UPID:pve:1:2:3:vzclone:9000:u:/status": "task UPID:pve:1:2:3:vzclone:9000:u:",
		"/nodes/pve/storage/local/content":                       "storage local",
		"/nodes/pve/network":                                     "node pve",
		"/access/permissions":                                    "",
	} {
		if got := (&APIError{Path: path}).Object(); got != want {
			t.Errorf("Object(%s) = %q, want %q", path, got, want)
		}
	}
}

func TestTransportErrorMayHaveHappened(t *testing.T) {
	err := fmt.Errorf("clone: %w", &TransportError{Method: "POST", Path: "/nodes/pve/lxc/9000/clone", Err: errors.New("EOF")})
	if !errors.Is(err, ErrMaybeApplied) || !errors.Is(err, ErrTransient) {
		t.Error("a lost answer must be both maybe-applied and transient")
	}
	var te *TransportError
	if !errors.As(err, &te) || te.Method != "POST" {
		t.Error("errors.As must recover the request")
	}
}

// A refused console ticket inside a ConsoleError is worth a new attach
// (a new ticket), and is no authentication failure.
func TestConsoleTicketErrorIsTransient(t *testing.T) {
	err := fmt.Errorf("network in the console of CT 9101: %w", &ConsoleError{VMID: 9101, Stage: "websocket",
		Err: &APIError{Status: 401, Method: "GET", Message: "permission denied - invalid PVEVNC ticket"}})
	if !errors.Is(err, ErrConsoleTicket) || !errors.Is(err, ErrTransient) || errors.Is(err, ErrUnauthorized) {
		t.Errorf("%v: ticket=%v transient=%v unauthorized=%v", err, errors.Is(err, ErrConsoleTicket), errors.Is(err, ErrTransient), errors.Is(err, ErrUnauthorized))
	}
	other := &ConsoleError{VMID: 9101, Stage: "handshake", Err: fmt.Errorf("%w (closed)", ErrConsoleRefusesTokens)}
	if errors.Is(other, ErrTransient) || errors.Is(other, ErrConsoleTicket) {
		t.Errorf("%v counts as a ticket problem", other)
	}
	// It says so, in one sentence, whichever stage refused the ticket.
	for _, tc := range []struct {
		err  *ConsoleError
		want string
	}{
		{&ConsoleError{VMID: 9101, Stage: "websocket", Err: &APIError{Status: 401, Method: "GET", Path: "/nodes/pve/lxc/9101/vncwebsocket", Message: "permission denied - invalid PVEVNC ticket"}},
			"console of CT 9101: the console ticket expired or was refused (websocket: 401 permission denied - invalid PVEVNC ticket)"},
		{&ConsoleError{Kind: QEMU, VMID: 9201, Stage: "handshake", Err: fmt.Errorf("%w: termproxy closed the console after the ticket line (handshake: unexpected EOF)", ErrConsoleTicket)},
			"console of VM 9201: the console ticket expired or was refused (handshake: termproxy closed the console after the ticket line (handshake: unexpected EOF))"},
	} {
		if got := tc.err.Error(); got != tc.want {
			t.Errorf("got  %s\nwant %s", got, tc.want)
		}
	}
}
