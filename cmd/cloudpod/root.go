package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/sirupsen/logrus"
	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/migrahosting/cloudpods/provisioner"
	"github.com/migrahosting/cloudpods/provisioner/pve"
	"github.com/migrahosting/cloudpods/provisioner/pve/goproxmox"
)

// configPath is the settings file read when neither --config nor
// $CLOUDPODS_CONFIG names one, and the only one cloudpod-create reads
// (restricted.go). Packagers may compile in another:
//
//	go build -ldflags "-X main.configPath=/usr/local/etc/cloudpods.env" ./cmd/cloudpod
var configPath = "/etc/cloudpods/cloudpods.env"

// globalOptions are the connection and output settings every command shares.
type globalOptions struct {
	configFile  string
	url         string
	tokenID     string
	tokenSecret string // from env, config or --token-file; never a flag
	tokenFile   string
	fingerprint string
	caFile      string
	insecure    bool
	httpTimeout time.Duration
	taskTimeout time.Duration
	// inventoryMaxAge bounds how long a guest's config read once is
	// trusted while PVE's listing shows nothing changed about the guest.
	inventoryMaxAge time.Duration
	consoleUser     string
	consolePass     string
	output          string
	auditLog        string
	requester       string
	logLevel        string
	ipam            ipamOptions
	// observe, when set, sees every PVE request attempt (serve's metrics).
	observe func(method, path string, status int, err error)

	stdin          io.Reader
	stdout, stderr io.Writer
	stop           <-chan struct{}
	getenv         func(string) string
}

func (g *globalOptions) bind(fs *pflag.FlagSet) {
	fs.StringVar(&g.configFile, "config", "", "settings file of KEY=VALUE lines (PVE_URL, PVE_TOKEN_ID, PVE_TOKEN_FILE, …); default $CLOUDPODS_CONFIG or "+configPath+" if present")
	fs.StringVar(&g.url, "pve-url", "", "PVE API address, https://host:8006 (env PVE_URL)")
	fs.StringVar(&g.tokenID, "token-id", "", "API token id, user@realm!name (env PVE_TOKEN_ID)")
	fs.StringVar(&g.tokenFile, "token-file", "", "file holding the token secret, so it never appears in argv (env PVE_TOKEN_FILE; or PVE_TOKEN_SECRET)")
	fs.StringVar(&g.fingerprint, "fingerprint", "", "pin PVE's certificate by SHA-256 fingerprint, as PVE shows it (env PVE_FINGERPRINT)")
	fs.StringVar(&g.caFile, "ca-file", "", "PEM CA bundle to verify PVE's certificate (env PVE_CA_FILE)")
	fs.BoolVar(&g.insecure, "insecure", false, "do not verify PVE's certificate (warns; prefer --fingerprint)")
	fs.DurationVar(&g.httpTimeout, "http-timeout", 30*time.Second, "timeout of one API request (PVE's own proxy gives up after 30s)")
	fs.DurationVar(&g.taskTimeout, "task-timeout", 30*time.Minute, "timeout of one PVE task such as a clone (slow ZFS copies take minutes)")
	fs.DurationVar(&g.inventoryMaxAge, "inventory-max-age", provisioner.DefaultInventoryMaxAge, "a long-running process (a batch, serve) reads a guest's config again after this long even when PVE's listing shows no change: how long an address set by hand on an existing guest may go unseen")
	fs.StringVar(&g.consoleUser, "console-user", "", "PVE user (not a token) for the console, for PVE releases whose termproxy refuses tokens (env PVE_CONSOLE_USER)")
	fs.StringVar(&g.consolePass, "console-password-file", "", "file holding --console-user's password (env PVE_CONSOLE_PASSWORD_FILE)")
	fs.StringVarP(&g.output, "output", "o", "text", "text or json (JSON lines: one event per step, then the result)")
	fs.StringVar(&g.auditLog, "audit-log", "/var/log/cloudpods.log", "audit log file, one JSON line per mutating command (env CLOUDPODS_AUDIT_LOG; empty disables)")
	fs.StringVar(&g.requester, "requester", "", "who asked, recorded in the audit log (default: $SUDO_USER or $USER)")
	fs.StringVar(&g.logLevel, "log-level", "warning", "debug, info, warning or error (logs go to stderr)")
	g.ipam.bind(fs)
}

// resolve fills unset settings from the environment, then the config file.
func (g *globalOptions) resolve(fs *pflag.FlagSet) error {
	file := map[string]string{}
	path := g.configFile
	if path == "" {
		path = g.getenv("CLOUDPODS_CONFIG")
	}
	explicit := path != ""
	if path == "" {
		path = configPath
	}
	if f, err := os.Open(path); err == nil {
		defer f.Close()
		sc := bufio.NewScanner(f)
		for n := 1; sc.Scan(); n++ {
			line := strings.TrimSpace(sc.Text())
			if line == "" || strings.HasPrefix(line, "#") {
				continue
			}
			k, v, ok := strings.Cut(line, "=")
			if !ok {
				return fmt.Errorf("%w: %s line %d is not KEY=VALUE", errUsage, path, n)
			}
			file[strings.TrimSpace(k)] = strings.Trim(strings.TrimSpace(v), `"'`)
		}
	} else if explicit {
		return fmt.Errorf("%w: config file %s: %v", errUsage, path, err)
	}
	pick := func(flag string, dst *string, key string) {
		if fs.Changed(flag) {
			return
		}
		if v := g.getenv(key); v != "" {
			*dst = v
		} else if v := file[key]; v != "" {
			*dst = v
		}
	}
	pick("pve-url", &g.url, "PVE_URL")
	pick("token-id", &g.tokenID, "PVE_TOKEN_ID")
	pick("token-file", &g.tokenFile, "PVE_TOKEN_FILE")
	pick("fingerprint", &g.fingerprint, "PVE_FINGERPRINT")
	pick("ca-file", &g.caFile, "PVE_CA_FILE")
	pick("console-user", &g.consoleUser, "PVE_CONSOLE_USER")
	pick("console-password-file", &g.consolePass, "PVE_CONSOLE_PASSWORD_FILE")
	pick("audit-log", &g.auditLog, "CLOUDPODS_AUDIT_LOG")
	pick("ipam", &g.ipam.backend, "CLOUDPODS_IPAM")
	pick("ipam-file", &g.ipam.file, "CLOUDPODS_IPAM_FILE")
	pick("ip-range", &g.ipam.addrRange, "CLOUDPODS_IP_RANGE")
	pick("vmid-range", &g.ipam.vmidRange, "CLOUDPODS_VMID_RANGE")
	pick("sdn-zone", &g.ipam.sdnZone, "CLOUDPODS_SDN_ZONE")
	pick("sdn-vnet", &g.ipam.sdnVnet, "CLOUDPODS_SDN_VNET")
	if g.tokenFile != "" {
		secret, err := readSecretFile("--token-file", g.tokenFile)
		if err != nil {
			return err
		}
		g.tokenSecret = secret
	} else if v := g.getenv("PVE_TOKEN_SECRET"); v != "" {
		g.tokenSecret = v
	} else if v := file["PVE_TOKEN_SECRET"]; v != "" {
		// The secret is in the settings file itself, which then is a
		// secret file.
		if err := checkSecretMode("the config file", path); err != nil {
			return err
		}
		g.tokenSecret = v
	}
	if g.requester == "" {
		g.requester = firstNonEmpty(g.getenv("SUDO_USER"), g.getenv("USER"))
	}
	if g.output != "text" && g.output != "json" {
		return fmt.Errorf("%w: --output %q: use text or json", errUsage, g.output)
	}
	return nil
}

func firstNonEmpty(vals ...string) string {
	for _, v := range vals {
		if v != "" {
			return v
		}
	}
	return ""
}

func (g *globalOptions) logger() logrus.FieldLogger {
	l := logrus.New()
	l.SetOutput(g.stderr)
	if lvl, err := logrus.ParseLevel(g.logLevel); err == nil {
		l.SetLevel(lvl)
	}
	if g.output == "json" {
		l.SetFormatter(&logrus.JSONFormatter{})
	}
	return l
}

// client connects to PVE as configured.
func (g *globalOptions) client(log logrus.FieldLogger) (pve.API, error) {
	if g.insecure && g.fingerprint == "" {
		log.Warn("--insecure: PVE's certificate is not verified; anyone on the path can read the API token. Pin it with --fingerprint instead")
	}
	opts := goproxmox.Options{
		URL: g.url, TokenID: g.tokenID, TokenSecret: g.tokenSecret, Logger: log,
		HTTP: goproxmox.HTTPOptions{
			TLS:     goproxmox.TLSOptions{Fingerprint: g.fingerprint, CAFile: g.caFile, Insecure: g.insecure},
			Timeout: g.httpTimeout, Retries: 3, Observe: g.observe,
		},
	}
	if g.consoleUser != "" {
		if g.consolePass == "" {
			return nil, fmt.Errorf("%w: --console-user needs --console-password-file", errUsage)
		}
		password, err := readSecretFile("--console-password-file", g.consolePass)
		if err != nil {
			return nil, err
		}
		opts.Console = &goproxmox.ConsoleLogin{User: g.consoleUser, Password: password}
	}
	c, err := goproxmox.New(opts)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", errUsage, err)
	}
	return c, nil
}

// provisioner wires the flows; spec gives the IPAM pool (subnet, gateway,
// bridge, template address).
func (g *globalOptions) provisioner(api pve.API, spec provisioner.Spec, log logrus.FieldLogger) (*provisioner.Provisioner, error) {
	var audit *provisioner.AuditLog
	if g.auditLog != "" {
		audit = &provisioner.AuditLog{Path: g.auditLog, Requester: g.requester, TokenID: g.tokenID}
	}
	opts := provisioner.Options{TaskTimeout: g.taskTimeout, Audit: audit, Logger: log,
		Inventory: provisioner.InventoryOptions{MaxAge: g.inventoryMaxAge, AddressesFromSDN: g.ipam.backend == "pve-sdn"}}
	alloc, err := g.ipam.allocator(g, api, spec, log)
	if err != nil {
		return nil, err
	}
	if alloc != nil {
		opts.Addresses = provisioner.IPAM{Allocator: alloc}
	}
	return provisioner.New(api, opts), nil
}

func newRootCommand(g *globalOptions) *cobra.Command {
	root := &cobra.Command{
		Use:           "cloudpod",
		Short:         "Provision CloudPods (tenant LXC containers) on Proxmox VE through its API",
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	g.bind(root.PersistentFlags())
	root.AddCommand(newCreateCommand(g), newDestroyCommand(g), newBackupCommand(g), newHealthCommand(g), newListCommand(g), newIPCommand(g), newShowCommand(g))
	root.AddCommand(newServeCommand(g))
	root.AddCommand(newStorageCommand(g))
	root.AddCommand(newTemplateCommand(g))
	root.AddCommand(newCTCommand(g))
	root.AddCommand(newOpenWrtCommand(g))
	root.AddCommand(newVMCommand(g))
	root.AddCommand(newImageCommand(g))
	root.AddCommand(newNewCommand(g))
	return root
}

// execute runs the CLI and returns the process exit code.
func execute(ctx context.Context, stop <-chan struct{}, args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	return run(ctx, &globalOptions{stdin: stdin, stdout: stdout, stderr: stderr, stop: stop, getenv: os.Getenv}, args)
}

// run runs the CLI with g's streams and sources of settings.
func run(ctx context.Context, g *globalOptions, args []string) int {
	stdin, stdout, stderr := g.stdin, g.stdout, g.stderr
	root := newRootCommand(g)
	root.SetArgs(args)
	root.SetIn(stdin)
	root.SetOut(stdout)
	root.SetErr(stderr)
	root.SetFlagErrorFunc(func(_ *cobra.Command, err error) error { return fmt.Errorf("%w: %v", errUsage, err) })
	err := root.ExecuteContext(ctx)
	var he *healthError
	if errors.As(err, &he) {
		return he.code
	}
	if err != nil {
		msg := errorMessage(err)
		if g.output == "json" {
			code := exitCode(err)
			writeJSON(stdout, map[string]interface{}{"type": "error", "error": msg, "exit_code": code, "meaning": exitSentences[code]})
		} else {
			fmt.Fprintf(stderr, "cloudpod: %s\n", strings.TrimPrefix(msg, "usage: "))
		}
	}
	return exitCode(err)
}

// errorMessage is what the operator reads: a failure to talk to PVE at all
// (the token refused, nothing answering, the certificate not trusted) as
// pve.Explain's one sentence naming the fix, whichever command met it; a
// flow's step error as it is, since it also says what was left or rolled
// back (the flows explain such failures themselves).
func errorMessage(err error) string {
	var se *provisioner.StepError
	if sentence, ok := pve.Explain(err); ok && !errors.As(err, &se) {
		return sentence
	}
	return err.Error()
}
