package main

import (
	"bufio"
	"context"
	"fmt"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/migrahosting/cloudpods/provisioner"
)

func vmidArg(s string) (int, error) {
	n, err := strconv.Atoi(s)
	if err != nil || n <= 0 {
		return 0, fmt.Errorf("%w: VMID %q is not a number, e.g. 9101", errUsage, s)
	}
	return n, nil
}

// connect resolves settings and wires a provisioner.
func (g *globalOptions) connect(cmd *cobra.Command) (*provisioner.Provisioner, error) {
	if err := g.resolve(cmd.Flags()); err != nil {
		return nil, err
	}
	log := g.logger()
	api, err := g.client(log)
	if err != nil {
		return nil, err
	}
	return g.provisioner(api, provisioner.DefaultSpec(), log)
}

func newDestroyCommand(g *globalOptions) *cobra.Command {
	var req provisioner.DestroyRequest
	var yes bool
	cmd := &cobra.Command{
		Use:   "destroy VMID",
		Short: "Destroy a CloudPod safely (needs --force; refuses guests cloudpods did not create)",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			vmid, err := vmidArg(args[0])
			if err != nil {
				return err
			}
			prov, err := g.connect(cmd)
			if err != nil {
				return err
			}
			req.VMID, req.Requester, req.Reporter = vmid, g.requester, newProgress(g)
			return runDestroy(cmd.Context(), g, prov, req, yes)
		},
	}
	f := cmd.Flags()
	f.StringVar(&req.Node, "node", "pve", "PVE node")
	f.BoolVar(&req.Force, "force", false, "really destroy (asks for confirmation on a terminal unless --yes)")
	f.BoolVar(&yes, "yes", false, "do not ask for confirmation")
	f.BoolVar(&req.IgnoreOwnership, "ignore-ownership", false, "destroy even a guest without the cloudpods marker")
	f.BoolVar(&req.IfExists, "if-exists", false, "succeed when the guest is already gone")
	f.BoolVar(&req.BackupFirst, "backup-first", false, "take a vzdump before destroying")
	f.StringVar(&req.BackupStorage, "backup-storage", provisioner.DefaultBackupStorage, "storage for --backup-first")
	f.DurationVar(&req.ShutdownTimeout, "shutdown-timeout", 60*time.Second, "clean shutdown time before a hard stop")
	return cmd
}

func runDestroy(ctx context.Context, g *globalOptions, prov *provisioner.Provisioner, req provisioner.DestroyRequest, yes bool) error {
	if req.Force && !yes {
		if !isTerminal(g.stdout) || g.output == "json" {
			return fmt.Errorf("%w: destroy with --force needs --yes when not run interactively", errUsage)
		}
		info, _, err := prov.Inspect(ctx, req.Node, req.VMID)
		if err == nil {
			fmt.Fprintf(g.stdout, "Destroy CT %d %s (%s) on %s? %d backup(s) kept, %d snapshot(s) deleted. Type the hostname to confirm: ",
				info.VMID, info.Hostname, info.IP, info.Node, len(info.Backups), len(info.Snapshots))
			answer, _ := bufio.NewReader(g.stdin).ReadString('\n')
			if strings.TrimSpace(answer) != info.Hostname {
				return fmt.Errorf("%w: confirmation did not match %q; nothing was destroyed", provisioner.ErrRefused, info.Hostname)
			}
		}
	}
	res, err := prov.Destroy(ctx, req)
	if g.output == "json" {
		writeJSON(g.stdout, resultLine(res, err))
		return err
	}
	if err == nil {
		if !res.Existed {
			fmt.Fprintf(g.stdout, "CT %d does not exist: nothing to do\n", req.VMID)
		} else {
			fmt.Fprintf(g.stdout, "CT %d %s (%s) destroyed\n", res.VMID, res.Hostname, res.IP)
		}
		for _, w := range res.Warnings {
			fmt.Fprintf(g.stdout, "warning: %s\n", w)
		}
	}
	return err
}

// resultLine is the final JSON object of a command.
func resultLine(v interface{}, err error) map[string]interface{} {
	out := map[string]interface{}{"type": "result", "result": v}
	if err != nil {
		out["error"] = err.Error()
		out["exit_code"] = exitCode(err)
	}
	return out
}

func newBackupCommand(g *globalOptions) *cobra.Command {
	var req provisioner.BackupRequest
	var list bool
	cmd := &cobra.Command{
		Use:   "backup VMID | backup --list [VMID]",
		Short: "vzdump a CloudPod to a backup storage, notes tagged with hostname, tenant and vmid",
		Args:  cobra.RangeArgs(0, 1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if len(args) == 1 {
				vmid, err := vmidArg(args[0])
				if err != nil {
					return err
				}
				req.VMID = vmid
			} else if !list {
				return fmt.Errorf("%w: give the VMID to back up, or --list", errUsage)
			}
			prov, err := g.connect(cmd)
			if err != nil {
				return err
			}
			if list {
				return runBackupList(cmd.Context(), g, prov, req.Node, req.VMID)
			}
			req.Requester, req.Reporter = g.requester, newProgress(g)
			b, err := prov.Backup(cmd.Context(), req)
			if g.output == "json" {
				writeJSON(g.stdout, resultLine(b, err))
			} else if err == nil {
				fmt.Fprintf(g.stdout, "backup of CT %d: %s (%s) on %s\n", b.VMID, b.VolID, humanSize(b.Size), b.Storage)
			}
			return err
		},
	}
	f := cmd.Flags()
	f.StringVar(&req.Node, "node", "pve", "PVE node")
	f.StringVar(&req.Storage, "storage", provisioner.DefaultBackupStorage, "backup storage (vzdump-backups or t7-backup)")
	f.BoolVar(&list, "list", false, "list backups (of VMID, or all) with their notes")
	return cmd
}

func runBackupList(ctx context.Context, g *globalOptions, prov *provisioner.Provisioner, node string, vmid int) error {
	backups, err := prov.Backups(ctx, node, vmid)
	if err != nil {
		return err
	}
	if g.output == "json" {
		for _, b := range backups {
			writeJSON(g.stdout, b)
		}
		return nil
	}
	tw := tabwriter.NewWriter(g.stdout, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "VMID\tCREATED\tSIZE\tVOLID\tNOTES")
	for _, b := range backups {
		fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%s\n", b.VMID, b.Created.UTC().Format(time.RFC3339), humanSize(b.Size), b.VolID, b.Notes)
	}
	return tw.Flush()
}

func humanSize(n int64) string {
	switch {
	case n >= 1<<30:
		return fmt.Sprintf("%.1f GiB", float64(n)/(1<<30))
	case n >= 1<<20:
		return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20))
	}
	return fmt.Sprintf("%d KiB", n>>10)
}

// healthError carries health's exit code (1 degraded, 2 down/unknown)
// without an error message: the report is the message.
type healthError struct{ code int }

func (e *healthError) Error() string { return "" }

func newHealthCommand(g *globalOptions) *cobra.Command {
	var node string
	var all, deep bool
	cmd := &cobra.Command{
		Use:   "health VMID | health --all",
		Short: "Check CloudPods: exit 0 healthy, 1 degraded, 2 down or unknown",
		Args:  cobra.RangeArgs(0, 1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if (len(args) == 1) == all {
				return fmt.Errorf("%w: give one VMID or --all", errUsage)
			}
			prov, err := g.connect(cmd)
			if err != nil {
				return err
			}
			var reports []provisioner.Health
			if all {
				reports, err = prov.HealthAll(cmd.Context(), deep)
			} else {
				vmid, verr := vmidArg(args[0])
				if verr != nil {
					return verr
				}
				var h provisioner.Health
				h, err = prov.Health(cmd.Context(), node, vmid, deep)
				reports = []provisioner.Health{h}
			}
			if err != nil && len(reports) == 0 {
				return err
			}
			worst := 0
			for _, h := range reports {
				if g.output == "json" {
					writeJSON(g.stdout, h)
				} else {
					line := fmt.Sprintf("CT %d %s %s: %s", h.VMID, h.Hostname, h.IP, h.State)
					if len(h.Problems) > 0 {
						line += " — " + strings.Join(h.Problems, "; ")
					}
					fmt.Fprintln(g.stdout, line)
				}
				worst = max(worst, map[string]int{provisioner.Healthy: 0, provisioner.Degraded: 1}[h.State]+boolInt(h.State == provisioner.Down || h.State == provisioner.Unknown)*2)
			}
			if worst > 0 {
				return &healthError{code: worst}
			}
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&node, "node", "pve", "PVE node")
	f.BoolVar(&all, "all", false, "check every CloudPod")
	f.BoolVar(&deep, "deep", false, "also check inside the pod: gateway ping, DNS, services")
	return cmd
}

func boolInt(b bool) int {
	if b {
		return 1
	}
	return 0
}

func newListCommand(g *globalOptions) *cobra.Command {
	var tenant, status string
	cmd := &cobra.Command{
		Use:   "list",
		Short: "List every CloudPod in the cluster",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			prov, err := g.connect(cmd)
			if err != nil {
				return err
			}
			pods, err := prov.List(cmd.Context(), tenant, status)
			if err != nil {
				return err
			}
			if g.output == "json" {
				for _, p := range pods {
					writeJSON(g.stdout, p)
				}
				return nil
			}
			tw := tabwriter.NewWriter(g.stdout, 0, 0, 2, ' ', 0)
			fmt.Fprintln(tw, "VMID\tHOSTNAME\tIP\tTENANT\tNODE\tSTATUS\tCREATED")
			for _, p := range pods {
				fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%s\t%s\t%s\n", p.VMID, p.Hostname, p.IP, p.Tenant, p.Node, p.Status, p.Created.Format(time.RFC3339))
			}
			return tw.Flush()
		},
	}
	cmd.Flags().StringVar(&tenant, "tenant", "", "only this tenant's pods")
	cmd.Flags().StringVar(&status, "status", "", "only pods in this PVE status (running, stopped)")
	return cmd
}
