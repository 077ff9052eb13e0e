// Command cloudpod-bench measures `cloudpod create --count N` against pvesim
// on loopback at realistic task durations, on an empty cluster and on a
// busy one, side by side with the same batch through Ansible's Proxmox
// module where Ansible is installed. It prints Markdown tables and writes
// the figures as JSON (`make bench`). With --cluster it measures the batch
// with --node auto on a pvesim cluster instead (`make bench-cluster`).
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"
	"time"

	"github.com/spf13/pflag"

	"github.com/migrahosting/cloudpods/fixtures/bench"
)

type options struct {
	cloudpod     string
	pods         int
	clone, start time.Duration
	scale        float64
	requestTime  time.Duration
	workers      int
	guests       []int
	ansible      string
	jsonFile     string
	workDir      string
	checkTargets bool
	cluster      []string
}

func main() {
	os.Exit(execute(os.Args[1:], os.Stdout, os.Stderr))
}

func execute(args []string, stdout, stderr io.Writer) int {
	o, err := parseFlags(args, stderr)
	if errors.Is(err, pflag.ErrHelp) {
		return 0
	}
	if err != nil {
		fmt.Fprintln(stderr, "cloudpod-bench:", err)
		return 2
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if len(o.cluster) > 0 {
		return executeCluster(ctx, o, stdout, stderr)
	}
	rep, err := run(ctx, o, stderr)
	if rep != nil {
		rep.WriteMarkdown(stdout)
		if o.jsonFile != "" {
			if werr := writeJSON(o.jsonFile, rep); werr != nil {
				err = errors.Join(err, werr)
			}
		}
	}
	if err != nil {
		fmt.Fprintln(stderr, "cloudpod-bench:", err)
		return 1
	}
	if o.checkTargets && !rep.TargetsMet() {
		fmt.Fprintln(stderr, "cloudpod-bench: issue 15's targets are not all met (see the targets table)")
		return 1
	}
	return 0
}

func parseFlags(args []string, stderr io.Writer) (options, error) {
	var o options
	fs := pflag.NewFlagSet("cloudpod-bench", pflag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&o.cloudpod, "cloudpod", "bin/cloudpod", "the cloudpod binary to measure")
	fs.IntVar(&o.pods, "pods", 20, "pods in the batch (cloudpod create --count N)")
	fs.DurationVar(&o.clone, "clone", 3*time.Second, "configured clone task duration, before scaling")
	fs.DurationVar(&o.start, "start", time.Second, "configured start task duration, before scaling")
	fs.Float64Var(&o.scale, "scale", 1, "multiply the task durations (1 = realistic)")
	fs.DurationVar(&o.requestTime, "request-time", 15*time.Millisecond, "what each API call costs the simulated node: it holds one of --request-workers pveproxy workers this long (15ms × 3 ≈ 200 calls/s, the fast end of a real node); 0: no cost")
	fs.IntVar(&o.workers, "request-workers", 3, "pveproxy workers for --request-time (PVE runs 3)")
	fs.IntSliceVar(&o.guests, "guests", []int{0, 1000}, "existing guests of each cluster to measure on (0 = empty)")
	fs.StringVar(&o.ansible, "ansible", "auto", "the same batch through Ansible: auto (when installed, else a skip reason), off, or require")
	fs.StringVar(&o.jsonFile, "json", "", "also write the figures to this file as JSON")
	fs.StringVar(&o.workDir, "work-dir", "", "keep the simulators' data and the clients' files here (default: a temporary directory, removed)")
	fs.BoolVar(&o.checkTargets, "check-targets", false, "exit 1 unless every issue 15 target is measured and met")
	fs.StringSliceVar(&o.cluster, "cluster", nil, "measure on a pvesim cluster of these nodes instead (e.g. pve,pve2,pve3): create --count --pods --node auto with the template on shared storage, alone and with a copy per node, against the one-node lower bound (--guests and --ansible do not apply)")
	if err := fs.Parse(args); err != nil {
		return o, err
	}
	if fs.NArg() > 0 {
		return o, fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	switch o.ansible {
	case "auto", "off", "require":
	default:
		return o, fmt.Errorf("--ansible %q: want auto, off or require", o.ansible)
	}
	return o, nil
}

func run(ctx context.Context, o options, progress io.Writer) (*bench.Report, error) {
	cloudpod, err := filepath.Abs(o.cloudpod)
	if err != nil {
		return nil, err
	}
	if _, err := os.Stat(cloudpod); err != nil {
		return nil, fmt.Errorf("--cloudpod: %w (make build makes bin/cloudpod)", err)
	}
	dir := o.workDir
	if dir == "" {
		if dir, err = os.MkdirTemp("", "cloudpod-bench-"); err != nil {
			return nil, err
		}
		defer os.RemoveAll(dir)
	}
	opts := bench.Options{
		Setting: bench.Setting{Pods: o.pods, Clone: o.clone, Start: o.start, Scale: o.scale,
			RequestTime: o.requestTime, RequestWorkers: o.workers},
		Guests:   o.guests,
		Cloudpod: bench.Cloudpod{Command: []string{cloudpod}},
		WorkDir:  dir,
		Progress: progress,
	}
	if o.ansible != "off" {
		opts.Ansible = &bench.Ansible{}
	}
	rep, err := bench.Run(ctx, opts)
	if err == nil && o.ansible == "require" {
		for _, sc := range rep.Scenarios {
			for _, r := range sc.Runs {
				if r.Skipped != "" {
					return rep, fmt.Errorf("--ansible require: %s", r.Skipped)
				}
			}
		}
	}
	return rep, err
}

// executeCluster runs the cluster benchmark and exits 1 unless its
// makespan with a template copy per node is below the one-node lower
// bound.
func executeCluster(ctx context.Context, o options, stdout, stderr io.Writer) int {
	cloudpod, err := filepath.Abs(o.cloudpod)
	if err == nil {
		_, err = os.Stat(cloudpod)
	}
	if err != nil {
		fmt.Fprintf(stderr, "cloudpod-bench: --cloudpod: %v (make build makes bin/cloudpod)\n", err)
		return 1
	}
	dir := o.workDir
	if dir == "" {
		if dir, err = os.MkdirTemp("", "cloudpod-bench-"); err != nil {
			fmt.Fprintln(stderr, "cloudpod-bench:", err)
			return 1
		}
		defer os.RemoveAll(dir)
	}
	rep, err := bench.RunCluster(ctx, bench.ClusterOptions{
		Setting: bench.Setting{Pods: o.pods, Clone: o.clone, Start: o.start, Scale: o.scale,
			RequestTime: o.requestTime, RequestWorkers: o.workers},
		Nodes: o.cluster, Cloudpod: bench.Cloudpod{Command: []string{cloudpod}}, WorkDir: dir, Progress: stderr,
	})
	if rep != nil {
		rep.WriteMarkdown(stdout)
		if o.jsonFile != "" {
			err = errors.Join(err, writeJSON(o.jsonFile, rep))
		}
	}
	if err != nil {
		fmt.Fprintln(stderr, "cloudpod-bench:", err)
		return 1
	}
	if o.checkTargets && !rep.Runs[len(rep.Runs)-1].BelowOneNodeBound {
		fmt.Fprintln(stderr, "cloudpod-bench: the makespan with a template copy per node is not below the one-node lower bound")
		return 1
	}
	return 0
}

// jsonReport is a report that writes itself as JSON.
type jsonReport interface{ WriteJSON(io.Writer) error }

func writeJSON(path string, rep jsonReport) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if err := rep.WriteJSON(f); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}
