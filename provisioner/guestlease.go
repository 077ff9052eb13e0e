package provisioner

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"strings"

	"github.com/migrahosting/cloudpods/ipam"
	"github.com/migrahosting/cloudpods/provisioner/flow"
)

// The reserve step of the guest-making flows beyond create (ct create, vm
// create and clone, the OpenWrt routers). Each static IPv4 address of the
// request that lies in IPAM's pool is reserved for the guest's VMID and
// hostname once preflight found nothing against the request, before
// anything is made: a pod's --ip auto in another process is then never
// handed it, and `cloudpod ip list` shows it. Addresses outside the pool
// (other subnets, gateways), DHCP and a router's LAN are left alone, and
// the plan says so. Finalize assigns what the step reserved; undoing it
// releases that; a guest PVE has (a converging re-run) adopts its leases,
// as create's reserve does.

// guestLeases is one run's leases.
type guestLeases struct {
	p   *Provisioner
	run *flow.Run
	ask func() guestAsk
	// held are the leases this run reserved: undo releases them, finalize
	// assigns them.
	held []AddressLease
}

// guestAsk is what a guest-making request asks of IPAM, read when the step
// runs (preflight may have picked the VMID or found the guest).
type guestAsk struct {
	vmid             int
	hostname, tenant string
	static           []netip.Addr
	// aside says what of the request IPAM leaves alone whatever its pool
	// (a NIC by DHCP, a router's LAN), for the plan and the skip.
	aside []string
	// existing: the guest is PVE's already (a converging re-run).
	existing bool
	// where is what names the address in the request ("ip= in --net").
	where string
}

func (p *Provisioner) newGuestLeases(run *flow.Run, ask func() guestAsk) *guestLeases {
	return &guestLeases{p: p, run: run, ask: ask}
}

func (l *guestLeases) step() flow.Step {
	return flow.Step{Name: StepReserve, Check: l.nothingToLease, Run: l.reserve, Plan: l.plan, Undo: l.undo}
}

func (l *guestLeases) nothingToLease(ctx context.Context) (string, error) {
	if why, err := l.p.noIPAM(ctx); why != "" || err != nil {
		return why, err
	}
	if a := l.ask(); len(a.static) == 0 {
		return "no static IPv4 address to lease" + asideText(a.aside), nil
	}
	return "", nil
}

func asideText(aside []string) string {
	if len(aside) == 0 {
		return ""
	}
	return " (" + strings.Join(aside, "; ") + ")"
}

func (a guestAsk) request(ip netip.Addr) AddressRequest {
	return AddressRequest{Hostname: a.hostname, Tenant: a.tenant, Owner: LeaseOwner(a.tenant, a.hostname), IP: ip, VMID: a.vmid, OwnVMID: true}
}

// refused is IPAM refusing ip: one sentence naming the holder (IPAM's
// error does) and the fix.
func (a guestAsk) refused(ip netip.Addr, err error) error {
	return ipamRefusal(fmt.Sprintf("%s for %s (VMID %d)", ip, a.hostname, a.vmid),
		fmt.Sprintf(": pick another %s, or free it with `cloudpod ip release %s` if its holder is gone", a.where, ip), err)
}

// outsidePool is what the step says of an address IPAM's pool does not
// hold.
func outsidePool(ip netip.Addr) string {
	return fmt.Sprintf("%s is outside IPAM's pool: no lease, IPAM leaves it alone", ip)
}

func (l *guestLeases) reserve(ctx context.Context) error {
	a := l.ask()
	var said []string
	for _, ip := range a.static {
		lease, err := l.take(ctx, a, ip)
		switch {
		case errors.Is(err, ipam.ErrOutOfRange):
			said = append(said, outsidePool(ip))
			continue
		case err != nil:
			return a.refused(ip, err)
		case a.existing:
			said = append(said, fmt.Sprintf("%s adopted, assigned", ip))
		default:
			l.held = append(l.held, lease)
			said = append(said, fmt.Sprintf("%s reserved", ip))
		}
	}
	l.run.Note(strings.Join(said, "; ") + asideText(a.aside))
	return nil
}

// take reserves ip for a guest to be made, or adopts it for the guest PVE
// has: PVE's state decides, the registry follows.
func (l *guestLeases) take(ctx context.Context, a guestAsk, ip netip.Addr) (AddressLease, error) {
	if a.existing {
		return l.p.opts.Addresses.Adopt(ctx, a.request(ip))
	}
	return l.p.opts.Addresses.Reserve(ctx, a.request(ip))
}

// plan asks IPAM what it would say of each address, reserving nothing.
func (l *guestLeases) plan(ctx context.Context) ([]flow.Call, error) {
	if l.p.opts.Addresses == nil {
		return nil, nil
	}
	a := l.ask()
	if len(a.static) == 0 {
		return []flow.Call{{Method: "IPAM", Path: "none", Note: "no static IPv4 address to lease" + asideText(a.aside)}}, nil
	}
	var calls []flow.Call
	for _, ip := range a.static {
		lease, err := l.p.opts.Addresses.Peek(ctx, a.request(ip))
		switch {
		case errors.Is(err, ipam.ErrOutOfRange):
			calls = append(calls, flow.Call{Method: "IPAM", Path: "none", Note: outsidePool(ip)})
		case err != nil:
			return nil, a.refused(ip, err)
		case a.existing:
			calls = append(calls, flow.Call{Method: "IPAM", Path: "adopt", Params: leaseParams(a.hostname, lease), Note: "the guest PVE has keeps its lease, assigned"})
		default:
			calls = append(calls, flow.Call{Method: "IPAM", Path: "reserve", Params: leaseParams(a.hostname, lease), Note: "assigned at finalize; the dry run reserved nothing"})
		}
	}
	if len(a.aside) > 0 {
		calls[len(calls)-1].Note += asideText(a.aside)
	}
	return calls, nil
}

// undo releases what this run reserved; an adopted lease stays with the
// guest PVE has.
func (l *guestLeases) undo(ctx context.Context, _ flow.Rollback) flow.Outcome {
	var out flow.Outcome
	var said []string
	for _, lease := range l.held {
		o := l.p.releaseLease(ctx, lease)
		out.Aside = true
		said = append(said, o.Said)
	}
	l.held = nil
	out.Said = strings.Join(said, "; ")
	return out
}

// assign marks what this run reserved as in use by the guest it made.
func (l *guestLeases) assign(ctx context.Context) {
	for _, lease := range l.held {
		l.p.assignLease(ctx, l.run, lease)
	}
}
