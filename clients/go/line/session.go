// One line-protocol connection: a reader goroutine cuts the hub's bytes into lines; the session's
// goroutine answers `message Y` lines (after OkDelay) and waits for `ok X`, every wait bounded.
package line

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"time"
)

// errHubClosed is the reader's word for the hub's FIN.
var errHubClosed = errors.New("hub closed the connection")

// heldOk is one `ok Y` waiting for OkDelay to pass. OkDelay is one value, so arrival order is due order.
type heldOk struct {
	due time.Time
	y   string
}

type session struct {
	conn      net.Conn
	o         Options
	out       *Outcome
	held      []heldOk
	heldBytes int
	lines     chan string // from the reader, in arrival order
	readErr   chan error  // the reader's last word
	quit      chan struct{}
	hubError  string // the last `error ...` line the hub sent: why it may close the connection
}

func newSession(conn net.Conn, o Options, out *Outcome) *session {
	return &session{conn: conn, o: o, out: out, lines: make(chan string), readErr: make(chan error, 1), quit: make(chan struct{})}
}

func (s *session) run(ctx context.Context, attempt int) (time.Duration, error) {
	go s.read()
	defer close(s.quit)
	okDeadline := time.Now().Add(s.o.Timeout)
	s.conn.SetWriteDeadline(okDeadline) // a hub that stops reading cannot hold us past the timeout
	if _, err := io.WriteString(s.conn, messagePrefix+s.o.Message+"\n"); err != nil {
		return 0, fmt.Errorf("cannot send the message: %w", err)
	}
	sentAt := time.Now()
	if s.o.OnConnected != nil {
		s.o.OnConnected(attempt)
	}
	okTimer := time.NewTimer(time.Until(okDeadline))
	defer okTimer.Stop()
	dueTimer := time.NewTimer(time.Hour)
	defer dueTimer.Stop()
	for {
		if err := s.writeDue(time.Now()); err != nil {
			return 0, err
		}
		s.armDueTimer(dueTimer)
		select {
		case line := <-s.lines:
			gotOk, err := s.onLine(line)
			if err != nil {
				return 0, err
			}
			if gotOk {
				latency := time.Since(sentAt)
				s.writeDue(time.Now()) // answers already due go out first; we close either way
				return latency, nil
			}
		case err := <-s.readErr:
			if errors.Is(err, errHubClosed) && s.hubError != "" {
				return 0, fmt.Errorf("hub closed the connection: %s", s.hubError)
			}
			return 0, err
		case <-dueTimer.C:
		case <-okTimer.C:
			return 0, fmt.Errorf("%w (%v)", ErrTimeout, s.o.Timeout)
		case <-ctx.Done():
			return 0, ctx.Err()
		}
	}
}

// armDueTimer points the timer at the next held ok, or far away when none is held.
func (s *session) armDueTimer(t *time.Timer) {
	if !t.Stop() {
		select {
		case <-t.C:
		default:
		}
	}
	wait := time.Hour
	if len(s.held) > 0 {
		wait = time.Until(s.held[0].due)
	}
	t.Reset(wait)
}

// onLine handles one line from the hub; true once it is our `ok X`.
func (s *session) onLine(line string) (bool, error) {
	switch {
	case strings.HasPrefix(line, messagePrefix) && len(line) > len(messagePrefix):
		y := line[len(messagePrefix):]
		s.held = append(s.held, heldOk{due: time.Now().Add(s.o.OkDelay), y: y})
		s.heldBytes += len(y)
		if s.heldBytes > maxHeldOkBytes {
			return false, fmt.Errorf("hub is not reading our replies: %d bytes of oks held back", s.heldBytes)
		}
		return false, nil
	case line == okPrefix+s.o.Message:
		return true, nil
	case line == lineTooLongLine:
		return false, ErrLineTooLong
	case strings.HasPrefix(line, errorLinePrefix):
		s.hubError = shown(line) // `error server full`, `error slow consumer`: the reason, should the hub close
	}
	s.out.Ignored++ // error lines the hub keeps going after, someone else's ok, other text
	return false, nil
}

// writeDue writes every held ok whose delay has passed.
func (s *session) writeDue(now time.Time) error {
	for len(s.held) > 0 && !s.held[0].due.After(now) {
		y := s.held[0].y
		if _, err := io.WriteString(s.conn, okPrefix+y+"\n"); err != nil {
			return fmt.Errorf("cannot send ok: %w", err)
		}
		s.out.OksSent++
		s.heldBytes -= len(y)
		s.held = s.held[1:]
	}
	return nil
}

// read cuts the hub's bytes into lines ("\n", one "\r" before it stripped) until the connection ends.
func (s *session) read() {
	r := bufio.NewReaderSize(s.conn, maxHubLineBytes+2)
	for {
		raw, err := r.ReadSlice('\n')
		if err == bufio.ErrBufferFull {
			s.readErr <- fmt.Errorf("hub sent a line longer than %d bytes", maxHubLineBytes)
			return
		}
		if err == io.EOF {
			s.readErr <- errHubClosed
			return
		}
		if err != nil {
			s.readErr <- fmt.Errorf("connection lost: %w", err)
			return
		}
		line := strings.TrimSuffix(strings.TrimSuffix(string(raw), "\n"), "\r")
		select {
		case s.lines <- line:
		case <-s.quit:
			return
		}
	}
}
