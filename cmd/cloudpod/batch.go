package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"net/netip"
	"os"
	"strings"
	"time"

	"github.com/migrahosting/cloudpods/provisioner"
)

// batchLine is one pod of a batch file (JSON lines). Unset fields take the
// command line's values.
type batchLine struct {
	VMID         int    `json:"vmid"`
	Hostname     string `json:"hostname"`
	IP           string `json:"ip"`
	Cores        int    `json:"cores"`
	MemoryMB     int    `json:"memory"`
	SwapMB       int    `json:"swap"`
	Tenant       string `json:"tenant"`
	Storage      string `json:"storage"`
	SearchDomain string `json:"searchdomain"`
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
			var b batchLine
			dec := json.NewDecoder(strings.NewReader(line))
			dec.DisallowUnknownFields()
			if err := dec.Decode(&b); err != nil {
				return nil, fmt.Errorf("%w: %s line %d: %v", errUsage, o.batchFile, n, err)
			}
			s := base
			s.VMID, s.Hostname = b.VMID, b.Hostname
			s.IP = netip.Addr{}
			if b.IP != "" && b.IP != "auto" {
				if s.IP, err = netip.ParseAddr(b.IP); err != nil {
					return nil, fmt.Errorf("%w: %s line %d: ip %q is not an IPv4 address", errUsage, o.batchFile, n, b.IP)
				}
			}
			for dst, v := range map[*int]int{&s.Cores: b.Cores, &s.MemoryMB: b.MemoryMB, &s.SwapMB: b.SwapMB} {
				if v != 0 {
					*dst = v
				}
			}
			for dst, v := range map[*string]string{&s.Tenant: b.Tenant, &s.Storage: b.Storage, &s.SearchDomain: b.SearchDomain} {
				if v != "" {
					*dst = v
				}
			}
			if s.Hostname == "" {
				return nil, fmt.Errorf("%w: %s line %d: hostname is required", errUsage, o.batchFile, n)
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
			fmt.Fprintf(g.stdout, "  CT %-6d %-24s %-15s %s\n", r.Result.VMID, r.Result.Hostname, strings.TrimSuffix(r.Result.IP, "/24"), status)
		}
	}
	if failed > 0 {
		return fmt.Errorf("%d of %d pods failed", failed, len(results))
	}
	return nil
}
