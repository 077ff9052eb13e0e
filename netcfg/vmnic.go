package netcfg

import (
	"errors"
	"fmt"
	"regexp"
	"sort"
	"strconv"
	"strings"
)

// VMNIC is one network card of a VM as an operator describes it (--net
// name=net0,bridge=vmbr0[,tag=VLAN][,macaddr=MAC][,mtu=N][,model=virtio]
// [,firewall=1]): the config key netN it becomes and the card's model.
// The guest names the card itself; its address is cloud-init's
// (ipconfigN), not the card's.
type VMNIC struct {
	// Index is N of netN.
	Index int
	// Model is the emulated card: virtio (the default), e1000, …
	Model string
	// NIC holds bridge, VLAN, MAC (HWAddr), MTU and firewall; Name is netN.
	NIC
}

// vmNICKeys are the keys a VM's --net takes.
var vmNICKeys = []string{"name", "bridge", "tag", "macaddr", "mtu", "model", "firewall"}

// vmNICModels are PVE's NIC models (qemu-server QemuServer/Network.pm
// $nic_model_list).
var vmNICModels = []string{"e1000", "e1000-82540em", "e1000-82544gc", "e1000-82545em", "e1000e", "i82551", "i82557b",
	"i82559er", "ne2k_isa", "ne2k_pci", "pcnet", "rtl8139", "virtio", "vmxnet3"}

var vmNetKeyRE = regexp.MustCompile(`^net(\d|[12]\d|3[01])$`)

// VM MTU bounds: PVE's schema takes 1 (the bridge's MTU) to 65520.
const maxVMMTU = 65520

// ParseVMNIC reads one VM --net value; every problem is one sentence.
func ParseVMNIC(s string) (VMNIC, error) {
	n := VMNIC{Model: "virtio"}
	var net Net0
	seen, errs := eachProperty(s, "--net", func(k, v string) error {
		switch k {
		case "name":
			m := vmNetKeyRE.FindStringSubmatch(v)
			if m == nil {
				return fmt.Errorf("--net name=%s is not a VM NIC: use net0 to net31 (the guest names the card itself)", v)
			}
			n.Index, _ = strconv.Atoi(m[1])
			n.Name = v
		case "model":
			if !contains(vmNICModels, v) {
				return fmt.Errorf("--net model=%s is not one PVE emulates: use virtio (fastest), e1000, e1000e, rtl8139 or vmxnet3", v)
			}
			n.Model = v
		case "macaddr":
			if err := net.set("hwaddr", v); err != nil {
				return errors.New("--net macaddr=" + v + " is not valid: use a unicast MAC such as BC:24:11:2A:3B:4C")
			}
		case "mtu":
			i, err := strconv.Atoi(v)
			if !integerRE.MatchString(v) || err != nil || i < 1 || i > maxVMMTU {
				return fmt.Errorf("--net mtu=%s is not valid: use 1 (the bridge's MTU) or %d to %d", v, minMTU, maxVMMTU)
			}
			net.MTU = i
		case "bridge", "tag", "firewall":
			if err := net.set(k, v); err != nil {
				return errors.New("--net " + strings.TrimPrefix(err.Error(), "net0 "))
			}
		default:
			return fmt.Errorf("--net key %s is not one a VM's --net takes: use %s (addresses go in --ipconfigN)", k, strings.Join(vmNICKeys, ", "))
		}
		return nil
	})
	if !seen["name"] {
		errs = append(errs, errors.New("--net has no name: give the VM's config key, e.g. name=net0"))
	}
	if !seen["bridge"] {
		errs = append(errs, errors.New("--net has no bridge: give the host bridge, e.g. bridge=vmbr0"))
	}
	if net.MTU > 1 && net.MTU < minMTU {
		errs = append(errs, fmt.Errorf("--net mtu=%d is below %d, the least IPv4 runs on: use 1 (the bridge's) or %d to %d", net.MTU, minMTU, minMTU, maxVMMTU))
	}
	if net.MTU != 0 && n.Model != "virtio" {
		errs = append(errs, fmt.Errorf("--net mtu= is for virtio cards only (PVE ignores it on %s): drop mtu or use model=virtio", n.Model))
	}
	if len(errs) > 0 {
		return VMNIC{}, errors.Join(errs...)
	}
	n.Bridge, n.VLAN, n.HWAddr, n.MTU, n.Firewall = net.Bridge, net.Tag, net.HWAddr, net.MTU, net.Firewall
	return n, nil
}

// Key is the card's config key, netN.
func (n VMNIC) Key() string { return "net" + strconv.Itoa(n.Index) }

// Value is the card as PVE stores netN: model[=MAC],bridge=…, the other
// keys in PVE's order.
func (n VMNIC) Value() string { return n.NIC.VMNet(n.Model) }

// String is the card in --net form.
func (n VMNIC) String() string {
	parts := []string{"name=" + n.Key(), "bridge=" + n.Bridge}
	if n.VLAN != 0 {
		parts = append(parts, "tag="+strconv.Itoa(n.VLAN))
	}
	if n.HWAddr != "" {
		parts = append(parts, "macaddr="+n.HWAddr)
	}
	if n.MTU != 0 {
		parts = append(parts, "mtu="+strconv.Itoa(n.MTU))
	}
	parts = append(parts, "model="+n.Model)
	if n.Firewall {
		parts = append(parts, "firewall=1")
	}
	return strings.Join(parts, ",")
}

// ValidateVMNICs checks a VM's cards together: at least one, one card per
// netN, distinct MACs.
func ValidateVMNICs(nics []VMNIC) error {
	if len(nics) == 0 {
		return errors.New("no --net given: give at least one, e.g. --net name=net0,bridge=vmbr0")
	}
	var errs []error
	keys, macs := map[int]bool{}, map[string]bool{}
	for _, n := range nics {
		if keys[n.Index] {
			errs = append(errs, fmt.Errorf("two --net name=%s: give each card its own netN", n.Key()))
		}
		keys[n.Index] = true
		if m := strings.ToUpper(n.HWAddr); m != "" {
			if macs[m] {
				errs = append(errs, fmt.Errorf("two --net macaddr=%s: a MAC must be unique, or leave macaddr out and PVE generates one", n.HWAddr))
			}
			macs[m] = true
		}
	}
	return errors.Join(errs...)
}

// SortVMNICs orders cards by netN.
func SortVMNICs(nics []VMNIC) {
	sort.SliceStable(nics, func(i, j int) bool { return nics[i].Index < nics[j].Index })
}

// SameVMNIC reports whether a stored netN holds the card as asked: model,
// bridge, VLAN, MTU and firewall as given, and the MAC when one was given
// (PVE generates one otherwise).
func SameVMNIC(stored string, n VMNIC) bool {
	model, mac, rest := "", "", map[string]string{}
	for i, part := range strings.Split(stored, ",") {
		k, v, _ := strings.Cut(part, "=")
		if i == 0 && contains(vmNICModels, k) {
			model, mac = k, v
			continue
		}
		rest[k] = v
	}
	want := map[string]string{"bridge": n.Bridge}
	if n.VLAN != 0 {
		want["tag"] = strconv.Itoa(n.VLAN)
	}
	if n.MTU != 0 {
		want["mtu"] = strconv.Itoa(n.MTU)
	}
	if n.Firewall {
		want["firewall"] = "1"
	}
	for _, k := range []string{"bridge", "tag", "mtu", "firewall"} {
		have := rest[k]
		if k == "firewall" && have == "0" {
			have = ""
		}
		if have != want[k] {
			return false
		}
	}
	return model == n.Model && (n.HWAddr == "" || strings.EqualFold(mac, n.HWAddr))
}

// IPConfigKeys are the keys --ipconfigN takes.
var ipConfigKeys = []string{"ip", "gw", "ip6", "gw6"}

// ParseIPConfig reads --ipconfigN (ip=CIDR|dhcp[,gw=IP][,ip6=CIDR|auto|dhcp]
// [,gw6=IP]): cloud-init's address of the VM's card netN. label names the
// flag in the sentences.
func ParseIPConfig(label, s string) (NIC, error) {
	var net Net0
	_, errs := eachProperty(s, label, func(k, v string) error {
		if !contains(ipConfigKeys, k) {
			return fmt.Errorf("%s key %s is not one cloud-init takes: use ip, gw, ip6 and gw6", label, k)
		}
		if k == "ip" && v == "manual" || k == "ip6" && v == "manual" {
			return fmt.Errorf("%s %s=manual has no cloud-init form: give an address/prefix or dhcp", label, k)
		}
		if err := net.set(k, v); err != nil {
			return errors.New(label + " " + strings.TrimPrefix(err.Error(), "net0 "))
		}
		return nil
	})
	n := NIC{IP: net.IP, GW: net.GW, IP6: net.IP6, GW6: net.GW6}
	if len(errs) == 0 {
		errs = n.addressErrors(label)
	}
	if len(errs) > 0 {
		return NIC{}, errors.Join(errs...)
	}
	return n, nil
}
