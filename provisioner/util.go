package provisioner

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"net/netip"
	"regexp"
	"strconv"
	"strings"
)

var safeUnit = regexp.MustCompile(`^[A-Za-z0-9@._-]+$`)

func parseAddr(s string) netip.Addr {
	a, _ := netip.ParseAddr(s)
	return a
}

func sha256Hex(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

func lastLine(s string) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	return strings.TrimSpace(lines[len(lines)-1])
}

func grepLines(s, prefix string) []string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if l = strings.TrimSpace(l); strings.HasPrefix(l, prefix) {
			out = append(out, l)
		}
	}
	return out
}

// rootfsSize reads size=8G from a rootfs value, in bytes; 0 if absent.
func rootfsSize(rootfs string) int64 {
	for _, kv := range strings.Split(rootfs, ",") {
		k, v, ok := strings.Cut(kv, "=")
		if !ok || k != "size" || v == "" {
			continue
		}
		unit := int64(1 << 30)
		switch v[len(v)-1] {
		case 'T':
			unit = 1 << 40
		case 'G':
			unit = 1 << 30
		case 'M':
			unit = 1 << 20
		case 'K':
			unit = 1 << 10
		default:
			unit = 1 << 30 // PVE reads a bare number as GiB
			v += "G"
		}
		n, err := strconv.ParseFloat(v[:len(v)-1], 64)
		if err != nil {
			return 0
		}
		return int64(n * float64(unit))
	}
	return 0
}

func humanBytes(n int64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := int64(unit), 0
	for m := n / unit; m >= unit; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), "KMGTPE"[exp])
}
