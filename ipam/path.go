package ipam

import (
	"fmt"
	"os"
	"path/filepath"
)

// EnvFile names the environment variable that overrides the registry path.
const EnvFile = "CLOUDPODS_IPAM_FILE"

// SystemPath is the registry of a controller running as root.
const SystemPath = "/var/lib/cloudpods/ipam.json"

// DefaultPath is ResolvePath for this process with no explicit path.
func DefaultPath() (string, error) {
	return ResolvePath("", os.Getenv, os.Geteuid())
}

// ResolvePath picks the registry file: explicit if set, else
// $CLOUDPODS_IPAM_FILE, else SystemPath for root (euid 0), else
// $XDG_STATE_HOME/cloudpods/ipam.json, else ~/.local/state/cloudpods/ipam.json.
func ResolvePath(explicit string, getenv func(string) string, euid int) (string, error) {
	if explicit != "" {
		return explicit, nil
	}
	if p := getenv(EnvFile); p != "" {
		return p, nil
	}
	if euid == 0 {
		return SystemPath, nil
	}
	// The XDG spec says relative values are invalid and must be ignored.
	if state := getenv("XDG_STATE_HOME"); filepath.IsAbs(state) {
		return filepath.Join(state, "cloudpods", "ipam.json"), nil
	}
	home := getenv("HOME")
	if !filepath.IsAbs(home) {
		return "", fmt.Errorf("ipam registry path: set %s, XDG_STATE_HOME or HOME (HOME is %q)", EnvFile, home)
	}
	return filepath.Join(home, ".local", "state", "cloudpods", "ipam.json"), nil
}
