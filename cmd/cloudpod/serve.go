package main

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	stdlog "log"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"time"

	"github.com/sirupsen/logrus"
	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/migrahosting/cloudpods/provisioner"
	"github.com/migrahosting/cloudpods/provisioner/service"
)

// serveOptions configure `cloudpod serve`.
type serveOptions struct {
	listen          string
	authFile        string
	tlsCert         string
	tlsKey          string
	insecureHTTP    bool
	stateDir        string
	workers         int
	queueSize       int
	retention       time.Duration
	shutdownTimeout time.Duration
	metricsPublic   bool

	node     string
	template int
	storage  string
	bridge   string
	subnet   string
	gateway  string
	dns      []string

	cert *tls.Certificate
	// onListen tells tests the address the server bound.
	onListen func(net.Addr)
}

// serveEnv names the environment variable behind each serve flag, so the
// systemd unit can configure the service from its EnvironmentFile.
var serveEnv = []struct{ flag, env string }{
	{"listen", "CLOUDPODS_LISTEN"},
	{"auth-file", "CLOUDPODS_AUTH_FILE"},
	{"tls-cert", "CLOUDPODS_TLS_CERT"},
	{"tls-key", "CLOUDPODS_TLS_KEY"},
	{"insecure-http", "CLOUDPODS_INSECURE_HTTP"},
	{"state-dir", "CLOUDPODS_STATE_DIR"},
	{"workers", "CLOUDPODS_WORKERS"},
	{"queue-size", "CLOUDPODS_QUEUE_SIZE"},
	{"job-retention", "CLOUDPODS_JOB_RETENTION"},
	{"shutdown-timeout", "CLOUDPODS_SHUTDOWN_TIMEOUT"},
	{"metrics-public", "CLOUDPODS_METRICS_PUBLIC"},
	{"node", "CLOUDPODS_NODE"},
	{"template", "CLOUDPODS_TEMPLATE"},
	{"storage", "CLOUDPODS_STORAGE"},
	{"bridge", "CLOUDPODS_BRIDGE"},
	{"prefix", "CLOUDPODS_PREFIX"},
	{"gateway", "CLOUDPODS_GATEWAY"},
	{"dns", "CLOUDPODS_DNS"},
}

func newServeCommand(g *globalOptions) *cobra.Command {
	o := &serveOptions{}
	def := provisioner.DefaultSpec()
	cmd := &cobra.Command{
		Use:   "serve",
		Short: "Run the provisioning API the hosting panel calls (bearer tokens, HTTPS, jobs that survive restarts)",
		Long: `serve runs the HTTP JSON API of docs/openapi.json. Creates, destroys and backups
run as jobs through the same flows as the CLI; the first SIGTERM stops taking
requests and lets running jobs reach a step boundary (they resume at the next
start), a second one aborts them. Every flag can also be set by the
environment variable shown in its help.`,
		Example: `  cloudpod serve --listen 10.1.10.5:8443 --tls-cert /etc/cloudpods/tls.crt --tls-key /etc/cloudpods/tls.key --auth-file /etc/cloudpods/serve.tokens`,
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := flagsFromEnv(cmd.Flags(), g.getenv); err != nil {
				return err
			}
			if err := o.check(); err != nil {
				return err
			}
			defaults, err := o.defaults()
			if err != nil {
				return err
			}
			if err := checkSecretMode("--auth-file", o.authFile); err != nil {
				return err
			}
			tokens, err := service.LoadTokens(o.authFile)
			if err != nil {
				return fmt.Errorf("%w: %v", errUsage, err)
			}
			if err := g.resolve(cmd.Flags()); err != nil {
				return err
			}
			log := serveLogger(g, cmd.Flags().Changed("log-level"))
			pveMetrics := service.NewPVEMetrics()
			g.observe = pveMetrics.Observe
			api, err := g.client(log)
			if err != nil {
				return err
			}
			prov, err := g.provisioner(api, defaults, log)
			if err != nil {
				return err
			}
			// The provisioner's IPAM is the one allocator of the process:
			// the API's early allocation and the create flow's reserve step
			// share it.
			var alloc service.Allocator
			if prov.Allocates() {
				alloc = prov
			}
			store, err := service.OpenDirStore(o.stateDir)
			if err != nil {
				return err
			}
			defer store.Close()
			return runServe(cmd.Context(), g.stop, o, service.Options{
				Flows: prov, AuthTokens: tokens, Store: store, Logger: log, Defaults: defaults,
				Allocator: alloc, PVE: pveMetrics,
				// GET /version needs a valid token: one cheap call proves
				// both that PVE answers and that it accepts us.
				Ready: func(ctx context.Context) error {
					_, err := api.Version(ctx)
					return err
				},
				Workers: o.workers, QueueSize: o.queueSize, Retention: o.retention, MetricsPublic: o.metricsPublic,
			}, log)
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.listen, "listen", "127.0.0.1:8480", "address to listen on, host:port")
	f.StringVar(&o.authFile, "auth-file", "/etc/cloudpods/serve.tokens", "bearer tokens, one requester:token per line (# comments); mode 0600")
	f.StringVar(&o.tlsCert, "tls-cert", "", "PEM certificate (chain) to serve HTTPS with")
	f.StringVar(&o.tlsKey, "tls-key", "", "PEM private key of --tls-cert")
	f.BoolVar(&o.insecureHTTP, "insecure-http", false, "allow plain HTTP on a non-loopback address (tokens cross the network in clear)")
	f.StringVar(&o.stateDir, "state-dir", "/var/lib/cloudpods/jobs", "directory of the job store (one JSON file per job)")
	f.IntVar(&o.workers, "workers", service.DefaultWorkers, "jobs run at once")
	f.IntVar(&o.queueSize, "queue-size", service.DefaultQueueSize, "jobs that may wait for a worker before the API answers 503 with Retry-After")
	f.DurationVar(&o.retention, "job-retention", 7*24*time.Hour, "how long finished jobs (and their idempotency keys) are kept")
	f.DurationVar(&o.shutdownTimeout, "shutdown-timeout", 5*time.Minute, "on SIGTERM, how long running jobs get to reach a step boundary before they are aborted")
	f.BoolVar(&o.metricsPublic, "metrics-public", false, "serve /metrics without a token (/healthz and /readyz always are)")
	f.StringVar(&o.node, "node", def.Node, "PVE node pods are made on")
	f.IntVar(&o.template, "template", def.Template, "default golden template VMID")
	f.StringVar(&o.storage, "storage", def.Storage, "default rootfs storage")
	f.StringVar(&o.bridge, "bridge", def.Bridge, "default bridge for eth0")
	f.StringVar(&o.subnet, "prefix", def.Subnet.String(), "the LAN pods join, as a CIDR")
	f.StringVar(&o.gateway, "gateway", def.Gateway.String(), "pods' default gateway")
	f.StringSliceVar(&o.dns, "dns", []string{def.DNS[0].String()}, "pods' DNS servers")
	for _, e := range serveEnv {
		fl := f.Lookup(e.flag)
		fl.Usage += " (env " + e.env + ")"
	}
	return cmd
}

// flagsFromEnv fills serve's flags left unset from the environment.
func flagsFromEnv(fs *pflag.FlagSet, getenv func(string) string) error {
	for _, e := range serveEnv {
		v := getenv(e.env)
		if v == "" || fs.Changed(e.flag) {
			continue
		}
		if err := fs.Set(e.flag, v); err != nil {
			return fmt.Errorf("%w: %s=%q: %v", errUsage, e.env, v, err)
		}
	}
	return nil
}

// check refuses plain HTTP beyond loopback unless asked for, and loads the
// TLS key pair so a bad one fails at start, not at the first handshake.
func (o *serveOptions) check() error {
	if (o.tlsCert == "") != (o.tlsKey == "") {
		return fmt.Errorf("%w: --tls-cert and --tls-key go together", errUsage)
	}
	if o.workers < 1 || o.queueSize < 1 {
		return fmt.Errorf("%w: --workers and --queue-size must be at least 1", errUsage)
	}
	host, _, err := net.SplitHostPort(o.listen)
	if err != nil {
		return fmt.Errorf("%w: --listen %q is not host:port, e.g. 127.0.0.1:8480", errUsage, o.listen)
	}
	if o.tlsCert != "" {
		cert, err := tls.LoadX509KeyPair(o.tlsCert, o.tlsKey)
		if err != nil {
			return fmt.Errorf("%w: TLS key pair: %v", errUsage, err)
		}
		o.cert = &cert
		return nil
	}
	if !o.insecureHTTP && !isLoopbackHost(host) {
		return fmt.Errorf("%w: --listen %s is not a loopback address: serve HTTPS with --tls-cert and --tls-key, or pass --insecure-http to send tokens in clear", errUsage, o.listen)
	}
	return nil
}

func isLoopbackHost(host string) bool {
	if host == "localhost" {
		return true
	}
	ip, err := netip.ParseAddr(host)
	return err == nil && ip.IsLoopback()
}

// defaults is the spec creates start from.
func (o *serveOptions) defaults() (provisioner.Spec, error) {
	s := provisioner.DefaultSpec()
	var err error
	if s.Subnet, err = netip.ParsePrefix(o.subnet); err != nil {
		return s, fmt.Errorf("%w: --prefix %q is not a CIDR such as 10.1.10.0/24", errUsage, o.subnet)
	}
	s.Subnet = s.Subnet.Masked()
	if s.Gateway, err = netip.ParseAddr(o.gateway); err != nil {
		return s, fmt.Errorf("%w: --gateway %q is not an IPv4 address", errUsage, o.gateway)
	}
	s.DNS = nil
	for _, d := range o.dns {
		a, err := netip.ParseAddr(strings.TrimSpace(d))
		if err != nil {
			return s, fmt.Errorf("%w: --dns %q is not an IP address", errUsage, d)
		}
		s.DNS = append(s.DNS, a)
	}
	s.Node, s.Template, s.Storage, s.Bridge = o.node, o.template, o.storage, o.bridge
	return s, nil
}

// serveLogger logs JSON lines, at info unless --log-level says otherwise.
func serveLogger(g *globalOptions, levelSet bool) *logrus.Logger {
	l := logrus.New()
	l.SetOutput(g.stderr)
	l.SetFormatter(&logrus.JSONFormatter{})
	l.SetLevel(logrus.InfoLevel)
	if lvl, err := logrus.ParseLevel(g.logLevel); err == nil && levelSet {
		l.SetLevel(lvl)
	}
	return l
}

// runServe serves until stop closes (the first SIGTERM) or ctx ends (the
// second), then stops taking requests and shuts the jobs down: gently
// within --shutdown-timeout, else aborting the steps in flight.
func runServe(ctx context.Context, stop <-chan struct{}, o *serveOptions, opts service.Options, log *logrus.Logger) error {
	srv, err := service.New(opts)
	if err != nil {
		return err
	}
	ln, err := net.Listen("tcp", o.listen)
	if err != nil {
		return fmt.Errorf("listen on %s: %w", o.listen, err)
	}
	errLog := log.WriterLevel(logrus.WarnLevel)
	defer errLog.Close()
	hs := &http.Server{
		Handler:           srv,
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       30 * time.Second,
		// A deep health check or a list of a large cluster takes a while.
		WriteTimeout: 5 * time.Minute,
		IdleTimeout:  2 * time.Minute,
		ErrorLog:     stdlog.New(errLog, "", 0),
		BaseContext:  func(net.Listener) context.Context { return ctx },
	}
	if o.cert != nil {
		hs.TLSConfig = &tls.Config{MinVersion: tls.VersionTLS12, Certificates: []tls.Certificate{*o.cert}}
	}
	if err := srv.Start(ctx); err != nil {
		ln.Close()
		return err
	}
	if o.onListen != nil {
		o.onListen(ln.Addr())
	}
	log.WithFields(logrus.Fields{"listen": ln.Addr().String(), "tls": o.cert != nil, "workers": o.workers}).Info("cloudpod serve is listening")
	if host, _, _ := net.SplitHostPort(o.listen); o.cert == nil && !isLoopbackHost(host) {
		log.Warn("--insecure-http: bearer tokens cross the network in clear")
	}
	served := make(chan error, 1)
	go func() {
		if o.cert != nil {
			served <- hs.ServeTLS(ln, "", "")
		} else {
			served <- hs.Serve(ln)
		}
	}()
	var serveErr error
	select {
	case <-stop:
	case <-ctx.Done():
	case serveErr = <-served:
	}
	log.Info("shutting down: no new requests; running jobs stop at their next step boundary and resume at the next start")
	sctx, cancel := context.WithTimeout(ctx, o.shutdownTimeout)
	defer cancel()
	if err := hs.Shutdown(sctx); err != nil {
		hs.Close()
	}
	jobsErr := srv.Shutdown(sctx)
	if serveErr != nil && !errors.Is(serveErr, http.ErrServerClosed) {
		return fmt.Errorf("serving %s: %w", o.listen, serveErr)
	}
	return jobsErr
}
