package netcfg

import (
	"fmt"
	"regexp"
	"strconv"
	"strings"
)

// Where and how the rendered netplan file goes in the container. It takes
// the place of the template's cloud-init file, and netplan warns about a
// file other users can read.
const (
	NetplanPath = "/etc/netplan/50-cloud-init.yaml"
	NetplanMode = 0o600
)

// RenderNetplan is the netplan v2 file for s: static IPv4 on the systemd-
// networkd renderer, the default route as routes (not the deprecated
// gateway4), and the nameservers. The output depends only on s.
//
// It says what PVE's own eth0.network says for the same net0 (Address,
// Gateway, DHCP=no, IPv6AcceptRA=false), because netplan's
// 10-netplan-eth0.network sorts first and wins over PVE's file.
//
// The interface is matched by name, with no match/macaddress/set-name: LXC
// names the veth itself from net0 name=, and a MAC match would break on the
// next clone or restore, where PVE hands out a new hwaddr. So HWAddr and
// VLAN (tagged on the host's bridge port) do not appear here.
func RenderNetplan(s Spec) ([]byte, error) {
	if err := s.Validate(); err != nil {
		return nil, fmt.Errorf("render netplan for %s: %w", s.Interface, err)
	}
	var b strings.Builder
	line := func(indent int, text string) {
		b.WriteString(strings.Repeat("  ", indent))
		b.WriteString(text)
		b.WriteByte('\n')
	}
	line(0, "# Written by cloudpods from the container's net0; PVE writes the same")
	line(0, "# settings to /etc/systemd/network/"+s.Interface+".network at every start.")
	line(0, "network:")
	line(1, "version: 2")
	line(1, "renderer: networkd")
	line(1, "ethernets:")
	line(2, yamlKey(s.Interface)+":")
	line(3, "dhcp4: false")
	line(3, "accept-ra: false")
	line(3, "addresses:")
	line(4, "- "+yamlString(s.Address.String()))
	if s.MTU != 0 {
		line(3, "mtu: "+strconv.Itoa(s.MTU))
	}
	if s.Gateway.IsValid() {
		line(3, "routes:")
		line(4, "- to: default")
		line(4, "  via: "+yamlString(s.Gateway.String()))
	}
	if len(s.Nameservers) > 0 || len(s.SearchDomains) > 0 {
		line(3, "nameservers:")
		if len(s.Nameservers) > 0 {
			line(4, "addresses:")
			for _, ns := range s.Nameservers {
				line(5, "- "+yamlString(ns.String()))
			}
		}
		if len(s.SearchDomains) > 0 {
			line(4, "search:")
			for _, d := range s.SearchDomains {
				line(5, "- "+yamlString(d))
			}
		}
	}
	return []byte(b.String()), nil
}

// plainKeyRE is an interface name YAML reads as a plain string.
var plainKeyRE = regexp.MustCompile(`^[A-Za-z][A-Za-z0-9_.-]*$`)

// yamlKey leaves an ordinary interface name unquoted, as netplan's own
// examples do, and quotes one YAML 1.1 would read as a boolean or null.
func yamlKey(name string) string {
	switch strings.ToLower(name) {
	case "y", "n", "yes", "no", "on", "off", "true", "false", "null":
		return yamlString(name)
	}
	if plainKeyRE.MatchString(name) {
		return name
	}
	return yamlString(name)
}

// yamlString double-quotes a value so no address or domain is read as
// anything but a string. Validate has restricted values to printable ASCII,
// where Go's quoting and YAML's agree.
func yamlString(s string) string {
	return strconv.Quote(s)
}
