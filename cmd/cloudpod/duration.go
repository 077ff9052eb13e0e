package main

import (
	"strconv"
	"time"
)

// parseDuration takes Go durations (90s, 10m) or plain seconds.
func parseDuration(s string) (time.Duration, error) {
	if n, err := strconv.Atoi(s); err == nil {
		return time.Duration(n) * time.Second, nil
	}
	return time.ParseDuration(s)
}
