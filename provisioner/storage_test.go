package provisioner

import (
	"strings"
	"testing"

	"github.com/migrahosting/cloudpods/provisioner/pve"
)

func TestChooseStorage(t *testing.T) {
	const gib = int64(1) << 30
	st := func(id string, content string, active bool, total, used int64) pve.Storage {
		return pve.Storage{ID: id, Content: strings.Split(content, ","), Active: active, Enabled: true, Total: total * gib, Used: used * gib, Avail: (total - used) * gib}
	}
	storages := []pve.Storage{
		st("local", "iso,vztmpl,import", true, 100, 10),
		st("clients-main", "rootdir,images", true, 1000, 400),
		st("clients-backup", "rootdir,images", true, 1000, 200),
		st("fast-nvme", "rootdir", true, 500, 470),   // 94 %: warned
		st("old-zfs", "rootdir", true, 5000, 4950),   // 99 %: refused, though the most room
		st("offline", "rootdir", false, 0, 0),        // inactive: 0/0
		st("iso-store", "iso,vztmpl", true, 500, 37), // the most room for vztmpl
	}
	tests := []struct {
		name, want, content string
		need                int64
		pick, warn, err     string
		reason              []string
	}{
		{name: "auto: most room among fit rootdir storages", want: "auto", content: "rootdir", pick: "clients-backup",
			reason: []string{"the active rootdir storage with the most room (800.0 GiB free of 1000.0 GiB, 20% used)", "also fit: clients-main", "passed over: old-zfs (99% used, at or over the 98% limit), offline (not active)"}},
		{name: "auto vztmpl", want: "auto", content: "vztmpl", pick: "iso-store"},
		{name: "auto with a size no storage but one fits", want: "auto", content: "rootdir", need: 700 * gib, pick: "clients-backup"},
		{name: "auto with nothing big enough", want: "auto", content: "rootdir", need: 900 * gib, err: "no storage can take the rootdir (900.0 GiB needed)"},
		{name: "named", want: "clients-main", content: "rootdir", pick: "clients-main", reason: []string{"storage clients-main as asked (600.0 GiB free of 1000.0 GiB, 40% used)"}},
		{name: "named, nearly full: warned", want: "fast-nvme", content: "rootdir", pick: "fast-nvme", warn: "storage fast-nvme is 94% full"},
		{name: "named, full: refused", want: "old-zfs", content: "rootdir", err: "storage old-zfs cannot take the rootdir: 99% used, at or over the 98% limit"},
		{name: "named, wrong content", want: "local", content: "rootdir", err: "storage local cannot take the rootdir: does not hold rootdir (content iso,vztmpl,import)"},
		{name: "named, inactive", want: "offline", content: "rootdir", err: "storage offline cannot take the rootdir: not active"},
		{name: "named, missing", want: "nosuch", content: "rootdir", err: "storage nosuch does not exist on this node"},
		{name: "no storage holds the type", want: "auto", content: "snippets", err: "no storage on this node holds snippets"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := ChooseStorage(storages, tt.want, tt.content, tt.need)
			if tt.err != "" {
				if err == nil || !strings.Contains(err.Error(), tt.err) || KindOf(err) != KindPreflight {
					t.Fatalf("err = %v (kind %s), want %q (preflight)", err, KindOf(err), tt.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if c.ID != tt.pick {
				t.Errorf("picked %s, want %s (%s)", c.ID, tt.pick, c.Reason)
			}
			for _, r := range tt.reason {
				if !strings.Contains(c.Reason, r) {
					t.Errorf("reason %q lacks %q", c.Reason, r)
				}
			}
			if !strings.Contains(c.Warning, tt.warn) || (tt.warn == "") != (c.Warning == "") {
				t.Errorf("warning %q, want %q", c.Warning, tt.warn)
			}
		})
	}
}
