package debversion

import "testing"

// Cases from deb-version(7) and dpkg's own test suite (lib/dpkg/t/t-version.c).
func TestCompare(t *testing.T) {
	tests := []struct {
		a, b string
		want int
	}{
		{"6.1.3", "6.1.3", 0},
		{"6.1.2", "6.1.3", -1},
		{"6.1.10", "6.1.3", 1},
		{"5.3.4", "6.1.3", -1},
		{"9.0.7", "9.0.4", 1},
		{"1.0~rc1", "1.0", -1},
		{"1.0~~", "1.0~", -1},
		{"1.0", "1.0-1", -1},
		{"1.0-1", "1.0-1~bpo1", 1},
		{"1:0.1", "2.0", 1},
		{"0:1.0", "1.0", 0},
		{"1.0a", "1.0", 1},
		{"1.0a", "1.0+", -1},
		{"1.002", "1.2", 0},
		{"9.1.11", "9.1.9", 1},
	}
	for _, tc := range tests {
		if got := Compare(tc.a, tc.b); got != tc.want {
			t.Errorf("Compare(%q, %q) = %d, want %d", tc.a, tc.b, got, tc.want)
		}
		if got := Compare(tc.b, tc.a); got != -tc.want {
			t.Errorf("Compare(%q, %q) = %d, want %d", tc.b, tc.a, got, -tc.want)
		}
	}
}

func TestMajor(t *testing.T) {
	for v, want := range map[string]int{"6.1.3": 6, "1:5.3.4-1": 5, "x1": -1, "": -1, "10": 10} {
		if got := Major(v); got != want {
			t.Errorf("Major(%q) = %d, want %d", v, got, want)
		}
	}
}
