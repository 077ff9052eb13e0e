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
// Like PVE's parse_size, a number without a unit is bytes.
func rootfsSize(rootfs string) int64 {
	for _, kv := range strings.Split(rootfs, ",") {
		k, v, ok := strings.Cut(kv, "=")
		if !ok || k != "size" || v == "" {
			continue
		}
		unit := map[byte]int64{'K': 1 << 10, 'M': 1 << 20, 'G': 1 << 30, 'T': 1 << 40}[v[len(v)-1]]
		if unit == 0 {
			unit = 1
		} else {
			v = v[:len(v)-1]
		}
		n, err := strconv.ParseFloat(v, 64)
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
