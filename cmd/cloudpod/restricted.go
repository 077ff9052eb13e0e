package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/user"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
)

// cloudpod-create is the entry point for sudo: the same program under the
// name cloudpod-create (a copy or link, installed root-owned as
// /usr/local/sbin/cloudpod-create; README "The provisioning service"). A
// sudoers rule lets the panel's user run it as root, with the root-owned
// token. So it takes from its caller only the pod's own fields; where it
// connects, with which token and certificate, where it audits, which IPAM
// it uses and who asked all come from the root-owned settings file
// (configPath, compiled in; no flag or variable names another) and from
// sudo (SUDO_USER is the requester). Anything else is refused, in one
// sentence and before any connection: a flag (--pve-url, --fingerprint,
// --audit-log, --requester, --ipam, --token-file, --config…) or a setting
// in the environment (sudo passes variables through env_keep or SETENV).

// restrictedName is the program name that selects the restricted mode.
const restrictedName = "cloudpod-create"

// restrictedFlags are the pod's own fields: what the caller may give.
var restrictedFlags = map[string]bool{
	"vmid": true, "host": true, "ip": true, "cores": true, "mem": true, "swap": true,
	"tenant": true, "tags": true, "output": true, "o": true, "help": true, "h": true,
}

const restrictedUsage = "only the pod's own fields may be given (VMID HOSTNAME LAST-OCTET, or --vmid, --host, --ip, --cores, --mem, --swap, --tenant, --tags, --output)"

// isRestricted says the program runs as cloudpod-create.
func isRestricted(argv0 string) bool { return filepath.Base(argv0) == restrictedName }

// executeRestricted runs cloudpod-create: `cloudpod create` with the
// caller's pod fields and everything else from configPath.
func executeRestricted(ctx context.Context, stop <-chan struct{}, args, environ []string, stdin io.Reader, stdout, stderr io.Writer) int {
	refuse := func(format string, a ...any) int {
		fmt.Fprintf(stderr, "%s: %s\n", restrictedName, fmt.Sprintf(format, a...))
		return exitUsage
	}
	if name := forbiddenVariable(environ); name != "" {
		return refuse("%s is set in the environment, and here the settings come only from %s: unset it, and keep it out of sudo's env_keep and SETENV", name, configPath)
	}
	if flag := forbiddenFlag(args); flag != "" {
		return refuse("%s is not accepted: %s; the connection, token, TLS, audit, IPAM and requester settings come from %s", flag, restrictedUsage, configPath)
	}
	for _, a := range args {
		if a == "-h" || a == "--help" {
			fmt.Fprintf(stdout, "usage: %s VMID HOSTNAME LAST-OCTET [--cores N] [--mem MB] [--swap MB] [--tenant ID] [--tags T] [--output text|json]\n"+
				"   or: %s --vmid N|auto --host NAME --ip ADDRESS|auto [...]\n%s; everything else comes from %s.\n",
				restrictedName, restrictedName, strings.ToUpper(restrictedUsage[:1])+restrictedUsage[1:], configPath)
			return exitOK
		}
	}
	if err := checkRootOwned(configPath); err != nil {
		return refuse("%v", err)
	}
	requester, err := invokingUser()
	if err != nil {
		return refuse("%v", err)
	}
	g := &globalOptions{stdin: stdin, stdout: stdout, stderr: stderr, stop: stop,
		// The settings file is the only source of settings: no variable
		// is consulted but the requester, which sudo sets.
		getenv: func(key string) string {
			if key == "SUDO_USER" {
				return requester
			}
			return ""
		}}
	return run(ctx, g, append([]string{"create", "--config", configPath}, args...))
}

// forbiddenVariable is the first variable of environ that would set what
// the settings file decides: ours (PVE_*, CLOUDPODS_*), or Go's and the
// TLS stack's (proxies, GODEBUG, the system CA bundle).
func forbiddenVariable(environ []string) string {
	var names []string
	for _, kv := range environ {
		name, _, _ := strings.Cut(kv, "=")
		up := strings.ToUpper(name)
		switch {
		case strings.HasPrefix(up, "PVE_"), strings.HasPrefix(up, "CLOUDPODS_"),
			up == "HTTP_PROXY", up == "HTTPS_PROXY", up == "ALL_PROXY", up == "NO_PROXY",
			up == "GODEBUG", up == "SSL_CERT_FILE", up == "SSL_CERT_DIR":
			names = append(names, name)
		}
	}
	if len(names) == 0 {
		return ""
	}
	sort.Strings(names)
	return names[0]
}

// forbiddenFlag is the first flag of args that is not a pod field, as
// typed; "--" ends the flags.
func forbiddenFlag(args []string) string {
	for _, a := range args {
		if a == "--" {
			return ""
		}
		if !strings.HasPrefix(a, "-") || a == "-" {
			continue
		}
		name := strings.TrimLeft(a, "-")
		name, _, _ = strings.Cut(name, "=")
		if !strings.HasPrefix(a, "--") && len(name) > 1 {
			name = name[:1] // -ojson: the shorthand and its value
		}
		if !restrictedFlags[name] {
			flag, _, _ := strings.Cut(a, "=")
			return flag
		}
	}
	return ""
}

// checkRootOwned refuses a settings file that someone other than root
// could have written: it decides where the root-owned token goes.
func checkRootOwned(path string) error {
	st, err := os.Stat(path)
	if err != nil {
		return fmt.Errorf("the settings file: %v", err)
	}
	sys, ok := st.Sys().(*syscall.Stat_t)
	switch {
	case !st.Mode().IsRegular():
		return fmt.Errorf("the settings file %s is not a regular file", path)
	case !ok || sys.Uid != 0:
		return fmt.Errorf("the settings file %s is not owned by root: run `chown root: %s`", path, shellQuote(path))
	case st.Mode().Perm()&0o022 != 0:
		return fmt.Errorf("the settings file %s is writable by its group or others (mode %04o): run `chmod go-w %s`", path, st.Mode().Perm(), shellQuote(path))
	}
	return nil
}

// invokingUser is who ran cloudpod-create: the real user of the sudo
// that started it (its nearest ancestor named sudo; setuid, sudo keeps the
// caller's real uid), else the process's own user. SUDO_USER, which a
// sudoers rule with SETENV lets the caller set, must agree.
func invokingUser() (string, error) {
	uid, viaSudo := sudoCaller(os.Getppid())
	if !viaSudo {
		uid = os.Getuid()
	}
	u, err := user.LookupId(strconv.Itoa(uid))
	if err != nil {
		return "", fmt.Errorf("who is running this cannot be told (uid %d): %v", uid, err)
	}
	if claimed := os.Getenv("SUDO_USER"); viaSudo && claimed != u.Username {
		return "", fmt.Errorf("SUDO_USER says %q, but sudo was run by %s: sudo sets it; drop SETENV from the sudoers rule", claimed, u.Username)
	}
	return u.Username, nil
}

// sudoCaller walks up from pid to the nearest process named sudo and
// returns its real uid.
func sudoCaller(pid int) (uid int, ok bool) {
	for range 32 {
		if pid <= 1 {
			return 0, false
		}
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
		if err != nil {
			return 0, false
		}
		var name string
		var ppid, ruid = -1, -1
		for _, line := range strings.Split(string(b), "\n") {
			key, val, _ := strings.Cut(line, ":")
			fields := strings.Fields(val)
			switch {
			case key == "Name" && len(fields) > 0:
				name = fields[0]
			case key == "PPid" && len(fields) > 0:
				ppid, _ = strconv.Atoi(fields[0])
			case key == "Uid" && len(fields) > 0:
				ruid, _ = strconv.Atoi(fields[0])
			}
		}
		if name == "sudo" && ruid >= 0 {
			return ruid, true
		}
		pid = ppid
	}
	return 0, false
}
