package provisioner

import (
	"context"
	"errors"
	"fmt"
	"regexp"
	"strings"
	"time"

	"github.com/migrahosting/cloudpods/netcfg"
	"github.com/migrahosting/cloudpods/provisioner/flow"
	"github.com/migrahosting/cloudpods/provisioner/pve"
)

// The golden template CT 9000 built through the API, as the CloudPods spec
// (§2) describes it: created from the Ubuntu 24.04 standard archive on
// clients-main (8 GB, unprivileged, nesting, 2 cores, 2048 MB, 512 MB
// swap), started, the package list installed and the services enabled
// through the console (apt with retries), the timezone set if asked, the
// cloud-init netplan file left minimal (a clone must never come up with
// the template's address), shut down, converted to a template — PVE's
// answer is null though it forks a worker, so the config's template flag
// tells when it is done — and verified (template_verify.go). It is ct
// create's flow with steps of its own.

// Steps of template build.
const (
	StepArchive   = "archive"
	StepProvision = "provision"
	StepConvert   = "convert"
)

// GoldenOSTemplate is the archive the golden template is made from.
const GoldenOSTemplate = "ubuntu-24.04-standard_24.04-2_amd64.tar.zst"

// DefaultPackages are the golden template's packages: what its services
// (DefaultServices) come from, PHP's MySQL driver, curl and CA
// certificates.
var DefaultPackages = []string{"openssh-server", "nginx", "php8.3-fpm", "php8.3-mysql", "mariadb-server", "curl", "ca-certificates"}

// MinimalNetplan is the golden template's /etc/netplan/50-cloud-init.yaml:
// no interface at all, so a clone's address comes from its own net0 (and
// create's netplan push) and never from the template.
const MinimalNetplan = "network:\n  version: 2\n"

// TemplateSpec is the golden template.
type TemplateSpec struct {
	CT       CTSpec   `json:"ct"`
	Packages []string `json:"packages"`
	Services []string `json:"services"`
	// Timezone is set when not empty (an IANA name such as Europe/Berlin).
	Timezone string `json:"timezone,omitempty"`
	// ArchiveStorage keeps the OS template archive.
	ArchiveStorage string `json:"archive_storage"`
}

// DefaultTemplateSpec is CT 9000 cloudpod-template as the CloudPods spec
// has it, with its address 10.1.10.90 on vmbr0.
func DefaultTemplateSpec() TemplateSpec {
	d := DefaultSpec()
	nic := netcfg.NIC{Name: "eth0", Bridge: d.Bridge, IP: "10.1.10.90/24", GW: d.Gateway.String(), Firewall: true}
	return TemplateSpec{
		CT: CTSpec{Node: d.Node, VMID: d.Template, Hostname: "cloudpod-template", OSTemplate: "local:vztmpl/" + GoldenOSTemplate,
			Storage: d.Storage, DiskGB: 8, Cores: 2, MemoryMB: 2048, SwapMB: 512, NICs: []netcfg.NIC{nic}, Unprivileged: true,
			Features: []string{"nesting=1"}, OSType: "ubuntu", Nameserver: d.DNS[0].String(), CMode: "shell", Start: true,
			Label: "CloudPods golden image (Ubuntu 24.04)"},
		Packages: DefaultPackages, Services: DefaultServices, ArchiveStorage: "local",
	}
}

// withExtra records packages, services and timezone in the CT spec, so
// they are part of its hash.
func (t TemplateSpec) withExtra() TemplateSpec {
	t.CT.Extra = []string{"packages=" + strings.Join(t.Packages, " "), "services=" + strings.Join(t.Services, " ")}
	if t.Timezone != "" {
		t.CT.Extra = append(t.CT.Extra, "timezone="+t.Timezone)
	}
	return t
}

var (
	// debPackageRE is Debian policy's package name.
	debPackageRE = regexp.MustCompile(`^[a-z0-9][a-z0-9+.-]+$`)
	timezoneRE   = regexp.MustCompile(`^[A-Za-z][A-Za-z0-9_+-]*(/[A-Za-z0-9_+-]+)*$`)
)

// validateGuestSetup checks the package names, services and timezone.
func (t TemplateSpec) validateGuestSetup() []string {
	var probs []string
	if len(t.Packages) == 0 {
		probs = append(probs, "no packages to install: give --packages")
	}
	for _, p := range t.Packages {
		if !debPackageRE.MatchString(p) {
			probs = append(probs, fmt.Sprintf("package %q is not a Debian package name: use lower-case letters, digits, '+', '-' and '.'", p))
		}
	}
	for _, s := range t.Services {
		if !safeUnit.MatchString(s) {
			probs = append(probs, fmt.Sprintf("service %q is not a systemd unit name: use letters, digits, '@', '.', '_' and '-'", s))
		}
	}
	if t.Timezone != "" && !timezoneRE.MatchString(t.Timezone) {
		probs = append(probs, fmt.Sprintf("timezone %q is not an IANA name: use e.g. Europe/Berlin or UTC", t.Timezone))
	}
	return probs
}

// TemplateRequest is one template build.
type TemplateRequest struct {
	Spec TemplateSpec
	// ScratchVMID is the VMID of the throwaway clone verify inspects; 0
	// picks a free one from 99900 up.
	ScratchVMID   int
	KeepOnFailure bool
	Reporter      Reporter
	Stop          <-chan struct{}
	Requester     string
}

// TemplateResult is what template build and verify report.
type TemplateResult struct {
	VMID     int                `json:"vmid"`
	Hostname string             `json:"hostname"`
	Node     string             `json:"node"`
	Storage  string             `json:"storage"`
	Template bool               `json:"template"`
	Changed  bool               `json:"changed"`
	OK       bool               `json:"ok"`
	Checks   []Check            `json:"checks"`
	Differs  []string           `json:"differs,omitempty"`
	Steps    map[string]float64 `json:"steps"`
	Warnings []string           `json:"warnings,omitempty"`
}

// templateRun is one build (or verify) of the golden template.
type templateRun struct {
	*ctRun
	tspec   TemplateSpec
	treq    TemplateRequest
	tres    TemplateResult
	archive *contentRun
	// isTemplate: the CT is a template already (converted).
	isTemplate bool
}

func (p *Provisioner) newTemplateRun(req TemplateRequest, command string) *templateRun {
	req.Spec = req.Spec.withExtra()
	r := p.newCTRun(CTRequest{Spec: req.Spec.CT, KeepOnFailure: req.KeepOnFailure, Reporter: req.Reporter, Stop: req.Stop, Requester: req.Requester}, command)
	r.fetchArchive = true
	t := &templateRun{ctRun: r, tspec: req.Spec, treq: req}
	t.tres = TemplateResult{VMID: req.Spec.CT.VMID, Hostname: req.Spec.CT.Hostname, Node: req.Spec.CT.Node}
	return t
}

func (t *templateRun) buildSteps() []flow.Step {
	return []flow.Step{
		{Name: StepValidate, ReadOnly: true, Run: t.validate},
		{Name: StepPreflight, ReadOnly: true, Run: t.preflight},
		{Name: StepArchive, Check: t.archiveDone, Run: t.fetchArchive, Plan: t.planArchive},
		t.createStep(),
		{Name: StepStart, Check: t.unlessTemplate(t.startDone), Run: t.start, Plan: t.planStart},
		{Name: StepProvision, Check: t.unlessTemplate(nil), Run: t.provision, Plan: t.planProvision},
		{Name: StepShutdown, Check: t.unlessTemplate(t.stopped), Run: t.shutdown, Plan: t.planShutdown},
		{Name: StepFinalize, Check: t.finalizedTemplate, Run: t.finalizeTemplate, Plan: t.planFinalizeTemplate},
		{Name: StepConvert, Check: t.converted, Run: t.convert, Plan: t.planConvert},
		{Name: StepVerify, Run: t.verifyAll, Plan: t.planVerifyAll},
	}
}

// BuildTemplate builds the golden template, or converges one an earlier
// run of the same spec began; it ends verified.
func (p *Provisioner) BuildTemplate(ctx context.Context, req TemplateRequest) (TemplateResult, error) {
	t := p.newTemplateRun(req, "template build")
	err := t.run.Execute(ctx, t.buildSteps())
	return t.result(err), err
}

// PlanTemplate is template build's dry run.
func (p *Provisioner) PlanTemplate(ctx context.Context, req TemplateRequest) ([]PlannedCall, []string, error) {
	t := p.newTemplateRun(req, "template build")
	calls, err := t.run.DryRun(ctx, t.buildSteps())
	return calls, t.reasons, err
}

func (t *templateRun) result(err error) TemplateResult {
	t.tres.Steps, t.tres.Warnings = t.run.Seconds(), t.run.Warnings()
	t.tres.Changed = t.tres.Changed || t.res.Changed
	t.tres.Storage = t.storage.ID
	t.tres.OK = err == nil
	return t.tres
}

func (t *templateRun) validate(ctx context.Context) error {
	probs := t.tspec.validateGuestSetup()
	if err := t.ctRun.validate(ctx); err != nil {
		probs = append(probs, err.Error())
	}
	if len(probs) > 0 {
		return problemf(ErrInvalidSpec, "%s", strings.Join(probs, "; "))
	}
	return nil
}

// preflight is ct create's, plus what the template adds: an existing CT of
// this spec that is a template already, the archive fetched if missing,
// and what verify's scratch clone needs.
func (t *templateRun) preflight(ctx context.Context) error {
	if err := t.ctRun.preflight(ctx); err != nil {
		return err
	}
	if t.existing != nil && t.existing.Get("template") == "1" {
		t.isTemplate = true
		t.run.Info(fmt.Sprintf("CT %d is a template already: verifying it", t.spec.VMID))
	}
	if t.archiveMissing {
		t.archive = t.p.newContentRun(ContentRequest{Node: t.spec.Node, Storage: rootfsStorage(t.spec.OSTemplate), Content: "vztmpl",
			Appliance: GoldenOSTemplate}, t.run)
		if err := t.archive.validate(ctx); err != nil {
			return err
		}
		if err := t.archive.preflight(ctx); err != nil {
			return err
		}
	}
	return t.p.checkPrivileges(ctx, t.scratchPrivileges())
}

// unlessTemplate skips a step once the CT is a template: what it would do
// is inside, and verify checks that.
func (t *templateRun) unlessTemplate(check func(context.Context) (string, error)) func(context.Context) (string, error) {
	return func(ctx context.Context) (string, error) {
		if t.isTemplate {
			return fmt.Sprintf("CT %d is a template already", t.spec.VMID), nil
		}
		if check == nil {
			return "", nil
		}
		return check(ctx)
	}
}

func (t *templateRun) archiveDone(context.Context) (string, error) {
	if t.archive == nil {
		return t.spec.OSTemplate + " is there", nil
	}
	return "", nil
}

func (t *templateRun) planArchive(ctx context.Context) ([]flow.Call, error) {
	if t.archive == nil {
		return nil, nil
	}
	return t.archive.planTransfer(ctx)
}

// fetchArchive downloads the Ubuntu archive from PVE's catalogue (PVE
// verifies its sha512), as template download does.
func (t *templateRun) fetchArchive(ctx context.Context) error {
	err := t.archive.transfer(ctx)
	if err != nil && !flow.IsSkip(err) {
		return err
	}
	if verr := t.archive.verify(ctx); verr != nil {
		return verr
	}
	if err == nil {
		t.tres.Changed = true
	}
	return err
}

func (t *templateRun) stopped(ctx context.Context) (string, error) {
	st, err := t.p.api.GuestStatus(ctx, t.ct())
	if err != nil {
		return "", err
	}
	if st.Status == "stopped" {
		return "already stopped", nil
	}
	return "", nil
}

// provisionCommands are what provision runs, for the dry run and the
// build.
func (t *templateRun) provisionCommands() []string {
	s := t.tspec
	cmds := []string{
		"apt-get update (retried)",
		"DEBIAN_FRONTEND=noninteractive apt-get install -y " + strings.Join(t.packages(), " ") + " (retried)",
		"systemctl enable " + strings.Join(s.Services, " "),
	}
	if s.Timezone != "" {
		cmds = append(cmds, "ln -sf /usr/share/zoneinfo/"+s.Timezone+" /etc/localtime; echo "+s.Timezone+" > /etc/timezone")
	}
	return append(cmds, "write "+netcfg.NetplanPath+" (minimal: no interface), mode 0600")
}

// packages are the packages to install: the list, and tzdata when a
// timezone is asked (the zone files come from it).
func (t *templateRun) packages() []string {
	pk := append([]string(nil), t.tspec.Packages...)
	if t.tspec.Timezone != "" && !contains(pk, "tzdata") {
		pk = append(pk, "tzdata")
	}
	return pk
}

func (t *templateRun) planProvision(context.Context) ([]flow.Call, error) {
	s := t.spec
	return []flow.Call{
		{Method: "POST", Path: ctPathOf(s.Node, s.VMID, "/termproxy"), Note: "console (cmode=shell: a root shell)"},
		{Method: "GET", Path: ctPathOf(s.Node, s.VMID, "/vncwebsocket"), Note: strings.Join(t.provisionCommands(), "; ")},
	}, nil
}

// aptAttempts bounds apt's retries: a network still coming up after boot,
// a mirror's hiccup, dpkg's lock held by a first-boot job.
const aptAttempts = 5

// provision installs the packages, enables the services, sets the
// timezone and leaves the netplan file minimal, through the console. What
// is already as wanted is left alone; all of it is safe to repeat.
func (t *templateRun) provision(ctx context.Context) error {
	done := false
	err := t.p.inGuest(ctx, t.run, t.ct(), "provisioning", func(ctx context.Context, sh *shell) error {
		missing, err := t.guestDiffers(ctx, sh)
		if err != nil {
			return err
		}
		if len(missing) == 0 {
			done = true
			return nil
		}
		t.run.Info("to do: " + strings.Join(missing, "; "))
		base := max(t.p.opts.Retry.Base, 10*time.Millisecond)
		if _, err := sh.runRetried(ctx, "apt-get update", "apt-get update", aptAttempts, base, t.p.opts.TaskTimeout, t.run.Info); err != nil {
			return err
		}
		install := "DEBIAN_FRONTEND=noninteractive apt-get install -y " + strings.Join(t.packages(), " ")
		if _, err := sh.runRetried(ctx, "apt-get install", install, aptAttempts, base, t.p.opts.TaskTimeout, t.run.Info); err != nil {
			return err
		}
		if _, err := sh.mustRun(ctx, "systemctl enable "+strings.Join(t.tspec.Services, " ")); err != nil {
			return err
		}
		if tz := t.tspec.Timezone; tz != "" {
			if _, code, err := sh.run(ctx, "test -f /usr/share/zoneinfo/"+tz); err != nil {
				return err
			} else if code != 0 {
				return problemf(ErrInvalidSpec, "timezone %s is not in the guest's tzdata (/usr/share/zoneinfo/%s): give a zone it has, e.g. Europe/Berlin", tz, tz)
			}
			if _, err := sh.mustRun(ctx, "ln -sf /usr/share/zoneinfo/"+tz+" /etc/localtime && printf '%s\\n' "+tz+" > /etc/timezone"); err != nil {
				return err
			}
		}
		if _, err := sh.mustRun(ctx, "mkdir -p /etc/netplan"); err != nil {
			return err
		}
		if err := sh.writeFile(ctx, netcfg.NetplanPath, []byte(MinimalNetplan), "600"); err != nil {
			return err
		}
		left, err := t.guestDiffers(ctx, sh)
		if err == nil && len(left) > 0 {
			err = fmt.Errorf("after provisioning CT %d still differs: %s", t.spec.VMID, strings.Join(left, "; "))
		}
		return err
	})
	if err != nil {
		return err
	}
	if done {
		return flow.Skip("packages, services and netplan already as wanted")
	}
	t.tres.Changed = true
	return nil
}

// guestDiffers lists what inside the guest is not as the spec wants.
func (t *templateRun) guestDiffers(ctx context.Context, sh *shell) ([]string, error) {
	checks, err := t.guestChecks(ctx, sh)
	var out []string
	for _, c := range checks {
		if !c.OK {
			out = append(out, c.Name+": "+c.Detail)
		}
	}
	return out, err
}

// guestChecks look inside a running guest of the template: each package
// installed, each service enabled, the netplan file minimal, the timezone.
func (t *templateRun) guestChecks(ctx context.Context, sh *shell) ([]Check, error) {
	var checks []Check
	out, _, err := sh.run(ctx, "dpkg-query -W -f '${Package} ${Status}\\n' "+strings.Join(t.packages(), " "))
	if err != nil {
		return nil, err
	}
	installed := map[string]bool{}
	for _, l := range strings.Split(out, "\n") {
		if f := strings.Fields(l); len(f) == 4 && strings.Join(f[1:], " ") == "install ok installed" {
			installed[f[0]] = true
		}
	}
	for _, p := range t.packages() {
		c := Check{Name: "package " + p, OK: installed[p], Detail: "installed"}
		if !c.OK {
			c.Detail = "not installed"
		}
		checks = append(checks, c)
	}
	for _, s := range t.tspec.Services {
		out, _, err := sh.run(ctx, "systemctl is-enabled "+s)
		if err != nil {
			return checks, err
		}
		state := strings.TrimSpace(lastLine(out))
		if strings.Contains(out, "No such file") {
			state = "no such unit (not installed)"
		}
		checks = append(checks, Check{Name: "service " + s, OK: state == "enabled", Detail: orDefault(state, "unknown")})
	}
	have, err := sh.fileSHA256(ctx, netcfg.NetplanPath)
	if err != nil {
		return checks, err
	}
	c := Check{Name: "netplan", OK: have == sha256Hex([]byte(MinimalNetplan)), Detail: netcfg.NetplanPath + " minimal"}
	if !c.OK {
		c.Detail = netcfg.NetplanPath + " is not the minimal file (no interface)"
		if have == "" {
			c.Detail = netcfg.NetplanPath + " is missing"
		} else if body, _, err := sh.run(ctx, "grep -E 'addresses|dhcp4' "+netcfg.NetplanPath); err == nil && strings.TrimSpace(body) != "" {
			c.Detail += ": it configures " + strings.Join(strings.Fields(body), " ")
		}
	}
	checks = append(checks, c)
	if tz := t.tspec.Timezone; tz != "" {
		out, code, err := sh.run(ctx, "cat /etc/timezone")
		if err != nil {
			return checks, err
		}
		have := strings.TrimSpace(out)
		if code != 0 {
			have = "unset"
		}
		checks = append(checks, Check{Name: "timezone", OK: have == tz, Detail: have + map[bool]string{true: "", false: ", want " + tz}[have == tz]})
	}
	return checks, nil
}

func (t *templateRun) planShutdown(context.Context) ([]flow.Call, error) {
	return []flow.Call{{Method: "POST", Path: ctPathOf(t.spec.Node, t.spec.VMID, "/status/shutdown"), Params: "forceStop=1 timeout=60"}, taskPoll(t.spec.Node, "the shutdown")}, nil
}

func (t *templateRun) shutdown(ctx context.Context) error {
	t.tres.Changed = true
	return t.p.powerOff(ctx, t.ct(), time.Minute, t.p.opts.TaskTimeout, t.run.Warn)
}

// finalizedTemplate: the marker says ready and the console mode create
// set for provisioning is gone (clones restore the template's cmode).
func (t *templateRun) finalizedTemplate(ctx context.Context) (string, error) {
	cfg, err := t.p.api.GuestConfig(ctx, t.ct())
	if err != nil {
		return "", err
	}
	if m, _ := ParseMarker(cfg.Get("description")); m.State == "ready" && cfg.Get("cmode") == "" {
		return "marked ready", nil
	}
	return "", nil
}

func (t *templateRun) planFinalizeTemplate(context.Context) ([]flow.Call, error) {
	return []flow.Call{{Method: "PUT", Path: ctPathOf(t.spec.Node, t.spec.VMID, "/config"), Params: "delete=cmode description=(marker: ready)"}}, nil
}

func (t *templateRun) finalizeTemplate(ctx context.Context) error {
	cfg, err := t.p.api.GuestConfig(ctx, t.ct())
	if err != nil {
		return err
	}
	m, _ := ParseMarker(cfg.Get("description"))
	m.State = "ready"
	upd := pve.ConfigUpdate{Set: map[string]string{"description": t.spec.description(m)}}
	if cfg.Get("cmode") != "" {
		upd.Delete = []string{"cmode"}
	}
	t.tres.Changed = true
	return t.run.Retry().Do(ctx, fmt.Sprintf("mark CT %d ready", t.spec.VMID), func(ctx context.Context) error {
		return t.p.api.UpdateGuestConfig(ctx, t.ct(), upd)
	}, nil)
}

func (t *templateRun) converted(ctx context.Context) (string, error) {
	cfg, err := t.p.api.GuestConfig(ctx, t.ct())
	if err != nil {
		return "", err
	}
	if cfg.Get("template") == "1" {
		t.isTemplate = true
		return "already a template", nil
	}
	return "", nil
}

func (t *templateRun) planConvert(context.Context) ([]flow.Call, error) {
	return []flow.Call{
		{Method: "POST", Path: ctPathOf(t.spec.Node, t.spec.VMID, "/template"), Note: "answers null although PVE forks a vztemplate worker"},
		{Method: "GET", Path: ctPathOf(t.spec.Node, t.spec.VMID, "/config"), Note: "until template: 1 and no lock"},
	}, nil
}

// convert turns the stopped CT into a template. A container's answer is
// null, so the config tells when the worker is done: template: 1 and no
// lock left.
func (t *templateRun) convert(ctx context.Context) error {
	t.tres.Changed = true
	err := t.p.convertCT(ctx, t.run, t.ct())
	if err == nil {
		t.isTemplate = true
	}
	return err
}

// convertCT turns a stopped CT into a template. A container's answer is
// null, so the config tells when the worker is done: template: 1 and no
// lock left.
func (p *Provisioner) convertCT(ctx context.Context, run *flow.Run, g pve.GuestRef) error {
	isTemplate := func(ctx context.Context) (bool, error) {
		cfg, err := p.api.GuestConfig(ctx, g)
		return err == nil && cfg.Get("template") == "1", err
	}
	var started pve.Started
	err := run.Retry().Do(ctx, fmt.Sprintf("convert CT %d to a template", g.VMID), func(ctx context.Context) error {
		var err error
		started, err = p.api.ConvertToTemplate(ctx, g)
		return err
	}, func(ctx context.Context, _ error) (bool, error) { return isTemplate(ctx) })
	if err != nil {
		return err
	}
	if started.Task() {
		if _, err := p.wait(ctx, g.Node, started.UPID); err != nil {
			return err
		}
	}
	var last pve.Config
	err = pollUntil(ctx, p.opts.TaskTimeout, func(ctx context.Context) (bool, error) {
		cfg, err := p.api.GuestConfig(ctx, g)
		if err == nil {
			last = cfg
		}
		return err == nil && cfg.Get("template") == "1" && cfg.Get("lock") == "", err
	})
	if errors.Is(err, context.DeadlineExceeded) && ctx.Err() == nil {
		return fmt.Errorf("CT %d is not a template %s after POST …/template (template %q, lock %q): look for its vztemplate task in PVE's task history: %w",
			g.VMID, p.opts.TaskTimeout, last.Get("template"), last.Get("lock"), pve.ErrWaitTimeout)
	}
	return err
}
