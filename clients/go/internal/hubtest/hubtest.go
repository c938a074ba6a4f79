// Package hubtest starts a real ringhub for the Go tests: the binary named by $RINGHUB_BIN, on free
// loopback ports, stopped when the test ends. Without $RINGHUB_BIN the test is skipped, so a plain
// `go test ./...` still passes; ctest always sets it (clients/go/CMakeLists.txt).
package hubtest

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// EnvBinary names the environment variable holding the hub binary's path.
const EnvBinary = "RINGHUB_BIN"

// How long the hub may take to log that it is ready, or to stop after SIGTERM, before the test
// fails: a bound on a hang, not a timed assertion (a healthy hub takes milliseconds).
const startStopLimit = 20 * time.Second

// The hub's start-up line (apps/ringhub_main.cpp) names the ports it bound, which matters with port 0.
var readyLine = regexp.MustCompile(`ringhub ready: relay on (\S+):(\d+), line on \S+:(\d+),`)

// Hub is one running hub process.
type Hub struct {
	RelayAddr *net.TCPAddr
	LineAddr  string // host:port of the line protocol
	args      []string
	cmd       *exec.Cmd
	logMu     sync.Mutex
	log       bytes.Buffer // everything the hub printed, shown when a test fails
	exited    chan struct{}
}

// Binary returns $RINGHUB_BIN, or skips tb with a message saying how to run the hub tests.
func Binary(tb testing.TB) string {
	path := os.Getenv(EnvBinary)
	if path == "" {
		tb.Skipf("%s is not set: these tests need a built hub, e.g. %s=$PWD/../../build/release/bin/ringhub go test ./...",
			EnvBinary, EnvBinary)
	}
	return path
}

// Start runs a hub on free loopback ports with extra flags, and stops it when tb ends.
func Start(tb testing.TB, extra ...string) *Hub {
	tb.Helper()
	args := append([]string{"--bind", "127.0.0.1", "--relay-port", "0", "--line-port", "0", "--admin-port", "0"}, extra...)
	return startWith(tb, args)
}

// Restart stops the hub and starts another with the same flags on the same relay and line ports,
// as an operator restarting the service would; clients see their connections drop.
func (h *Hub) Restart(tb testing.TB) *Hub {
	tb.Helper()
	h.Stop(tb)
	_, linePort, err := net.SplitHostPort(h.LineAddr)
	if err != nil {
		tb.Fatalf("hubtest: bad line address %q: %v", h.LineAddr, err)
	}
	args := append([]string{}, h.args...)
	args = setFlag(args, "--relay-port", strconv.Itoa(h.RelayAddr.Port))
	args = setFlag(args, "--line-port", linePort)
	return startWith(tb, args)
}

func setFlag(args []string, flag, value string) []string {
	for i := 0; i+1 < len(args); i++ {
		if args[i] == flag {
			args[i+1] = value
		}
	}
	return args
}

func startWith(tb testing.TB, args []string) *Hub {
	tb.Helper()
	h := &Hub{args: args, exited: make(chan struct{})}
	h.cmd = exec.Command(Binary(tb), args...)
	out, err := h.cmd.StdoutPipe()
	if err != nil {
		tb.Fatalf("hubtest: %v", err)
	}
	h.cmd.Stderr = h.cmd.Stdout // one pipe: the ready line may come on either stream
	if err := h.cmd.Start(); err != nil {
		tb.Fatalf("hubtest: cannot start %s: %v", h.cmd.Path, err)
	}
	ready := make(chan error, 1)
	go h.readLog(out, ready)
	go func() {
		h.cmd.Wait()
		close(h.exited)
	}()
	tb.Cleanup(func() { h.Stop(tb) })
	select {
	case err := <-ready:
		if err != nil {
			h.Stop(tb)
			tb.Fatalf("hubtest: %v; hub output:\n%s", err, h.Log())
		}
	case <-time.After(startStopLimit):
		h.Stop(tb)
		tb.Fatalf("hubtest: the hub did not report ready within %v; output:\n%s", startStopLimit, h.Log())
	}
	return h
}

// readLog keeps the hub's output (so its pipe never fills) and reports the ready line's ports.
func (h *Hub) readLog(out io.Reader, ready chan<- error) {
	scanner := bufio.NewScanner(out)
	reported := false
	for scanner.Scan() {
		line := scanner.Text()
		h.logMu.Lock()
		h.log.WriteString(line + "\n")
		h.logMu.Unlock()
		if m := readyLine.FindStringSubmatch(line); m != nil && !reported {
			reported = true
			ready <- h.setAddrs(m[1], m[2], m[3])
		}
	}
	if !reported {
		ready <- fmt.Errorf("the hub exited before it was ready")
	}
	io.Copy(io.Discard, out) // a line longer than the scanner's buffer: keep draining anyway
}

func (h *Hub) setAddrs(host, relayPort, linePort string) error {
	host = strings.TrimSuffix(strings.TrimPrefix(host, "["), "]") // the hub brackets an IPv6 literal
	addr, err := net.ResolveTCPAddr("tcp", net.JoinHostPort(host, relayPort))
	if err != nil {
		return fmt.Errorf("cannot read the relay address from the ready line: %v", err)
	}
	h.RelayAddr = addr
	h.LineAddr = net.JoinHostPort(host, linePort)
	return nil
}

// Pid is the hub's process id, for reading its CPU time from /proc.
func (h *Hub) Pid() int { return h.cmd.Process.Pid }

// Log is what the hub has printed so far.
func (h *Hub) Log() string {
	h.logMu.Lock()
	defer h.logMu.Unlock()
	return h.log.String()
}

// Stop ends the hub with SIGTERM (SIGKILL if it hangs) and waits for it; stopping twice is harmless.
func (h *Hub) Stop(tb testing.TB) {
	select {
	case <-h.exited:
		return
	default:
	}
	h.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-h.exited:
	case <-time.After(startStopLimit):
		h.cmd.Process.Kill()
		<-h.exited
		tb.Errorf("hubtest: the hub did not stop within %v of SIGTERM; output:\n%s", startStopLimit, h.Log())
	}
}
