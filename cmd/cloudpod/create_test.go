package main

import (
	"bytes"
	"context"
	"net/netip"
	"strings"
	"testing"
)

func TestCreateSpecForms(t *testing.T) {
	tests := []struct {
		name    string
		args    []string
		wantErr string
	}{
		{name: "octet out of range", args: []string{"create", "9101", "migra-client-01", "255"}, wantErr: "255"},
		{name: "vmid not a number", args: []string{"create", "abc", "migra-client-01", "91"}, wantErr: `VMID "abc" is not a number`},
		{name: "both forms", args: []string{"create", "9101", "a", "91", "--vmid", "9102"}, wantErr: "not both"},
		{name: "missing ip", args: []string{"create", "--vmid", "9201", "--host", "migra-highmem-01"}, wantErr: "missing --vmid, --host or --ip"},
		{name: "bad ip", args: []string{"create", "--vmid", "9201", "--host", "h", "--ip", "10.1.10"}, wantErr: `--ip "10.1.10" is not an IPv4 address`},
		{name: "bad prefix", args: []string{"create", "9101", "h", "91", "--prefix", "10.1.10.0"}, wantErr: "--prefix"},
		{name: "bad output", args: []string{"create", "9101", "h", "91", "--output", "yaml"}, wantErr: "use text or json"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			code := execute(context.Background(), nil, tt.args, strings.NewReader(""), &stdout, &stderr)
			if code != exitUsage {
				t.Errorf("exit code = %d, want %d (stderr %q)", code, exitUsage, stderr.String())
			}
			if !strings.Contains(stderr.String(), tt.wantErr) {
				t.Errorf("stderr = %q, want it to mention %q", stderr.String(), tt.wantErr)
			}
			if strings.Count(strings.TrimSpace(stderr.String()), "\n") != 0 {
				t.Errorf("want one line, got %q", stderr.String())
			}
		})
	}
}

func TestSpecFromSeedAndFlagsForms(t *testing.T) {
	seed := &createOptions{subnet: "10.1.10.0/24", gateway: "10.1.10.1", dns: []string{"10.1.10.1"}, cores: 2, memory: 2048, swap: 512,
		storage: "clients-main", bridge: "vmbr0", node: "pve", template: 9000}
	s, err := seed.spec([]string{"9101", "migra-client-01", "91"})
	if err != nil {
		t.Fatal(err)
	}
	if s.VMID != 9101 || s.Hostname != "migra-client-01" || s.IP != netip.MustParseAddr("10.1.10.91") || s.Address().String() != "10.1.10.91/24" {
		t.Errorf("seed form spec = %+v", s)
	}
	flags := *seed
	flags.vmid, flags.hostname, flags.ip, flags.cores, flags.memory, flags.swap = "9201", "migra-highmem-01", "10.1.10.101", 4, 8192, 2048
	s, err = flags.spec(nil)
	if err != nil {
		t.Fatal(err)
	}
	if s.VMID != 9201 || s.Cores != 4 || s.MemoryMB != 8192 || s.SwapMB != 2048 || s.IP != netip.MustParseAddr("10.1.10.101") {
		t.Errorf("flags form spec = %+v", s)
	}
	auto := *seed
	auto.vmid, auto.hostname, auto.ip = "auto", "web", "auto"
	s, err = auto.spec(nil)
	if err != nil || s.VMID != 0 || s.IP.IsValid() {
		t.Errorf("auto spec = %+v, %v", s, err)
	}
}
