// Command pvesim runs the Proxmox VE API simulator on loopback: the
// CloudPods node "pve" with its storages and template CT 9000, served over
// HTTPS with a fresh self-signed certificate and one API token.
package main

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/sirupsen/logrus"
	"github.com/spf13/pflag"

	"github.com/migrahosting/cloudpods/fixtures/pvesim"
)

type options struct {
	listen          string
	tokenID         string
	tokenSecret     string
	users           []string
	version         string
	taskScale       float64
	taskDurations   []string
	stateFile       string
	applianceMirror string
	dataDir         string
	faults          []string
	packages        string
	packageVersions []string
	authFailDelay   time.Duration
	logLevel        string
	envFile         string
	seedGuests      int
	requestTime     time.Duration
	requestWorkers  int
	guests          string
	netplan         string
	guestCache      string
	mirror          string
	noTemplate      bool
	nodes           []string
	nodeSpecs       []string
	templateStorage string
	offline         []string
}

func main() {
	os.Exit(execute(os.Args[1:], os.Stdout, os.Stderr))
}

func execute(args []string, stdout, stderr io.Writer) int {
	opts, err := parseFlags(args, stderr)
	if errors.Is(err, pflag.ErrHelp) {
		return 0
	}
	if err != nil {
		fmt.Fprintln(stderr, "pvesim:", err)
		return 2
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, opts, stdout, stderr); err != nil {
		fmt.Fprintln(stderr, "pvesim:", err)
		return 1
	}
	return 0
}

func parseFlags(args []string, stderr io.Writer) (options, error) {
	var o options
	fs := pflag.NewFlagSet("pvesim", pflag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&o.listen, "listen", "127.0.0.1:8006", "address to serve HTTPS on (port 0 picks one)")
	fs.StringVar(&o.tokenID, "token-id", "cloudpods@pve!provisioner", "API token id, user@realm!name")
	fs.StringVar(&o.tokenSecret, "token-secret", "", "API token secret (default: a random UUID, printed at start)")
	fs.StringArrayVar(&o.users, "user", nil, "a password login for /access/ticket, USER@REALM=PASSWORD (repeatable; default root@pam with a random password, printed at start)")
	fs.StringVar(&o.version, "pve-version", "9.1", "PVE release to imitate: 8.4 or 9.1")
	fs.Float64Var(&o.taskScale, "task-scale", 1, "multiply every task duration (0.01 = 100x faster)")
	fs.StringArrayVar(&o.taskDurations, "task-duration", nil, "task duration before scaling, TYPE=DURATION, e.g. vzclone=10s (repeatable)")
	fs.StringVar(&o.stateFile, "state", "", "state file: loaded at start if present, written at exit")
	fs.StringVar(&o.applianceMirror, "appliance-mirror", "", "base URL (loopback only) of a mirror of the appliance templates, laid out like download.proxmox.com/images; default: the simulator synthesises them")
	fs.StringVar(&o.dataDir, "data-dir", "", "container root directories (default: a temporary directory removed at exit)")
	fs.StringArrayVar(&o.faults, "fault", nil, "inject a fault (repeatable): "+pvesim.FaultSyntax)
	fs.StringVar(&o.packages, "packages", pvesim.PackagesUpdated, "package level: "+pvesim.PackagesUpdated+" (the 2026-04-21 updates installed: the console accepts API tokens) or "+pvesim.PackagesPreApril2026+" (it refuses them, on 9.1 as on 8.4)")
	fs.StringArrayVar(&o.packageVersions, "package", nil, "override one installed package version, NAME=VERSION, e.g. pve-container=6.1.2 (repeatable)")
	fs.DurationVar(&o.authFailDelay, "auth-fail-delay", 3*time.Second, "delay of a refused login, as pveproxy's 3 s")
	fs.StringVar(&o.logLevel, "log-level", "info", "log level for stderr: debug, info, warn, error")
	fs.IntVar(&o.seedGuests, "seed-guests", 0, "add N existing guests (CTs and VMs with static addresses in several subnets, tags, most running) for measuring costs on a busy cluster; the same N guests every time, and those a --state file already holds are kept")
	fs.DurationVar(&o.requestTime, "request-time", 0, "what each API call costs the node: it holds one of --request-workers pveproxy workers this long before it is handled (15ms ≈ 200 calls/s with 3 workers); 0 answers as fast as the simulator can")
	fs.IntVar(&o.requestWorkers, "request-workers", 3, "pveproxy workers for --request-time (PVE runs 3)")
	fs.StringVar(&o.guests, "guests", "emulated", "the inside of containers: emulated (ctshell) or lxc (real unprivileged LXC containers in a network namespace of their own; root only, the first start builds the template with debootstrap)")
	fs.StringVar(&o.netplan, "netplan", "1.1", "the template's netplan.io line: 1.1 (apply fails in an unprivileged CT, as on an updated Ubuntu 24.04) or 1.0 (apply works); with --guests lxc, 1.1 is Debian trixie's 1.1.2 and 1.0 bookworm's 0.106")
	fs.StringVar(&o.guestCache, "guest-cache", "", "with --guests lxc: where built template root filesystems are kept (default /var/cache/cloudpods/pvesim)")
	fs.StringVar(&o.mirror, "mirror", "", "with --guests lxc: the Debian mirror to build the template from (default: the one the host's apt sources name)")
	fs.BoolVar(&o.noTemplate, "no-template", false, "start without the golden template CT 9000 and its Ubuntu 24.04 archive, as before `cloudpod template build`")
	fs.StringSliceVar(&o.nodes, "nodes", []string{"pve"}, "the cluster's nodes, comma-separated; more than one forms a cluster, each node with its own pveproxy (the first on --listen), its local storages and the shared ceph-pods, the template on ceph-pods")
	fs.StringArrayVar(&o.nodeSpecs, "node-spec", nil, "a node's hardware and load, NODE=cpus=N,memory=SIZE,used=SIZE,cpu=FRACTION, e.g. pve2=memory=256G,used=40G (repeatable; default 16 CPUs, 128G, 9G used)")
	fs.StringVar(&o.templateStorage, "template-storage", "", "storage of the template CT 9000: clients-main (the default on one node) or ceph-pods (the default on a cluster)")
	fs.StringArrayVar(&o.offline, "offline", nil, "start with this node offline: powered off, calls through another node fail with 595 No route to host (repeatable)")
	fs.StringVar(&o.envFile, "env-file", "", "also write PVE_URL, PVE_TOKEN_ID, PVE_TOKEN_SECRET and PVE_FINGERPRINT to this file (mode 0600)")
	if err := fs.Parse(args); err != nil {
		return o, err
	}
	if fs.NArg() > 0 {
		return o, fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	return o, nil
}

func (o options) config(log logrus.FieldLogger) (pvesim.Config, []string, error) {
	cfg := pvesim.Config{
		Listen:          o.listen,
		Version:         o.version,
		DataDir:         o.dataDir,
		Scale:           o.taskScale,
		AuthFailDelay:   o.authFailDelay,
		Packages:        o.packages,
		StateFile:       o.stateFile,
		ApplianceMirror: o.applianceMirror,
		RequestTime:     o.requestTime,
		RequestWorkers:  o.requestWorkers,
		Guests:          o.guests,
		Netplan:         o.netplan,
		GuestCache:      o.guestCache,
		Mirror:          o.mirror,
		NoTemplate:      o.noTemplate,
		TemplateStorage: o.templateStorage,
		Logger:          log,
		Tokens:          []pvesim.Token{{ID: o.tokenID, Secret: o.tokenSecret}},
	}
	if o.authFailDelay == 0 {
		cfg.AuthFailDelay = -1
	}
	if len(o.taskDurations) > 0 {
		cfg.TaskDurations = map[string]time.Duration{}
	}
	nodes, err := nodeSpecs(o.nodes, o.nodeSpecs)
	if err != nil {
		return cfg, nil, err
	}
	cfg.Nodes = nodes
	for _, td := range o.taskDurations {
		typ, dur, ok := strings.Cut(td, "=")
		d, err := time.ParseDuration(dur)
		if !ok || err != nil || typ == "" {
			return cfg, nil, fmt.Errorf("--task-duration %q: want TYPE=DURATION, e.g. vzclone=10s", td)
		}
		cfg.TaskDurations[typ] = d
	}
	for _, pv := range o.packageVersions {
		name, v, ok := strings.Cut(pv, "=")
		if !ok || name == "" || v == "" {
			return cfg, nil, fmt.Errorf("--package %q: want NAME=VERSION, e.g. pve-container=6.1.2", pv)
		}
		if cfg.PackageVersions == nil {
			cfg.PackageVersions = map[string]string{}
		}
		cfg.PackageVersions[name] = v
	}
	for _, rule := range o.faults {
		f, err := pvesim.ParseFault(rule)
		if err != nil {
			return cfg, nil, err
		}
		cfg.Faults = append(cfg.Faults, f)
	}
	var logins []string
	for _, u := range o.users {
		id, pw, ok := strings.Cut(u, "=")
		if !ok || id == "" {
			return cfg, nil, fmt.Errorf("--user %q: want USER@REALM=PASSWORD", u)
		}
		cfg.Users = append(cfg.Users, pvesim.User{ID: id, Password: pw})
	}
	if len(cfg.Users) == 0 {
		pw := randomUUID()
		cfg.Users = []pvesim.User{{ID: "root@pam", Password: pw}}
		logins = append(logins, "root@pam password: "+pw)
	}
	return cfg, logins, nil
}

func run(ctx context.Context, o options, stdout, stderr io.Writer) error {
	log := logrus.New()
	log.SetOutput(stderr)
	level, err := logrus.ParseLevel(o.logLevel)
	if err != nil {
		return fmt.Errorf("--log-level: %w", err)
	}
	log.SetLevel(level)
	if o.tokenSecret == "" {
		o.tokenSecret = randomUUID()
	}
	cfg, logins, err := o.config(log)
	if err != nil {
		return err
	}
	sim, err := pvesim.Start(ctx, cfg)
	if err != nil {
		return err
	}
	if err := sim.SeedGuests(o.seedGuests); err != nil {
		_ = sim.Close()
		return err
	}
	fmt.Fprintf(stdout, "PVE %s simulator (%s) at %s\n", sim.Version(), sim.PackageSummary(), sim.URL())
	if nodes := sim.Nodes(); len(nodes) > 1 {
		for _, n := range nodes {
			fmt.Fprintf(stdout, "node %s: %s\n", n, sim.NodeURL(n))
		}
	}
	for _, n := range o.offline {
		if err := sim.SetNodeState(n, pvesim.NodeOffline); err != nil {
			_ = sim.Close()
			return err
		}
		fmt.Fprintf(stdout, "node %s: offline\n", n)
	}
	fmt.Fprintf(stdout, "certificate fingerprint: %s\n", sim.Fingerprint())
	fmt.Fprintf(stdout, "Authorization: PVEAPIToken=%s=%s\n", o.tokenID, o.tokenSecret)
	for _, l := range logins {
		fmt.Fprintln(stdout, l)
	}
	if o.envFile != "" {
		env := fmt.Sprintf("PVE_URL=%s\nPVE_TOKEN_ID=%s\nPVE_TOKEN_SECRET=%s\nPVE_FINGERPRINT=%s\n",
			sim.URL(), o.tokenID, o.tokenSecret, sim.Fingerprint())
		if err := writeFileAtomic(o.envFile, []byte(env)); err != nil {
			_ = sim.Close()
			return err
		}
	}
	<-ctx.Done()
	log.Info("pvesim: shutting down")
	return sim.Close()
}

// writeFileAtomic makes the file appear complete, for scripts polling it.
func writeFileAtomic(path string, data []byte) error {
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, data, 0o600); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	return nil
}

func randomUUID() string {
	b := make([]byte, 16)
	_, _ = rand.Read(b)
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	return fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:])
}

// nodeSpecs reads --nodes and --node-spec.
func nodeSpecs(names, specs []string) ([]pvesim.NodeSpec, error) {
	out := make([]pvesim.NodeSpec, len(names))
	index := map[string]int{}
	for i, n := range names {
		out[i].Name = strings.TrimSpace(n)
		index[out[i].Name] = i
	}
	for _, spec := range specs {
		name, kvs, ok := strings.Cut(spec, "=")
		i, known := index[name]
		if !ok || !known {
			return nil, fmt.Errorf("--node-spec %q: want NODE=cpus=N,memory=SIZE,used=SIZE,cpu=FRACTION for a node of --nodes", spec)
		}
		for _, kv := range strings.Split(kvs, ",") {
			k, v, _ := strings.Cut(kv, "=")
			var err error
			switch k {
			case "cpus":
				out[i].CPUs, err = strconv.Atoi(v)
			case "memory":
				out[i].Memory, err = parseBytes(v)
			case "used":
				out[i].MemoryUsed, err = parseBytes(v)
			case "cpu":
				out[i].CPU, err = strconv.ParseFloat(v, 64)
			default:
				err = fmt.Errorf("unknown key")
			}
			if err != nil {
				return nil, fmt.Errorf("--node-spec %q: %s=%q: want cpus=N, memory=SIZE, used=SIZE (e.g. 256G) or cpu=FRACTION", spec, k, v)
			}
		}
	}
	return out, nil
}

// parseBytes reads 512M, 128G, 1T or bytes.
func parseBytes(v string) (int64, error) {
	mult := int64(1)
	switch {
	case strings.HasSuffix(v, "K"):
		mult = 1 << 10
	case strings.HasSuffix(v, "M"):
		mult = 1 << 20
	case strings.HasSuffix(v, "G"):
		mult = 1 << 30
	case strings.HasSuffix(v, "T"):
		mult = 1 << 40
	}
	if mult != 1 {
		v = v[:len(v)-1]
	}
	n, err := strconv.ParseInt(v, 10, 64)
	if err != nil || n <= 0 {
		return 0, fmt.Errorf("not a size")
	}
	return n * mult, nil
}
