package provisioner

import (
	"context"
	"fmt"
	"sort"
	"strconv"
	"strings"

	"github.com/migrahosting/cloudpods/provisioner/pve"
)

// Passing a host device to a VM. PVE lets an API token do it only through
// a cluster resource mapping (hostpciN/usbN mapping=<id>, Mapping.Use on
// /mapping/<type>/<id>): a raw host= device, a romfile, a real USB device
// are root@pam's alone (qemu-server API2/Qemu.pm check_hostpci_perm,
// check_usb_perm), and cloudpods always talks to PVE with a token. So they
// are refused here, before any call, with PVE's reason and the way that
// works; a mapping that does not exist is refused in preflight, listing
// the cluster's.

// passthroughKind is what --hostpci and --usb map to.
type passthroughKind struct {
	flag, key, mapping string // --hostpci, hostpci, pci
	// options are the keys a token may set beside mapping=.
	options []string
	// rootOnly is PVE's refusal of a raw device, %s its config key.
	rootOnly string
}

var (
	hostPCI = passthroughKind{flag: "--hostpci", key: "hostpci", mapping: "pci",
		options:  []string{"pcie", "x-vga", "rombar", "mdev", "legacy-igd"},
		rootOnly: "only root can set '%s' config for non-mapped devices"}
	usbDevice = passthroughKind{flag: "--usb", key: "usb", mapping: "usb",
		options:  []string{"usb3"},
		rootOnly: "only root can set '%s' config for real devices"}
)

// passthroughDevice is one parsed --hostpci/--usb value.
type passthroughDevice struct {
	kind    passthroughKind
	index   int
	mapping string
	value   string // as PVE stores it: mapping=…,options sorted
}

func (d passthroughDevice) key() string { return d.kind.key + strconv.Itoa(d.index) }

// parsePassthrough reads the values of one flag; every refusal is one
// sentence with PVE's reason and the way through a mapping.
func parsePassthrough(k passthroughKind, values []string) ([]passthroughDevice, []string) {
	var out []passthroughDevice
	var probs []string
	way := fmt.Sprintf("pass the device through a resource mapping instead: an administrator makes one in PVE (Datacenter > Resource Mappings, or POST /cluster/mapping/%s with Mapping.Modify), then give %s mapping=NAME (the token needs Mapping.Use on /mapping/%s/NAME)",
		k.mapping, k.flag, k.mapping)
	for i, v := range values {
		key := k.key + strconv.Itoa(i)
		opts := map[string]string{}
		bad := ""
		for j, part := range strings.Split(v, ",") {
			name, val, ok := strings.Cut(strings.TrimSpace(part), "=")
			if !ok && j == 0 {
				name, val = "host", name // PVE's default key is host
			}
			switch {
			case name == "host":
				bad = fmt.Sprintf("%s %s: PVE says \"%s\" (qemu-server API2/Qemu.pm), and cloudpods talks to PVE with an API token: %s", k.flag, v, fmt.Sprintf(k.rootOnly, key), way)
			case name == "romfile":
				bad = fmt.Sprintf("%s %s: PVE says \"only root@pam can set 'romfile' option\" (qemu-server API2/Qemu.pm), and cloudpods talks to PVE with an API token: drop romfile", k.flag, v)
			case name == "mapping" && val == "":
				bad = fmt.Sprintf("%s %s: mapping= needs the mapping's name, e.g. mapping=gpu0", k.flag, v)
			case name != "mapping" && !contains(k.options, name):
				bad = fmt.Sprintf("%s %s: %s is not an option cloudpods passes beside a mapping: use mapping=NAME with %s", k.flag, v, name, strings.Join(k.options, ", "))
			case opts[name] != "":
				bad = fmt.Sprintf("%s %s: %s appears twice: keep one", k.flag, v, name)
			}
			if bad != "" {
				break
			}
			opts[name] = val
		}
		if bad == "" && opts["mapping"] == "" {
			bad = fmt.Sprintf("%s %s: give the device as mapping=NAME: %s", k.flag, v, way)
		}
		if bad != "" {
			probs = append(probs, bad)
			continue
		}
		names := make([]string, 0, len(opts))
		for n := range opts {
			if n != "mapping" {
				names = append(names, n)
			}
		}
		sort.Strings(names)
		parts := []string{"mapping=" + opts["mapping"]}
		for _, n := range names {
			parts = append(parts, n+"="+opts[n])
		}
		out = append(out, passthroughDevice{kind: k, index: i, mapping: opts["mapping"], value: strings.Join(parts, ",")})
	}
	return out, probs
}

// passthrough parses the spec's --hostpci and --usb values.
func (s VMSpec) passthrough() ([]passthroughDevice, []string) {
	pci, p1 := parsePassthrough(hostPCI, s.HostPCI)
	usb, p2 := parsePassthrough(usbDevice, s.USB)
	return append(pci, usb...), append(p1, p2...)
}

// checkMappings reads the cluster's mappings of each kind used and
// refuses a name it does not have, listing the ones it has.
func (p *Provisioner) checkMappings(ctx context.Context, devs []passthroughDevice) error {
	have := map[string][]pve.Mapping{}
	for _, d := range devs {
		t := d.kind.mapping
		if _, read := have[t]; !read {
			list, err := p.api.Mappings(ctx, t)
			if err != nil {
				return apiProblem("list the cluster's "+t+" mappings", err)
			}
			have[t] = list
		}
		var names []string
		found := false
		for _, m := range have[t] {
			names = append(names, m.ID)
			found = found || m.ID == d.mapping
		}
		if !found {
			list := "none the token can see"
			if len(names) > 0 {
				list = strings.Join(names, ", ")
			}
			return problemf(ErrPreflight, "%s mapping=%s: the cluster has no %s mapping %s (it has: %s): use one of them, or have an administrator create it (Datacenter > Resource Mappings); the token sees mappings it holds Mapping.Use or Mapping.Audit on",
				d.kind.flag, d.mapping, strings.ToUpper(t), d.mapping, list)
		}
	}
	return nil
}

// passthroughPrivileges: VM.Config.HWType on the VM and Mapping.Use on
// each mapping (API2/Qemu.pm check_hostpci_perm, check_usb_perm).
func passthroughPrivileges(vm string, devs []passthroughDevice) []privilege {
	if len(devs) == 0 {
		return nil
	}
	need := []privilege{{Path: vm, Priv: "VM.Config.HWType"}}
	for _, d := range devs {
		need = append(need, privilege{Path: "/mapping/" + d.kind.mapping + "/" + d.mapping, Priv: "Mapping.Use"})
	}
	return need
}
