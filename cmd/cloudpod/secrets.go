package main

import (
	"fmt"
	"os"
	"regexp"
	"strings"
)

// readSecretFile reads a file holding a secret (the token secret, the
// console password, the service's bearer tokens), refusing one that the
// group or others may read or write: a secret anyone on the host can read
// is no secret. The message names the chmod that fixes it.
func readSecretFile(flag, path string) (string, error) {
	if err := checkSecretMode(flag, path); err != nil {
		return "", err
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return "", fmt.Errorf("%w: %s: %v", errUsage, flag, err)
	}
	return strings.TrimSpace(string(b)), nil
}

// checkSecretMode refuses a secret file with any group or other
// permission.
func checkSecretMode(flag, path string) error {
	st, err := os.Stat(path)
	if err != nil {
		return fmt.Errorf("%w: %s: %v", errUsage, flag, err)
	}
	if perm := st.Mode().Perm(); perm&0o077 != 0 {
		return fmt.Errorf("%w: %s %s is open to its group or others (mode %04o): run `chmod 600 %s`", errUsage, flag, path, perm, shellQuote(path))
	}
	return nil
}

var shellSafe = regexp.MustCompile(`^[A-Za-z0-9_./+,:@%=-]+$`)

// shellQuote quotes s for a POSIX shell when it needs it.
func shellQuote(s string) string {
	if shellSafe.MatchString(s) {
		return s
	}
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}
