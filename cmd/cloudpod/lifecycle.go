package main

import (
	"bufio"
	"context"
	"fmt"
	"io"
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
		Short: "Destroy a CloudPod (or a CT or VM cloudpods made) safely (needs --force; refuses guests cloudpods did not create)",
		Long: `Destroy a CloudPod, or a container or VM cloudpods made: shut it down (stop after --shutdown-timeout), wait for PVE's locks, delete it with
its volumes (purge, destroy-unreferenced-disks) and release its address in IPAM.

Refused: without --force; on a terminal until you type the hostname (--yes skips the question, and is
needed when not on a terminal); a guest without the cloudpods ownership marker (--ignore-ownership);
the golden template and any VMID under 100; a guest with protection mode on. Backups are kept.`,
		Example: `  cloudpod destroy 9101 --force
  cloudpod destroy 9101 --force --yes --backup-first --if-exists`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			vmid, err := vmidArg(args[0])
			if err != nil {
				return err
			}
			prov, err := g.connect(cmd)
			if err != nil {
				return err
			}
			prog := newProgress(g)
			defer prog.Close()
			req.VMID, req.Requester, req.Reporter = vmid, g.requester, prog
			if req.Force && !yes {
				req.Confirm = func(ctx context.Context, pod provisioner.DestroyResult) error {
					// The question needs the terminal's last line.
					prog.pause()
					defer prog.resume()
					return g.confirmDestroy(ctx, pod)
				}
			}
			return runDestroy(cmd.Context(), g, prov, req)
		},
	}
	f := cmd.Flags()
	f.StringVar(&req.Node, "node", "", nodeFlagHelp)
	f.BoolVar(&req.Force, "force", false, "really destroy (asks for the hostname on a terminal unless --yes)")
	f.BoolVar(&yes, "yes", false, "do not ask for confirmation (scripts)")
	f.BoolVar(&req.IgnoreOwnership, "ignore-ownership", false, "destroy even a guest without the cloudpods ownership marker")
	f.BoolVar(&req.IfExists, "if-exists", false, "succeed when the guest is already gone")
	f.BoolVar(&req.BackupFirst, "backup-first", false, "take a vzdump before destroying")
	f.StringVar(&req.BackupStorage, "backup-storage", provisioner.DefaultBackupStorage, "storage for --backup-first")
	f.DurationVar(&req.ShutdownTimeout, "shutdown-timeout", 60*time.Second, "clean shutdown time before PVE stops the pod hard")
	f.DurationVar(&req.LockWait, "lock-timeout", 2*time.Minute, "how long to wait for another PVE task's lock on the pod")
	return cmd
}

// confirmDestroy asks the operator at the terminal to type the hostname of
// the pod about to go; without a terminal nobody can answer, so it refuses.
func (g *globalOptions) confirmDestroy(ctx context.Context, pod provisioner.DestroyResult) error {
	if !readsTerminal(g.stdin) {
		return fmt.Errorf("%w: not on a terminal, so nobody can confirm destroying %s %d (%s, %s): pass --yes as well", provisioner.ErrRefused, pod.Kind.Noun(), pod.VMID, pod.Hostname, orNoAddress(pod.IP))
	}
	want := pod.Hostname
	if want == "" {
		want = strconv.Itoa(pod.VMID)
	}
	fmt.Fprintf(g.stderr, "Destroy %s %d %s (%s) on node %s?\n", pod.Kind.Noun(), pod.VMID, pod.Hostname, podFacts(pod), pod.Node)
	if len(pod.Backups) > 0 {
		fmt.Fprintf(g.stderr, "  backups, kept: %s\n", strings.Join(pod.Backups, ", "))
	}
	if len(pod.Snapshots) > 0 {
		fmt.Fprintf(g.stderr, "  snapshots, deleted with it: %s\n", strings.Join(pod.Snapshots, ", "))
	}
	fmt.Fprintf(g.stderr, "Type %q to confirm: ", want)
	answer, err := readLine(ctx, g.stdin)
	if err != nil {
		return fmt.Errorf("%w: no confirmation (%v); nothing was destroyed", provisioner.ErrRefused, err)
	}
	if strings.TrimSpace(answer) != want {
		return fmt.Errorf("%w: %q does not match %q; nothing was destroyed", provisioner.ErrRefused, strings.TrimSpace(answer), want)
	}
	return nil
}

// readsTerminal reports whether r is a terminal (an *os.File, which is
// also the writer isTerminal checks).
func readsTerminal(r io.Reader) bool {
	w, ok := r.(io.Writer)
	return ok && isTerminal(w)
}

// readLine reads one line, giving up when ctx ends (an interrupt).
func readLine(ctx context.Context, r io.Reader) (string, error) {
	type line struct {
		s   string
		err error
	}
	ch := make(chan line, 1)
	go func() {
		s, err := bufio.NewReader(r).ReadString('\n')
		if err == io.EOF && s != "" {
			err = nil
		}
		ch <- line{s, err}
	}()
	select {
	case l := <-ch:
		return l.s, l.err
	case <-ctx.Done():
		return "", ctx.Err()
	}
}

func podFacts(pod provisioner.DestroyResult) string {
	facts := []string{orNoAddress(pod.IP)}
	if pod.Tenant != "" {
		facts = append(facts, "tenant "+pod.Tenant)
	}
	if pod.Status != "" {
		facts = append(facts, pod.Status)
	}
	if pod.Lock != "" {
		facts = append(facts, "locked ("+pod.Lock+")")
	}
	if pod.HA {
		facts = append(facts, "HA-managed")
	}
	return strings.Join(facts, ", ")
}

func orNoAddress(ip string) string {
	if ip == "" {
		return "no address"
	}
	return ip
}

func runDestroy(ctx context.Context, g *globalOptions, prov *provisioner.Provisioner, req provisioner.DestroyRequest) error {
	res, err := prov.Destroy(ctx, req)
	if g.output == "json" {
		writeJSON(g.stdout, resultLine(res, err))
		return err
	}
	if err != nil {
		return err
	}
	if !res.Existed {
		fmt.Fprintf(g.stdout, "CT %d does not exist %s: nothing to destroy\n", req.VMID, whereText(res.Node))
		return nil
	}
	line := fmt.Sprintf("%s %d %s (%s) destroyed", res.Kind.Noun(), res.VMID, res.Hostname, orNoAddress(res.IP))
	if res.Released != "" {
		line += "; " + res.Released + " released in IPAM"
	}
	if res.BackupID != "" {
		line += "; backup " + res.BackupID
	}
	fmt.Fprintln(g.stdout, line)
	return nil
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
		Long: `Back up a CloudPod with vzdump: snapshot mode (vzdump falls back to suspend where a volume cannot
snapshot), zstd, notes naming hostname, vmid and tenant. The storage's own retention (prune) applies.
--list shows the archives on every backup storage, newest first, with their notes.`,
		Example: `  cloudpod backup 9101
  cloudpod backup 9101 --storage t7-backup
  cloudpod backup --list 9101`,
		Args: cobra.RangeArgs(0, 1),
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
				only := ""
				if cmd.Flags().Changed("storage") {
					only = req.Storage
				}
				return runBackupList(cmd.Context(), g, prov, req.Node, req.VMID, only)
			}
			prog := newProgress(g)
			req.Requester, req.Reporter = g.requester, prog
			b, err := prov.Backup(cmd.Context(), req)
			prog.Close()
			if g.output == "json" {
				writeJSON(g.stdout, resultLine(b, err))
			} else if err == nil {
				line := fmt.Sprintf("backup of CT %d: %s (%s", b.VMID, b.VolID, humanSize(b.Size))
				if b.Mode != "" {
					line += ", mode " + b.Mode
				}
				fmt.Fprintf(g.stdout, "%s) on %s\n", line, b.Storage)
			}
			return err
		},
	}
	f := cmd.Flags()
	f.StringVar(&req.Node, "node", "", nodeFlagHelp)
	f.StringVar(&req.Storage, "storage", provisioner.DefaultBackupStorage, "backup storage (vzdump-backups or t7-backup); with --list, only this one")
	f.DurationVar(&req.LockWait, "lock-timeout", 2*time.Minute, "how long to wait for another PVE task's lock on the pod")
	f.BoolVar(&list, "list", false, "list backups (of VMID, or all) with their notes")
	return cmd
}

func runBackupList(ctx context.Context, g *globalOptions, prov *provisioner.Provisioner, node string, vmid int, storage string) error {
	all, err := prov.Backups(ctx, node, vmid)
	if err != nil {
		return err
	}
	backups := all[:0:0]
	for _, b := range all {
		if storage == "" || b.Storage == storage {
			backups = append(backups, b)
		}
	}
	if g.output == "json" {
		for _, b := range backups {
			writeJSON(g.stdout, b)
		}
		return nil
	}
	tw := tabwriter.NewWriter(g.stdout, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "VMID\tCREATED\tSIZE\tSTORAGE\tVOLID\tNOTES")
	for _, b := range backups {
		fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%s\t%s\n", b.VMID, b.Created.UTC().Format(time.RFC3339), humanSize(b.Size), b.Storage, b.VolID, b.Notes)
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

// healthError carries health's exit code (1 degraded, 2 down, 3 unknown)
// without an error message: the report is the message.
type healthError struct{ code int }

func (e *healthError) Error() string { return "" }

// Health's exit codes (README "Exit codes").
const (
	exitHealthy  = 0
	exitDegraded = 1
	exitDown     = 2
	// exitUnknown: PVE could not be asked, or --deep could not look
	// inside an otherwise healthy pod.
	exitUnknown = 3
)

// healthCode is a state's exit code.
func healthCode(state string) int {
	switch state {
	case provisioner.Healthy:
		return exitHealthy
	case provisioner.Degraded:
		return exitDegraded
	case provisioner.Down:
		return exitDown
	}
	return exitUnknown
}

// healthSeverity orders health's exit codes for --all, whose exit code is
// the worst pod's: a pod down is worse than one degraded, which is worse
// than one not known to be healthy.
func healthSeverity(code int) int {
	return map[int]int{exitHealthy: 0, exitUnknown: 1, exitDegraded: 2, exitDown: 3}[code]
}

func newHealthCommand(g *globalOptions) *cobra.Command {
	var node string
	var all, deep bool
	cmd := &cobra.Command{
		Use:   "health VMID | health --all",
		Short: "Check CloudPods: exit 0 healthy, 1 degraded, 2 down, 3 unknown",
		Long: `Check CloudPods: PVE status, uptime, CPU/memory/disk use against the limits, locks, and drift of the
config (IP, gateway, hostname, cores, memory, swap, tag) from the spec in the ownership marker. --deep also
looks inside over the console: default route, gateway ping, resolver, DNS resolution, the template's services.
One line per pod (JSON with -o json); the exit code is the worst pod's: 0 healthy, 1 degraded, 2 down, 3 unknown
(PVE could not be asked, or --deep could not look inside a pod that is otherwise healthy; the line says why).`,
		Args: cobra.RangeArgs(0, 1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if (len(args) == 1) == all {
				return fmt.Errorf("%w: give one VMID or --all", errUsage)
			}
			var vmid int
			if !all {
				var err error
				if vmid, err = vmidArg(args[0]); err != nil {
					return err
				}
			}
			prov, err := g.connect(cmd)
			if err != nil {
				return err
			}
			var reports []provisioner.Health
			if all {
				if reports, err = prov.HealthAll(cmd.Context(), deep); err != nil {
					return err
				}
				if len(reports) == 0 && g.output != "json" {
					fmt.Fprintln(g.stdout, "no CloudPods in the cluster")
				}
			} else {
				h, _ := prov.Health(cmd.Context(), node, vmid, deep) // an error is an unknown report
				reports = []provisioner.Health{h}
			}
			worst := 0
			for _, h := range reports {
				if g.output == "json" {
					writeJSON(g.stdout, h)
				} else {
					fmt.Fprintln(g.stdout, healthLine(h))
				}
				if code := healthCode(h.State); healthSeverity(code) > healthSeverity(worst) {
					worst = code
				}
			}
			if worst > 0 {
				return &healthError{code: worst}
			}
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&node, "node", "", nodeFlagHelp)
	f.BoolVar(&all, "all", false, "check every CloudPod in the cluster")
	f.BoolVar(&deep, "deep", false, "also check inside the pod: gateway ping, DNS, services")
	return cmd
}

// healthLine is one pod's report on one line: state, usage against limits,
// then what is wrong.
func healthLine(h provisioner.Health) string {
	var b strings.Builder
	fmt.Fprintf(&b, "CT %d", h.VMID)
	if h.Hostname != "" {
		fmt.Fprintf(&b, " %s", h.Hostname)
	}
	if h.IP != "" {
		fmt.Fprintf(&b, " (%s)", h.IP)
	}
	fmt.Fprintf(&b, " %s", h.State)
	if h.PVEStatus == "running" {
		fmt.Fprintf(&b, ": up %s, cpu %.0f%% of %d, mem %s/%s, disk %s/%s", (time.Duration(h.Uptime) * time.Second).String(),
			h.CPU*100, h.CPUs, humanSize(h.MemUsed), humanSize(h.MemMax), humanSize(h.DiskUsed), humanSize(h.DiskMax))
	}
	if len(h.Checks) > 0 {
		ok := 0
		for _, c := range h.Checks {
			if c.OK {
				ok++
			}
		}
		fmt.Fprintf(&b, ", %d/%d checks inside", ok, len(h.Checks))
	}
	if len(h.Problems) > 0 {
		fmt.Fprintf(&b, " — %s", strings.Join(h.Problems, "; "))
	}
	switch {
	case len(h.Warnings) > 0 && h.State == provisioner.Unknown && len(h.Problems) == 0:
		// The warnings are why it is not known.
		fmt.Fprintf(&b, " — %s", strings.Join(h.Warnings, "; "))
	case len(h.Warnings) > 0:
		fmt.Fprintf(&b, " (note: %s)", strings.Join(h.Warnings, "; "))
	}
	return b.String()
}

func newListCommand(g *globalOptions) *cobra.Command {
	var tenant, status string
	cmd := &cobra.Command{
		Use:   "list",
		Short: "List every CloudPod in the cluster",
		Long:  "List every CloudPod in the cluster (containers carrying the cloudpods ownership marker), by VMID.",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			switch status {
			case "", "running", "stopped", "unknown":
			default:
				return fmt.Errorf("%w: --status %q: use running, stopped or unknown", errUsage, status)
			}
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
			return printPods(g, pods, "HOSTNAME")
		},
	}
	cmd.Flags().StringVar(&tenant, "tenant", "", "only this tenant's pods")
	cmd.Flags().StringVar(&status, "status", "", "only pods in this PVE status (running, stopped)")
	return cmd
}

// printPods is list's table: one guest a line, its name under name.
func printPods(g *globalOptions, pods []provisioner.Pod, name string) error {
	tw := tabwriter.NewWriter(g.stdout, 0, 0, 2, ' ', 0)
	fmt.Fprintf(tw, "VMID\t%s\tIP\tTENANT\tNODE\tSTATUS\tCREATED\n", name)
	for _, p := range pods {
		created := "-" // not known: its node is down and its config unread
		if !p.Created.IsZero() {
			created = p.Created.UTC().Format(time.RFC3339)
		}
		fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%s\t%s\t%s\n", p.VMID, p.Hostname, dash(p.IP), dash(p.Tenant), p.Node, p.Status, created)
	}
	return tw.Flush()
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
