package main

import (
	"bytes"
	"strings"
	"testing"
	"time"
)

func TestFlags(t *testing.T) {
	o, err := parseFlags(nil, &bytes.Buffer{})
	if err != nil {
		t.Fatal(err)
	}
	// The defaults are issue 15's benchmark.
	if o.pods != 20 || o.clone != 3*time.Second || o.start != time.Second || o.scale != 1 || len(o.guests) != 2 || o.guests[1] != 1000 ||
		o.ansible != "auto" || o.requestTime != 15*time.Millisecond || o.workers != 3 {
		t.Errorf("defaults %+v", o)
	}
	for _, bad := range [][]string{{"--ansible", "maybe"}, {"extra"}, {"--pods", "x"}} {
		if _, err := parseFlags(bad, &bytes.Buffer{}); err == nil {
			t.Errorf("%v: no error", bad)
		}
	}
}

func TestMissingCloudpodBinaryIsOneSentence(t *testing.T) {
	var stderr bytes.Buffer
	code := execute([]string{"--cloudpod", t.TempDir() + "/nope", "--ansible", "off"}, &bytes.Buffer{}, &stderr)
	if code != 1 || !strings.Contains(stderr.String(), "make build makes bin/cloudpod") {
		t.Errorf("exit %d: %s", code, stderr.String())
	}
	if code := execute([]string{"--ansible", "maybe"}, &bytes.Buffer{}, &bytes.Buffer{}); code != 2 {
		t.Errorf("bad flag: exit %d, want 2", code)
	}
}
