// Package debversion compares Debian package versions ([epoch:]upstream
// [-revision]) the way dpkg does (deb-version(7)): PVE reports its package
// levels as such versions, and what a node does (which console path, which
// error text) depends on them.
package debversion

import (
	"strconv"
	"strings"
)

// Compare returns -1, 0 or 1 as a is older than, equal to or newer than b.
func Compare(a, b string) int {
	ea, ua, ra := split(a)
	eb, ub, rb := split(b)
	if ea != eb {
		if ea < eb {
			return -1
		}
		return 1
	}
	if c := comparePart(ua, ub); c != 0 {
		return c
	}
	return comparePart(ra, rb)
}

// AtLeast reports whether version v is min or newer.
func AtLeast(v, min string) bool { return Compare(v, min) >= 0 }

// Major is the first number of the upstream version ("6" of "6.1.3"), or
// -1 when it does not start with one.
func Major(v string) int {
	_, u, _ := split(v)
	end := 0
	for end < len(u) && u[end] >= '0' && u[end] <= '9' {
		end++
	}
	n, err := strconv.Atoi(u[:end])
	if err != nil {
		return -1
	}
	return n
}

func split(v string) (epoch int, upstream, revision string) {
	if e, rest, ok := strings.Cut(v, ":"); ok {
		if n, err := strconv.Atoi(e); err == nil {
			epoch, v = n, rest
		}
	}
	if i := strings.LastIndexByte(v, '-'); i >= 0 {
		return epoch, v[:i], v[i+1:]
	}
	return epoch, v, ""
}

// comparePart is dpkg's verrevcmp: alternating runs of non-digits (compared
// by order, where '~' sorts before everything, even the end) and digits
// (compared as numbers).
func comparePart(a, b string) int {
	for a != "" || b != "" {
		for (a != "" && !isDigit(a[0])) || (b != "" && !isDigit(b[0])) {
			ca, cb := order(a), order(b)
			if ca != cb {
				if ca < cb {
					return -1
				}
				return 1
			}
			a, b = a[1:], b[1:]
		}
		var na, nb string
		na, a = digits(a)
		nb, b = digits(b)
		na, nb = strings.TrimLeft(na, "0"), strings.TrimLeft(nb, "0")
		if len(na) != len(nb) {
			if len(na) < len(nb) {
				return -1
			}
			return 1
		}
		if na != nb {
			if na < nb {
				return -1
			}
			return 1
		}
	}
	return 0
}

// order is dpkg's character weight; an exhausted string weighs 0 and is
// only ever compared here while the other side has a non-digit left.
func order(s string) int {
	if s == "" || isDigit(s[0]) {
		return 0
	}
	c := s[0]
	switch {
	case c == '~':
		return -1
	case c >= 'A' && c <= 'Z', c >= 'a' && c <= 'z':
		return int(c)
	}
	return int(c) + 256
}

func digits(s string) (string, string) {
	i := 0
	for i < len(s) && isDigit(s[i]) {
		i++
	}
	return s[:i], s[i:]
}

func isDigit(c byte) bool { return c >= '0' && c <= '9' }
