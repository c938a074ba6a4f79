// The line client against a real hub (hubtest; skipped without $RINGHUB_BIN): a hub restart mid-wait,
// a message lost to a peer that leaves, several clients with different ok delays, the attempt limit,
// and option checks.
package line_test

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"ringhub/clients/go/internal/hubtest"
	"ringhub/clients/go/line"
)

// Backoff short enough to keep the tests quick; the schedule itself is what it is in production.
func testOptions(addr, message string) line.Options {
	o := line.DefaultOptions(addr, message)
	o.BackoffInitial = 10 * time.Millisecond
	o.BackoffMax = 100 * time.Millisecond
	return o
}

// The hub restarts while the client waits for its ok: the client sees the connection drop, backs off,
// reconnects to the new hub on the same port, sends again, and gets its ok. The restart happens inside
// OnConnected, on the client's goroutine, so the first hub cannot answer before it stops.
func TestReconnectsAcrossHubRestart(t *testing.T) {
	// A short shutdown grace: the stopping hub need not wait for our connection, which is not reading.
	hub := hubtest.Start(t, "--no-line-reforward", "--shutdown-grace-ms", "100")
	o := testOptions(hub.LineAddr, "across a restart")
	o.OnConnected = func(attempt int) {
		if attempt == 1 {
			hub = hub.Restart(t)
		}
	}
	var retries []line.Retry
	o.OnRetry = func(r line.Retry) { retries = append(retries, r) }
	out, err := line.Run(context.Background(), o)
	if err != nil {
		t.Fatalf("%v; hub output:\n%s", err, hub.Log())
	}
	if out.Attempts != 2 || out.Reconnects != 1 || len(retries) != 1 {
		t.Fatalf("outcome %+v after retries %+v; want 2 attempts, 1 reconnect", out, retries)
	}
	if r := retries[0]; r.Backoff < o.BackoffInitial/2 || r.Backoff > o.BackoffInitial {
		t.Fatalf("first backoff %v, want between %v and %v", r.Backoff, o.BackoffInitial/2, o.BackoffInitial)
	}
	if out.OksSent < 1 {
		t.Fatalf("the client alone on the new hub must have answered its own message: %+v", out)
	}
}

// silentPeer is a raw line connection that reads one `message ...`, reports it, and leaves without
// answering; with --no-line-reforward that message is lost and only the sender's timeout recovers it.
func silentPeer(t *testing.T, addr string) <-chan string {
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	got := make(chan string, 1)
	go func() {
		defer conn.Close()
		line, err := bufio.NewReader(conn).ReadString('\n')
		if err != nil {
			close(got)
			return
		}
		got <- line
	}()
	t.Cleanup(func() { conn.Close() })
	return got
}

// Two live connections: the hub picks the receiver at random. If the silent peer takes the message
// and leaves, the client must time out, reconnect, resend and (now alone) answer itself; if the client
// drew its own message, it succeeds at once. Both branches assert what must have happened, judged by
// the outcome (a timeout can only mean the peer took the message), so no branch depends on timing.
func TestTimeoutResendsALostMessage(t *testing.T) {
	hub := hubtest.Start(t, "--no-line-reforward")
	peer := silentPeer(t, hub.LineAddr)
	o := testOptions(hub.LineAddr, "lost once")
	o.Timeout = 300 * time.Millisecond
	out, err := line.Run(context.Background(), o)
	if err != nil {
		t.Fatal(err)
	}
	if out.Timeouts == 0 {
		if out.Attempts != 1 {
			t.Fatalf("no timeout, yet the outcome is %+v; want the first attempt to succeed", out)
		}
		return
	}
	if out.Attempts != 2 || out.Timeouts != 1 || out.Reconnects != 1 {
		t.Fatalf("outcome %+v; want one timeout, one reconnect, success on the resend", out)
	}
	select {
	case taken := <-peer:
		if taken != "message lost once\n" {
			t.Fatalf("the client timed out, and the peer read %q", taken)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("the client timed out, yet the peer never received its message")
	}
}

// Clients with different ok delays, all on one hub at once, each get their ok: whoever draws a
// message answers it after its own delay, and a message whose receiver leaves first is forwarded again.
func TestVariousOkDelays(t *testing.T) {
	hub := hubtest.Start(t)
	delays := []time.Duration{0, 0, 5 * time.Millisecond, 20 * time.Millisecond, 50 * time.Millisecond, 100 * time.Millisecond}
	var wg sync.WaitGroup
	outcomes := make([]line.Outcome, len(delays))
	errs := make([]error, len(delays))
	for i, delay := range delays {
		wg.Add(1)
		go func(i int, delay time.Duration) {
			defer wg.Done()
			o := testOptions(hub.LineAddr, fmt.Sprintf("client %d waits %v", i, delay))
			o.OkDelay = delay
			outcomes[i], errs[i] = line.Run(context.Background(), o)
		}(i, delay)
	}
	wg.Wait()
	var oks uint64
	for i := range delays {
		if errs[i] != nil {
			t.Fatalf("client %d (ok delay %v): %v", i, delays[i], errs[i])
		}
		oks += outcomes[i].OksSent
	}
	if oks < uint64(len(delays)) {
		t.Fatalf("%d oks sent in all for %d answered messages", oks, len(delays))
	}
}

// An ok delay longer than the timeout can never be met, even by the client answering itself: every
// attempt times out, and Run gives up after exactly Attempts of them.
func TestGivesUpAfterTheAttemptLimit(t *testing.T) {
	hub := hubtest.Start(t)
	o := testOptions(hub.LineAddr, "too slow")
	o.Timeout = 50 * time.Millisecond
	o.OkDelay = time.Hour
	o.Attempts = 3
	out, err := line.Run(context.Background(), o)
	if !errors.Is(err, line.ErrTimeout) || !strings.Contains(err.Error(), "after 3 attempts") {
		t.Fatalf("got %v, want a timeout after 3 attempts", err)
	}
	if out.Attempts != 3 || out.Timeouts != 3 {
		t.Fatalf("outcome %+v, want 3 attempts, 3 timeouts", out)
	}
}

// A hub that is down refuses every attempt; cancelling the context ends the backoff early.
func TestConnectionRefusedAndCancel(t *testing.T) {
	listener, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := listener.Addr().String()
	listener.Close() // nothing listens there now
	o := testOptions(addr, "nobody home")
	o.Attempts = 2
	if _, err := line.Run(context.Background(), o); err == nil || !strings.Contains(err.Error(), "after 2 attempts") {
		t.Fatalf("got %v, want a refusal after 2 attempts", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	o.Attempts = 1000
	o.BackoffInitial, o.BackoffMax = time.Hour, time.Hour
	o.OnRetry = func(line.Retry) { cancel() }
	if _, err := line.Run(ctx, o); !errors.Is(err, context.Canceled) {
		t.Fatalf("got %v, want context.Canceled", err)
	}
}

func TestInvalidOptions(t *testing.T) {
	valid := testOptions("127.0.0.1:1", "x")
	cases := map[string]func(o *line.Options){
		"empty message":  func(o *line.Options) { o.Message = "" },
		"newline":        func(o *line.Options) { o.Message = "a\nb" },
		"trailing CR":    func(o *line.Options) { o.Message = "a\r" },
		"too long":       func(o *line.Options) { o.Message = strings.Repeat("x", 64<<10) },
		"no attempts":    func(o *line.Options) { o.Attempts = 0 },
		"zero timeout":   func(o *line.Options) { o.Timeout = 0 },
		"negative delay": func(o *line.Options) { o.OkDelay = -time.Millisecond },
		"no hub address": func(o *line.Options) { o.Addr = "" },
		"no port":        func(o *line.Options) { o.Addr = "127.0.0.1" },
		"port 0":         func(o *line.Options) { o.Addr = "127.0.0.1:0" },
		"port too big":   func(o *line.Options) { o.Addr = "127.0.0.1:70000" },
		"negative port":  func(o *line.Options) { o.Addr = "127.0.0.1:-1" },
		"named port":     func(o *line.Options) { o.Addr = "localhost:abc" },
		"no host":        func(o *line.Options) { o.Addr = ":7401" },
	}
	for name, change := range cases {
		o := valid
		change(&o)
		out, err := line.Run(context.Background(), o)
		if err == nil || out.Attempts != 0 || !errors.Is(err, line.ErrInvalidOptions) {
			t.Errorf("%s: got %+v, %v; want ErrInvalidOptions before any attempt", name, out, err)
		}
	}
}

// A scripted hub: each accepted connection's first line is read, then it gets `reply` and a close.
func scriptedHub(t *testing.T, reply string) string {
	t.Helper()
	listener, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { listener.Close() })
	go func() {
		for {
			conn, err := listener.Accept()
			if err != nil {
				return
			}
			bufio.NewReader(conn).ReadString('\n')
			conn.Write([]byte(reply))
			conn.Close()
		}
	}()
	return listener.Addr().String()
}

// A hub whose lines are too short for X refuses every resend the same way: Run stops at the first.
func TestLineTooLongIsNotRetried(t *testing.T) {
	o := testOptions(scriptedHub(t, "error line too long\n"), strings.Repeat("y", 200))
	o.Attempts = 5
	out, err := line.Run(context.Background(), o)
	if !errors.Is(err, line.ErrLineTooLong) || out.Attempts != 1 {
		t.Fatalf("got %+v, %v; want ErrLineTooLong after 1 attempt", out, err)
	}
	if !strings.Contains(err.Error(), strings.Repeat("y", 64)+"...") || strings.Contains(err.Error(), strings.Repeat("y", 65)) {
		t.Fatalf("error %q should quote X cut to 64 bytes", err)
	}
}

// A hub name the resolver says does not exist fails at once, as the C++ client does, rather than
// using every attempt. Skipped where this machine's resolver cannot answer at all.
func TestUnknownHubHostIsNotRetried(t *testing.T) {
	const host = "no-such-host.invalid"
	if _, err := net.LookupHost(host); err == nil {
		t.Skipf("%s resolves here", host)
	} else if dnsErr := (*net.DNSError)(nil); !errors.As(err, &dnsErr) || !dnsErr.IsNotFound {
		t.Skipf("this resolver cannot say %s does not exist: %v", host, err)
	}
	o := testOptions(host+":7401", "x")
	o.Attempts = 5
	out, err := line.Run(context.Background(), o)
	var dnsErr *net.DNSError
	if !errors.As(err, &dnsErr) || out.Attempts != 1 {
		t.Fatalf("got %+v, %v; want the resolver's error after 1 attempt", out, err)
	}
}

// The hub's `error ...` line before its close is the attempt's reason.
func TestTheHubsLastErrorLineIsTheReason(t *testing.T) {
	o := testOptions(scriptedHub(t, "error server full\n"), "x")
	o.Attempts = 2
	_, err := line.Run(context.Background(), o)
	if err == nil || !strings.Contains(err.Error(), "last error: hub closed the connection: error server full") {
		t.Fatalf("got %v; want the hub's error line as the last error", err)
	}
}
