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
