// Package line is a self-healing client for ringhub's line protocol (docs/protocol.md, "The line
// protocol"): it sends `message X`, answers every `message Y` the hub forwards with `ok Y` (after an
// optional delay), and returns on its own `ok X`; on a timeout or a lost connection it reconnects with
// jittered exponential backoff and sends `message X` again, up to an attempt limit. Options match
// `ringhub-client line` (client/line_client.hpp is the C++ twin).
package line

import (
	"context"
	"errors"
	"fmt"
	"math/rand"
	"net"
	"os"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"
)

// The hub's default longest line (core/line_protocol.hpp, kDefaultMaxLineBytes). A longer line from
// the hub means a broken peer: the connection is dropped rather than buffered without end.
const maxHubLineBytes = 64 << 10

// The two verbs with the space after them, the hub's line that precedes its close of a line too long,
// and how every line the hub writes about a failure starts.
const (
	messagePrefix   = "message "
	okPrefix        = "ok "
	lineTooLongLine = "error line too long"
	errorLinePrefix = "error "
)

// Longest X quoted in an error message (whole X can be 64 KiB).
const shownMessageBytes = 64

// Longest X: `message X` must fit one hub line, or the hub answers `error line too long`.
const maxMessageBytes = maxHubLineBytes - len(messagePrefix)

// Bytes of `ok Y` held back by OkDelay. A hub that keeps forwarding while we hold every answer would
// grow this without bound; past it we drop the connection, as the hub drops a slow consumer.
const maxHeldOkBytes = 4 << 20

// Defaults, the same as `ringhub-client line`.
const (
	DefaultTimeout        = 5 * time.Second
	DefaultAttempts       = 10
	DefaultBackoffInitial = 50 * time.Millisecond
	DefaultBackoffMax     = 2 * time.Second
)

// Options configure Run. Fields named after a `ringhub-client line` flag mean what the flag means.
type Options struct {
	Addr     string        // --line-hub: the hub's line listener, HOST:PORT
	Message  string        // --message: X; not empty, no "\n", no trailing "\r", fits one hub line
	OkDelay  time.Duration // --ok-delay: how long after `message Y` arrives its `ok Y` is written
	Timeout  time.Duration // --timeout: bounds connecting and each wait for `ok X`
	Attempts int           // --attempts: connection attempts in all, the first included

	// The wait before attempt n (n >= 2) is BackoffInitial * 2^(n-2), capped at BackoffMax, then
	// jittered down to between half and all of that, so clients cut off by one hub restart spread out.
	BackoffInitial time.Duration
	BackoffMax     time.Duration

	// OnConnected, when set, runs on Run's goroutine after `message X` is written on a new connection.
	OnConnected func(attempt int)
	// OnRetry, when set, runs on Run's goroutine after each failed attempt that another will follow.
	OnRetry func(Retry)
}

// DefaultOptions are the `ringhub-client line` defaults for one hub and one X.
func DefaultOptions(addr, message string) Options {
	return Options{
		Addr: addr, Message: message, Timeout: DefaultTimeout, Attempts: DefaultAttempts,
		BackoffInitial: DefaultBackoffInitial, BackoffMax: DefaultBackoffMax,
	}
}

// Retry says why an attempt ended without `ok X`, and how long Run waits before the next.
type Retry struct {
	Attempt int // the attempt that failed, from 1
	Err     error
	Backoff time.Duration
}

// Outcome counts what a successful Run did.
type Outcome struct {
	Attempts   int           // connection attempts made, the successful one included
	Reconnects int           // connections made after an earlier one was lost
	Timeouts   int           // attempts ended by a timeout: connecting or waiting for `ok X`
	OksSent    uint64        // `ok Y` lines written, over all connections
	Ignored    uint64        // lines passed over: error lines, someone else's `ok Z`, other text
	Latency    time.Duration // from the last `message X` written to `ok X` received
}

// ErrTimeout is the reason of an attempt whose `ok X` did not come within Timeout.
var ErrTimeout = errors.New("no ok within the timeout")

// ErrLineTooLong is the reason of an attempt the hub refused with `error line too long`: its lines are
// shorter than X needs, so Run fails at once rather than resend X to the same refusal.
var ErrLineTooLong = errors.New("hub closed the connection: error line too long")

// ErrInvalidOptions is what errors.Is finds in every error of Options that Run refuses before connecting.
var ErrInvalidOptions = errors.New("invalid options")

// Run sends Options.Message until its ok comes back, Attempts are used up, or ctx ends. Invalid
// options fail before any connection; running out of attempts returns the last attempt's error.
func Run(ctx context.Context, o Options) (Outcome, error) {
	if err := validate(o); err != nil {
		return Outcome{}, err
	}
	var out Outcome
	rng := rand.New(rand.NewSource(time.Now().UnixNano() ^ int64(os.Getpid())<<32))
	connectedBefore := false
	var last error
	for attempt := 1; attempt <= o.Attempts; attempt++ {
		out.Attempts = attempt
		latency, err := runAttempt(ctx, o, attempt, &out, &connectedBefore)
		if err == nil {
			out.Latency = latency
			return out, nil
		}
		if ctx.Err() != nil {
			return out, fmt.Errorf("line: cancelled before %q was answered (%s): %w", shown(o.Message), attemptsText(attempt), ctx.Err())
		}
		if errors.Is(err, ErrLineTooLong) {
			return out, fmt.Errorf("line: no ok for %q: %w (the hub's lines are shorter than X needs: a resend would be refused too)", shown(o.Message), err)
		}
		if isUnknownHost(err) {
			return out, fmt.Errorf("line: no ok for %q: %w (the hub's host name does not exist: a resend would fail too)", shown(o.Message), err)
		}
		last = err
		if isTimeout(err) {
			out.Timeouts++
		}
		if attempt == o.Attempts {
			break
		}
		pause := backoff(o, attempt+1, rng)
		if o.OnRetry != nil {
			o.OnRetry(Retry{Attempt: attempt, Err: err, Backoff: pause})
		}
		timer := time.NewTimer(pause)
		select {
		case <-timer.C:
		case <-ctx.Done():
			timer.Stop()
			return out, fmt.Errorf("line: cancelled before %q was answered (%s): %w", shown(o.Message), attemptsText(attempt), ctx.Err())
		}
	}
	return out, fmt.Errorf("line: no ok for %q after %s: last error: %w", shown(o.Message), attemptsText(o.Attempts), last)
}

// attemptsText is "1 attempt" or "N attempts".
func attemptsText(n int) string {
	if n == 1 {
		return "1 attempt"
	}
	return fmt.Sprintf("%d attempts", n)
}

// shown is X as quoted in errors: at most shownMessageBytes (not splitting a UTF-8 sequence), then "...".
func shown(x string) string {
	if len(x) <= shownMessageBytes {
		return x
	}
	cut := shownMessageBytes
	for cut > 0 && !utf8.RuneStart(x[cut]) {
		cut--
	}
	return x[:cut] + "..."
}

// invalidOptions reads as its own text and is ErrInvalidOptions to errors.Is.
type invalidOptions struct{ text string }

func (e *invalidOptions) Error() string        { return e.text }
func (e *invalidOptions) Is(target error) bool { return target == ErrInvalidOptions }

// validate refuses Options Run cannot use; every error is ErrInvalidOptions to errors.Is.
func validate(o Options) error {
	if err := validateOptions(o); err != nil {
		return &invalidOptions{err.Error()}
	}
	return nil
}

func validateOptions(o Options) error {
	x := o.Message
	switch {
	case x == "":
		return errors.New("line: the message is empty: the hub reads `message ` with nothing after it as unknown")
	case strings.Contains(x, "\n"):
		return errors.New("line: the message contains a newline, which would end its line early")
	case strings.HasSuffix(x, "\r"):
		return errors.New(`line: the message ends in "\r", which the hub would strip as half of a CRLF`)
	case len(x) > maxMessageBytes:
		return fmt.Errorf("line: the message is %d bytes; a hub line holds at most %d, so X at most %d", len(x), maxHubLineBytes, maxMessageBytes)
	case o.Addr == "":
		return errors.New("line: no hub address")
	case !validAddr(o.Addr):
		return fmt.Errorf("line: the hub address must be HOST:PORT with a port from 1 to 65535, not %q", o.Addr)
	case o.Attempts < 1:
		return fmt.Errorf("line: attempts is %d: there must be at least one", o.Attempts)
	case o.Timeout <= 0:
		return fmt.Errorf("line: the timeout must be positive, not %v", o.Timeout)
	case o.OkDelay < 0 || o.BackoffInitial < 0 || o.BackoffMax < 0:
		return errors.New("line: the ok delay and the backoff times must not be negative")
	}
	return nil
}

// validAddr: HOST:PORT with a host and a numeric port in 1..65535 (a name is resolved when dialling).
func validAddr(addr string) bool {
	host, port, err := net.SplitHostPort(addr)
	if err != nil || host == "" {
		return false
	}
	n, err := strconv.Atoi(port)
	return err == nil && n >= 1 && n <= 65535
}

// isUnknownHost: the resolver answered that the hub's name does not exist. A failure to ask it (no
// answer, a server error) is retried like any other failed connect.
func isUnknownHost(err error) bool {
	var dnsErr *net.DNSError
	return errors.As(err, &dnsErr) && dnsErr.IsNotFound
}

func isTimeout(err error) bool {
	var netErr net.Error
	return errors.Is(err, ErrTimeout) || (errors.As(err, &netErr) && netErr.Timeout())
}

// backoff is the wait before attempt n >= 2: doubling from BackoffInitial up to BackoffMax, then
// "equal jitter" (between half and all of it), so the wait still grows while clients spread out.
func backoff(o Options, attempt int, rng *rand.Rand) time.Duration {
	full := o.BackoffInitial
	if full > o.BackoffMax {
		full = o.BackoffMax
	}
	for n := 2; n < attempt && full < o.BackoffMax; n++ {
		if full > o.BackoffMax/2 {
			full = o.BackoffMax
		} else {
			full *= 2
		}
	}
	half := full / 2
	return half + time.Duration(rng.Int63n(int64(full-half)+1))
}

// runAttempt is one connection's life: connect, send `message X`, serve until `ok X` or failure.
func runAttempt(ctx context.Context, o Options, attempt int, out *Outcome, connectedBefore *bool) (time.Duration, error) {
	d := net.Dialer{Timeout: o.Timeout}
	conn, err := d.DialContext(ctx, "tcp", o.Addr)
	if err != nil {
		return 0, err
	}
	defer conn.Close()
	if *connectedBefore {
		out.Reconnects++
	}
	*connectedBefore = true
	s := newSession(conn, o, out)
	return s.run(ctx, attempt)
}
