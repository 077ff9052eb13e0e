// Command cloudpod provisions and manages CloudPods (tenant LXC containers)
// on Proxmox VE through its HTTPS API with an API token.
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"
)

func main() {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	stop := make(chan struct{})
	sigs := make(chan os.Signal, 2)
	signal.Notify(sigs, os.Interrupt, syscall.SIGTERM)
	go func() {
		// The first signal stops at the next step boundary; a second one
		// aborts the step in flight.
		<-sigs
		close(stop)
		<-sigs
		cancel()
	}()
	if isRestricted(os.Args[0]) {
		os.Exit(executeRestricted(ctx, stop, os.Args[1:], os.Environ(), os.Stdin, os.Stdout, os.Stderr))
	}
	os.Exit(execute(ctx, stop, os.Args[1:], os.Stdin, os.Stdout, os.Stderr))
}
