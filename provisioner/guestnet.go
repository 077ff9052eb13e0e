package provisioner

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"strings"
	"time"
)

// What create and health run inside a pod for its network and services,
// over the console shell. Measured on real containers (Ubuntu 24.04 and
// Debian trixie under LXC, unprivileged as PVE runs them):
//
//   - `netplan apply` is not used. From netplan 1.1 it runs `udevadm control
//     --reload` first, which fails where systemd-udevd cannot run (a
//     read-only /sys, as PVE's sys:mixed gives an unprivileged CT): apply
//     exits 1 before reloading networkd and the address stays. `netplan
//     generate` writes the same files on 1.0 and 1.1 (1.1 prints udevadm's
//     complaint and still exits 0), and `networkctl reload` plus
//     `networkctl reconfigure` make networkd use them, which is what apply
//     does after udevadm. The address, then the default route, are read
//     back until they are right: networkd sets the route a moment after
//     the address (measured on Debian bookworm's systemd 252), and verify's
//     route and gateway checks come next.
//   - `systemctl is-active A B` succeeds when ANY of the units is active,
//     so every unit is asked alone; a unit that is not installed exits 4
//     on systemd ≥ 255, 3 before.
//   - ssh is socket-activated on Ubuntu 24.04: ssh.service is inactive
//     while ssh.socket listens, and the service counts as up.

// podIface is the pod's interface, net0's name.
const podIface = "eth0"

// bootStates are `systemctl is-system-running` once boot has finished:
// "degraded" is booted with a failed unit, which the service checks report.
var bootStates = map[string]bool{"running": true, "degraded": true}

// waitBooted waits until the pod's systemd has finished booting, so that
// networkd and the services answer. A pod on a PVE that just started it may
// still be booting when the console opens.
func waitBooted(ctx context.Context, sh *shell, limit time.Duration) error {
	var last string
	err := pollUntil(ctx, limit, func(ctx context.Context) (bool, error) {
		out, _, err := sh.run(ctx, "systemctl is-system-running")
		last = strings.TrimSpace(lastLine(out))
		return bootStates[last], err
	})
	if errors.Is(err, context.DeadlineExceeded) && ctx.Err() == nil {
		return fmt.Errorf("the pod's systemd did not finish booting within %s (is-system-running: %q)", limit, last)
	}
	return err
}

// applyNetplan makes networkd in the pod use the netplan file just written,
// and waits until eth0 has exactly the spec's address and the default route
// goes via its gateway.
func applyNetplan(ctx context.Context, sh *shell, s Spec, limit time.Duration) error {
	if err := waitBooted(ctx, sh, limit); err != nil {
		return err
	}
	for _, cmd := range []string{"netplan generate", "networkctl reload", "networkctl reconfigure " + podIface} {
		out, code, err := sh.run(ctx, cmd)
		if err != nil {
			return fmt.Errorf("%s: %w", cmd, err)
		}
		if code != 0 {
			return fmt.Errorf("%s exited %d: %s", cmd, code, strings.TrimSpace(out))
		}
	}
	var st podNet
	err := pollUntil(ctx, limit, func(ctx context.Context) (bool, error) {
		var err error
		st, err = readPodNet(ctx, sh, s)
		return st.as(s), err
	})
	if errors.Is(err, context.DeadlineExceeded) && ctx.Err() == nil {
		if len(st.addrs) != 1 || st.addrs[0] != s.Address() {
			return fmt.Errorf("%s in the pod has %s after networkd reloaded, not %s", podIface, prefixList(st.addrs), s.Address())
		}
		return fmt.Errorf("%s in the pod has %s but its default route goes %s after networkd reloaded, not via %s", podIface, s.Address(), st.via(), s.Gateway)
	}
	return err
}

// netplanInEffect reports whether eth0 already has exactly the spec's
// address and default route, so a file found in place needs no apply.
func netplanInEffect(ctx context.Context, sh *shell, s Spec) (bool, error) {
	st, err := readPodNet(ctx, sh, s)
	return err == nil && st.as(s), err
}

// podNet is what the pod's eth0 has: its IPv4 addresses and the gateway of
// its IPv4 default route (invalid when it has none).
type podNet struct {
	addrs   []netip.Prefix
	gateway netip.Addr
}

// as reports whether the pod's network is the spec's.
func (n podNet) as(s Spec) bool {
	return len(n.addrs) == 1 && n.addrs[0] == s.Address() && (!s.Gateway.IsValid() || n.gateway == s.Gateway)
}

func (n podNet) via() string {
	if !n.gateway.IsValid() {
		return "nowhere (none)"
	}
	return "via " + n.gateway.String()
}

// readPodNet reads eth0's addresses and, once the address is the spec's
// and it has a gateway, the default route.
func readPodNet(ctx context.Context, sh *shell, s Spec) (podNet, error) {
	var n podNet
	var err error
	if n.addrs, err = podIPv4(ctx, sh); err != nil || len(n.addrs) != 1 || n.addrs[0] != s.Address() || !s.Gateway.IsValid() {
		return n, err
	}
	n.gateway, err = podDefaultGateway(ctx, sh)
	return n, err
}

// podIPv4 lists eth0's IPv4 addresses as `ip -j -4 addr show dev eth0`
// prints them.
func podIPv4(ctx context.Context, sh *shell) ([]netip.Prefix, error) {
	out, code, err := sh.run(ctx, "ip -j -4 addr show dev "+podIface)
	if err != nil {
		return nil, err
	}
	if code != 0 {
		return nil, fmt.Errorf("ip -j -4 addr show dev %s exited %d: %s", podIface, code, strings.TrimSpace(out))
	}
	return parseIPv4Addrs(out)
}

// podDefaultGateway is the gateway of the pod's IPv4 default route on eth0
// as `ip -j -4 route show default` prints it; invalid when there is none.
func podDefaultGateway(ctx context.Context, sh *shell) (netip.Addr, error) {
	out, code, err := sh.run(ctx, "ip -j -4 route show default")
	if err != nil {
		return netip.Addr{}, err
	}
	if code != 0 {
		return netip.Addr{}, fmt.Errorf("ip -j -4 route show default exited %d: %s", code, strings.TrimSpace(out))
	}
	return parseDefaultGateway(out)
}

// parseDefaultGateway reads the gateway of the first default route on eth0
// out of `ip -j route` output.
func parseDefaultGateway(out string) (netip.Addr, error) {
	var routes []struct {
		Dst     string `json:"dst"`
		Gateway string `json:"gateway"`
		Dev     string `json:"dev"`
	}
	if err := json.Unmarshal([]byte(strings.TrimSpace(out)), &routes); err != nil {
		return netip.Addr{}, fmt.Errorf("reading ip -j route: %w (%q)", err, out)
	}
	for _, r := range routes {
		if r.Dst == "default" && r.Dev == podIface && r.Gateway != "" {
			gw, err := netip.ParseAddr(r.Gateway)
			if err != nil {
				return netip.Addr{}, fmt.Errorf("reading ip -j route: gateway %q", r.Gateway)
			}
			return gw, nil
		}
	}
	return netip.Addr{}, nil
}

// parseIPv4Addrs reads the IPv4 addresses out of `ip -j addr` output.
// iproute2 prints a link without an address of the asked family as {}.
func parseIPv4Addrs(out string) ([]netip.Prefix, error) {
	var links []struct {
		AddrInfo []struct {
			Family    string `json:"family"`
			Local     string `json:"local"`
			PrefixLen int    `json:"prefixlen"`
		} `json:"addr_info"`
	}
	if err := json.Unmarshal([]byte(strings.TrimSpace(out)), &links); err != nil {
		return nil, fmt.Errorf("reading ip -j addr: %w (%q)", err, out)
	}
	var addrs []netip.Prefix
	for _, l := range links {
		for _, a := range l.AddrInfo {
			if a.Family != "inet" {
				continue
			}
			ip, err := netip.ParseAddr(a.Local)
			if err != nil {
				return nil, fmt.Errorf("reading ip -j addr: address %q", a.Local)
			}
			addrs = append(addrs, netip.PrefixFrom(ip, a.PrefixLen))
		}
	}
	return addrs, nil
}

func prefixList(ps []netip.Prefix) string {
	if len(ps) == 0 {
		return "no IPv4 address"
	}
	s := make([]string, len(ps))
	for i, p := range ps {
		s[i] = p.String()
	}
	return strings.Join(s, ", ")
}

// serviceCheck asks systemd whether a template service is up: the service
// itself, else its socket (a socket-activated service is up while its socket
// listens). One unit per is-active call.
func serviceCheck(ctx context.Context, sh *shell, svc string) (Check, error) {
	c := Check{Name: "service " + svc}
	units := []string{svc}
	if !hasUnitType(svc) || strings.HasSuffix(svc, ".service") {
		name := strings.TrimSuffix(svc, ".service")
		units = []string{name + ".service", name + ".socket"}
	}
	var states []string
	for _, unit := range units {
		out, code, err := sh.run(ctx, "systemctl is-active "+unit)
		if err != nil {
			return c, err
		}
		state := strings.TrimSpace(lastLine(out))
		if code == 0 {
			c.OK, c.Detail = true, unit+" "+state
			return c, nil
		}
		states = append(states, unit+" "+state)
	}
	c.Detail = strings.Join(states, ", ")
	return c, nil
}

// hasUnitType reports whether name ends in a systemd unit type other than
// systemctl's default .service ("php8.3-fpm" has none).
func hasUnitType(name string) bool {
	for _, t := range []string{".service", ".socket", ".target", ".timer", ".mount", ".path", ".slice", ".scope", ".swap", ".automount", ".device"} {
		if strings.HasSuffix(name, t) {
			return true
		}
	}
	return false
}
