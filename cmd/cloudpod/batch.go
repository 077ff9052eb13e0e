package main

import (
	"bufio"
	"context"
	"fmt"
	"net/netip"
	"os"
	"strings"
	"time"

	"github.com/migrahosting/cloudpods/provisioner"
	"github.com/migrahosting/cloudpods/provisioner/pve"
)

// batchSpec is one line of a batch file: the API's create body (tenantId,
// vmid (a number or "auto"), hostname, ip (or "auto"), cores, memoryMb,
// swapMb, storage, bridge, template), decoded by the service's strict
// decoder; unset fields take the command line's values.
func batchSpec(base provisioner.Spec, line []byte) (provisioner.Spec, error) {
	b, err := provisioner.DecodePodRequest(line)
	if err != nil {
		return base, err
	}
	s := base
	s.Hostname = b.Hostname
	s.VMID, _ = b.VMID.Given()
	s.IP = netip.Addr{}
	if ip, ok := b.AddressGiven(); ok {
		if s.IP, err = netip.ParseAddr(ip); err != nil || !s.IP.Is4() {
			return base, fmt.Errorf("ip %q is not an IPv4 address such as 10.1.10.91, or \"auto\"", ip)
		}
	}
	for dst, v := range map[*int]*int{&s.Cores: b.Cores, &s.MemoryMB: b.MemoryMB, &s.SwapMB: b.SwapMB, &s.Template: b.Template} {
		if v != nil {
			*dst = *v
		}
	}
	for dst, v := range map[*string]string{&s.Tenant: b.TenantID, &s.Storage: b.Storage, &s.Bridge: b.Bridge} {
		if v != "" {
			*dst = v
		}
	}
	if s.Hostname == "" {
		return base, fmt.Errorf("hostname is required")
	}
	return s, nil
}

// batchSpecs expands --count or --batch into specs, from base.
func (o *createOptions) batchSpecs(base provisioner.Spec) ([]provisioner.Spec, error) {
	if o.batchFile != "" {
		f, err := os.Open(o.batchFile)
		if err != nil {
			return nil, fmt.Errorf("%w: batch file: %v", errUsage, err)
		}
		defer f.Close()
		var out []provisioner.Spec
		sc := bufio.NewScanner(f)
		for n := 1; sc.Scan(); n++ {
			line := strings.TrimSpace(sc.Text())
			if line == "" || strings.HasPrefix(line, "#") {
				continue
			}
			s, err := batchSpec(base, []byte(line))
			if err != nil {
				return nil, fmt.Errorf("%w: %s line %d: %v", errUsage, o.batchFile, n, err)
			}
			out = append(out, s)
		}
		return out, sc.Err()
	}
	out := make([]provisioner.Spec, o.count)
	for i := range out {
		s := base
		s.Hostname = fmt.Sprintf("%s-%02d", base.Hostname, i+1)
		if base.VMID != 0 {
			s.VMID = base.VMID + i
		}
		if base.IP.IsValid() {
			ip := base.IP
			for range i {
				ip = ip.Next()
			}
			s.IP = ip
		}
		out[i] = s
	}
	return out, nil
}

func runBatch(ctx context.Context, g *globalOptions, prov *provisioner.Provisioner, specs []provisioner.Spec, o *createOptions) error {
	prog := newProgress(g)
	reqs := make([]provisioner.CreateRequest, len(specs))
	for i, s := range specs {
		reqs[i] = provisioner.CreateRequest{Spec: s, KeepOnFailure: o.keepOnFailure, Reporter: prog, Stop: g.stop, Requester: g.requester,
			AllowDuplicateHostname: o.allowDupHost}
	}
	start := time.Now()
	results := prov.CreateBatch(ctx, reqs, o.concurrency)
	prog.Close()
	failed := 0
	for _, r := range results {
		if r.Err != nil {
			failed++
		}
		if g.output == "json" {
			writeJSON(g.stdout, resultLine(r.Result, r.Err))
		}
	}
	if g.output != "json" {
		fmt.Fprintf(g.stdout, "\n%d pods in %.1fs: %d ok, %d failed\n", len(results), time.Since(start).Seconds(), len(results)-failed, failed)
		for _, r := range results {
			status := "ok"
			if r.Err != nil {
				status = "FAILED: " + r.Err.Error()
			}
			fmt.Fprintf(g.stdout, "  %-9s %-24s %-15s %s\n", podLabel(pve.LXC, r.Result.VMID, ""), r.Result.Hostname, strings.TrimSuffix(r.Result.IP, "/24"), status)
		}
	}
	if failed > 0 {
		return fmt.Errorf("%d of %d pods failed", failed, len(results))
	}
	return nil
}
