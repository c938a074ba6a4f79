// ringhub-line: the Go line client from the shell, with the flags of `ringhub-client line`.
//
//	go run ./cmd/ringhub-line --line-hub 127.0.0.1:7401 --message hi --ok-delay 100 --attempts 10 --timeout 5000
//
// Prints one line on success; errors go to stderr with exit status 1 (2 for bad flags).
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"syscall"
	"time"

	"ringhub/clients/go/line"
)

func main() {
	o := line.DefaultOptions("127.0.0.1:7401", "")
	flag.StringVar(&o.Addr, "line-hub", o.Addr, "LINE hub address as HOST:PORT")
	flag.StringVar(&o.Message, "message", "", "X, the message to send (required)")
	okDelayMs := flag.Uint("ok-delay", 0, "Milliseconds before answering each message")
	timeoutMs := flag.Uint("timeout", uint(line.DefaultTimeout/time.Millisecond), "Milliseconds to wait for the connection and for the ok")
	flag.IntVar(&o.Attempts, "attempts", line.DefaultAttempts, "Connection attempts before giving up")
	verbose := flag.Bool("verbose", false, "Say why each failed attempt failed")
	flag.Parse()
	if flag.NArg() > 0 || o.Message == "" {
		fmt.Fprintln(os.Stderr, "ringhub-line: --message is required and no arguments are taken")
		flag.Usage()
		os.Exit(2)
	}
	o.OkDelay = time.Duration(*okDelayMs) * time.Millisecond
	o.Timeout = time.Duration(*timeoutMs) * time.Millisecond
	if *verbose {
		o.OnRetry = func(r line.Retry) {
			fmt.Fprintf(os.Stderr, "attempt %d failed: %v; retrying in %v\n", r.Attempt, r.Err, r.Backoff)
		}
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	out, err := line.Run(ctx, o)
	if err != nil {
		fmt.Fprintln(os.Stderr, err) // already says "line: ..."
		if errors.Is(err, line.ErrInvalidOptions) {
			os.Exit(2)
		}
		os.Exit(1)
	}
	fmt.Printf("ok %s after %s (%s), latency %.3f ms\n", o.Message, plural(out.Attempts, "attempt"),
		plural(out.Reconnects, "reconnect"), float64(out.Latency.Microseconds())/1000)
}

// plural is "1 attempt", "0 reconnects", "2 attempts".
func plural(n int, noun string) string {
	if n == 1 {
		return "1 " + noun
	}
	return fmt.Sprintf("%d %ss", n, noun)
}
