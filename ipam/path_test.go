package ipam

import (
	"strings"
	"testing"
)

func TestResolvePath(t *testing.T) {
	tests := []struct {
		name     string
		explicit string
		env      map[string]string
		euid     int
		want     string
		wantErr  string
	}{
		{"explicit wins", "/srv/ipam.json", map[string]string{EnvFile: "/env.json"}, 0, "/srv/ipam.json", ""},
		{"env over root", "", map[string]string{EnvFile: "/env.json"}, 0, "/env.json", ""},
		{"root", "", map[string]string{"HOME": "/root", "XDG_STATE_HOME": "/x"}, 0, SystemPath, ""},
		{"xdg state", "", map[string]string{"HOME": "/home/u", "XDG_STATE_HOME": "/home/u/st"}, 1000, "/home/u/st/cloudpods/ipam.json", ""},
		{"relative xdg ignored", "", map[string]string{"HOME": "/home/u", "XDG_STATE_HOME": "st"}, 1000, "/home/u/.local/state/cloudpods/ipam.json", ""},
		{"home", "", map[string]string{"HOME": "/home/u"}, 1000, "/home/u/.local/state/cloudpods/ipam.json", ""},
		{"nothing", "", map[string]string{}, 1000, "", "set CLOUDPODS_IPAM_FILE"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ResolvePath(tt.explicit, func(k string) string { return tt.env[k] }, tt.euid)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("ResolvePath error = %v, want %q", err, tt.wantErr)
				}
				return
			}
			if err != nil || got != tt.want {
				t.Fatalf("ResolvePath = %q, %v; want %q", got, err, tt.want)
			}
		})
	}
}
