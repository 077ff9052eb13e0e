package main

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"testing"
	"time"
)

func TestSeedGuestsFlagFillsTheCluster(t *testing.T) {
	dir := t.TempDir()
	env, state := filepath.Join(dir, "pve.env"), filepath.Join(dir, "state.json")
	o, err := parseFlags([]string{"--listen", "127.0.0.1:0", "--seed-guests", "25", "--state", state,
		"--env-file", env, "--data-dir", filepath.Join(dir, "data")}, &bytes.Buffer{})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- run(ctx, o, &bytes.Buffer{}, &bytes.Buffer{}) }()
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		if _, err := os.Stat(env); err == nil {
			break // serving, seeded
		}
		if time.Now().After(deadline) {
			t.Fatal("the simulator did not start")
		}
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(state)
	if err != nil {
		t.Fatal(err)
	}
	var st struct {
		Guests map[string]json.RawMessage `json:"guests"`
	}
	if err := json.Unmarshal(b, &st); err != nil {
		t.Fatal(err)
	}
	if len(st.Guests) != 26 {
		t.Errorf("%d guests in the saved state, want the template and 25 seeded", len(st.Guests))
	}
}

func TestRequestTimeFlags(t *testing.T) {
	o, err := parseFlags([]string{"--request-time", "15ms", "--request-workers", "4"}, &bytes.Buffer{})
	if err != nil {
		t.Fatal(err)
	}
	cfg, _, err := o.config(nil)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.RequestTime != 15*time.Millisecond || cfg.RequestWorkers != 4 {
		t.Errorf("request time %v, workers %d", cfg.RequestTime, cfg.RequestWorkers)
	}
}
