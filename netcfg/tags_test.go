package netcfg

import "testing"

func TestNormalizeTags(t *testing.T) {
	tests := []struct {
		in, want, err string
	}{
		{in: "", want: ""},
		{in: " ;, ", want: ""},
		{in: "cloudpods", want: "cloudpods"},
		{in: "tenant-acme;cloudpods", want: "cloudpods;tenant-acme"},
		{in: "b,a c;d\te", want: "a;b;c;d;e"},
		{in: "Prod;prod;PROD", want: "prod"}, // lower-cased, then deduplicated
		{in: "B;a", want: "a;b"},             // sorted case-insensitively
		{in: "_x;1.0;a+b;a-b", want: "1.0;_x;a+b;a-b"},
		{in: "a\x00b c", err: `tag "b c" is not valid`}, // a NUL makes it the only separator
		{in: "a\x00b\x00", want: "a;b"},
		{in: "migra_client", want: "migra_client"},
		{in: "-bad", err: `tag "-bad" is not valid: use letters, digits and _ - + . (starting with a letter, digit or _), e.g. tenant-acme`},
		{in: "ok;.x;a!b", err: `tags ".x", "a!b" are not valid`},
		{in: "caf\u00e9", err: "is not valid"},
		{in: "\u212a", err: "is not valid"}, // the Kelvin sign is not k
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got, err := NormalizeTags(tt.in)
			wantErr(t, err, tt.err)
			if got != tt.want {
				t.Fatalf("NormalizeTags(%q) = %q, want %q", tt.in, got, tt.want)
			}
		})
	}
}
