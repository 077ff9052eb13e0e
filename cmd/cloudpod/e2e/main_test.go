package e2e

import (
	"flag"
	"os"
	"path/filepath"
	"testing"
)

// afterAll runs after every test of the package has finished.
var afterAll []func()

func TestMain(m *testing.M) {
	flag.Parse()
	code := m.Run()
	for _, f := range afterAll {
		f()
	}
	if buildOnce.bin != "" {
		_ = os.RemoveAll(filepath.Dir(buildOnce.bin))
	}
	os.Exit(code)
}
