// Package client is a Go client for ringhub's relay protocol, with the API of the original relay-hub
// assignment (New, Connect, Close, WhoAmI, ListClientIDs, SendMsg, HandleIncomingMessages), so code
// written for it moves over by changing its import path. See clients/go/README.md.
package client

import (
	"bufio"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"time"
)

// IncomingMessage is one body relayed to this client (a DELIVER frame).
type IncomingMessage struct {
	SenderID uint64
	Body     []byte
}

// Deliveries that arrive while nobody takes them (before HandleIncomingMessages is called, or while
// its channel is full) are kept up to this many bytes, counted as body size plus messageOverhead.
// It equals the hub's default --max-outbound-bytes: past it the reader stops reading, TCP pushes back,
// and the hub treats us like any slow consumer (ERROR 6), so a client that never takes its messages
// cannot make this process hold unbounded memory.
const maxHeldDeliveryBytes = 64 << 20

// What one held message costs besides its body: the slice and struct headers, rounded up.
const messageOverhead = 64

// How long a failed write waits for the reader to decode an ERROR frame the hub sent before closing.
// The hub's close has already reached us when a write fails, so the reader needs microseconds; the
// bound only matters if the write failed for another reason and the reader has nothing to read.
const readerDrainLimit = time.Second

// The reader's buffer: large enough that a burst of small frames costs one read syscall.
const readBufferSize = 64 << 10

// The reader's reason to stop when a write failed while the held deliveries were full; callers see
// the write's error (describeEnd).
var errEndedWhileFull = errors.New("ringhub client: write failed while deliveries were held")

// ErrNotConnected is returned by calls made before Connect.
var ErrNotConnected = errors.New("ringhub client: not connected")

// ErrAlreadyConnected is returned by a second Connect on one Client.
var ErrAlreadyConnected = errors.New("ringhub client: already connected (a Client serves one connection)")

// ErrClosed is returned by calls made after Close.
var ErrClosed = errors.New("ringhub client: closed")

// ErrHubClosed is returned by every call after the hub closed the connection without an ERROR frame
// (it stopped, or was restarted). A new Client can connect again.
var ErrHubClosed = errors.New("ringhub client: hub closed the connection")

// HubError is the hub's ERROR frame: the hub closed the connection for the reason given. Every call
// after it returns the same *HubError; errors.As finds it.
type HubError struct {
	Code   byte   // docs/protocol.md, "Errors": 3 frame too large, 6 slow consumer, 7 server full, ...
	Reason string // for logs; act on Code
}

func (e *HubError) Error() string {
	return fmt.Sprintf("ringhub client: hub sent ERROR %d: %s", e.Code, e.Reason)
}

// Error codes of the hub's ERROR frame (docs/protocol.md, "Errors").
const (
	ErrorUnknownFrameType   byte = 1
	ErrorBadReceiverCount   byte = 2
	ErrorFrameTooLarge      byte = 3
	ErrorLengthInconsistent byte = 4
	ErrorNonzeroFlags       byte = 5
	ErrorSlowConsumer       byte = 6
	ErrorServerFull         byte = 7
	ErrorFrameTimeout       byte = 8
)

// reply is what a waiting WhoAmI or ListClientIDs gets: the reply payload or why there is none.
type reply struct {
	payload []byte
	err     error
}

// waiter is one request awaiting its reply. Replies come back in request order, so waiters form a
// FIFO; ch has room for one reply, so the reader never blocks on a caller that gave up.
type waiter struct {
	kind byte // the reply type expected
	ch   chan reply
}

// Client is one connection to a hub. It is safe for concurrent use: one reader goroutine, started by
// Connect, decodes every hub frame; requests write whole frames under a lock.
type Client struct {
	mu        sync.Mutex
	cond      *sync.Cond // signalled when held changes or the connection ends
	conn      net.Conn
	closed    bool
	err       error // why the connection ended; nil while it lives
	writeErr  error // the write that failed, if one did
	waiters   []waiter
	held      []IncomingMessage // deliveries not yet handed to a HandleIncomingMessages channel
	heldBytes int
	done      chan struct{} // closed when the reader has stopped
	closing   chan struct{} // closed by Close: consumers stop waiting on their channels

	writeMu sync.Mutex // one frame at a time on the socket
}

// New returns a Client that is not yet connected.
func New() *Client {
	c := &Client{closing: make(chan struct{})}
	c.cond = sync.NewCond(&c.mu)
	return c
}

// Connect dials the hub and starts the reader.
func (c *Client) Connect(serverAddr *net.TCPAddr) error {
	return c.ConnectContext(context.Background(), serverAddr)
}

// ConnectContext is Connect bounded by ctx.
func (c *Client) ConnectContext(ctx context.Context, serverAddr *net.TCPAddr) error {
	if serverAddr == nil {
		return errors.New("ringhub client: Connect needs a hub address, got nil")
	}
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return ErrClosed
	}
	if c.conn != nil {
		c.mu.Unlock()
		return ErrAlreadyConnected
	}
	c.mu.Unlock()
	var d net.Dialer
	conn, err := d.DialContext(ctx, "tcp", serverAddr.String())
	if err != nil {
		return fmt.Errorf("ringhub client: cannot connect to %v: %w", serverAddr, err)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed || c.conn != nil { // Close or another Connect won the race while we dialled
		conn.Close()
		if c.closed {
			return ErrClosed
		}
		return ErrAlreadyConnected
	}
	c.conn = conn
	c.done = make(chan struct{})
	go c.readLoop(conn, c.done)
	c.cond.Broadcast() // a HandleIncomingMessages called before Connect starts waiting for deliveries
	return nil
}

// Close ends the connection. Waiting calls return ErrClosed; held deliveries are dropped.
func (c *Client) Close() error {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return nil
	}
	c.closed = true
	close(c.closing)
	c.cond.Broadcast() // the reader and consumers waiting on held deliveries stop
	conn, done := c.conn, c.done
	c.mu.Unlock()
	if conn == nil {
		return nil
	}
	err := conn.Close()
	<-done // the reader has failed every waiter and will touch nothing more
	if errors.Is(err, net.ErrClosed) {
		err = nil
	}
	return err
}

// WhoAmI asks the hub for this connection's id (IDENTITY).
func (c *Client) WhoAmI() (uint64, error) {
	return c.WhoAmIContext(context.Background())
}

// WhoAmIContext is WhoAmI that gives up when ctx ends (the connection stays usable).
func (c *Client) WhoAmIContext(ctx context.Context) (uint64, error) {
	payload, err := c.request(ctx, typeIdentity, typeIdentityReply)
	if err != nil {
		return 0, err
	}
	return binary.LittleEndian.Uint64(payload), nil
}

// ListClientIDs asks for the ids of every other connected client, ascending (LIST).
func (c *Client) ListClientIDs() ([]uint64, error) {
	return c.ListClientIDsContext(context.Background())
}

// ListClientIDsContext is ListClientIDs that gives up when ctx ends (the connection stays usable).
func (c *Client) ListClientIDsContext(ctx context.Context) ([]uint64, error) {
	payload, err := c.request(ctx, typeList, typeListReply)
	if err != nil {
		return nil, err
	}
	return decodeIDs(payload), nil
}

// SendMsg relays body to recipients (RELAY): 1 to MaxReceivers ids, a body of at most MaxBodySize
// bytes, checked before anything is written. The hub sends no acknowledgement; unknown ids, repeated
// ids and the sender itself are skipped by the hub, not reported.
func (c *Client) SendMsg(recipients []uint64, body []byte) error {
	return c.SendMsgContext(context.Background(), recipients, body)
}

// SendMsgContext is SendMsg whose write is bounded by ctx's deadline. A write cut short leaves half a
// frame on the wire, so it ends the connection.
func (c *Client) SendMsgContext(ctx context.Context, recipients []uint64, body []byte) error {
	if err := checkRelay(recipients, body); err != nil {
		return err
	}
	return c.write(ctx, encodeRelay(recipients, body), nil)
}

// HandleIncomingMessages sends every delivery to writeCh, those that arrived before it was called
// first, and returns once the connection has ended and everything received was handed over (or at
// once after Close). Call it in its own goroutine, before or after Connect. Several may run at once;
// each delivery goes to one of them. It does not close writeCh.
func (c *Client) HandleIncomingMessages(writeCh chan<- IncomingMessage) {
	for {
		msg, ok := c.takeHeld()
		if !ok {
			return
		}
		select {
		case writeCh <- msg:
		case <-c.closing:
			return
		}
	}
}

// takeHeld waits for the oldest held delivery; false once none will come.
func (c *Client) takeHeld() (IncomingMessage, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for len(c.held) == 0 || c.closed {
		if c.closed || c.err != nil {
			return IncomingMessage{}, false
		}
		c.cond.Wait()
	}
	msg := c.held[0]
	c.held[0] = IncomingMessage{}
	c.held = c.held[1:]
	c.heldBytes -= len(msg.Body) + messageOverhead
	c.cond.Broadcast() // the reader may be waiting for room
	return msg, true
}

// request writes an IDENTITY or LIST and waits for its reply.
func (c *Client) request(ctx context.Context, kind, replyKind byte) ([]byte, error) {
	w := waiter{kind: replyKind, ch: make(chan reply, 1)}
	if err := c.write(ctx, encodeRequest(kind), &w); err != nil {
		return nil, err
	}
	select {
	case r := <-w.ch:
		return r.payload, r.err
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// write sends one frame with one Write. A request's waiter joins the FIFO under the write lock, so
// the FIFO's order is the wire's order.
func (c *Client) write(ctx context.Context, buf []byte, w *waiter) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	c.writeMu.Lock()
	defer c.writeMu.Unlock()
	c.mu.Lock()
	conn, done, err := c.conn, c.done, c.stateErr()
	if err == nil && w != nil {
		c.waiters = append(c.waiters, *w)
	}
	c.mu.Unlock()
	if err != nil {
		return err
	}
	deadline, hasDeadline := ctx.Deadline()
	if hasDeadline {
		conn.SetWriteDeadline(deadline)
		defer conn.SetWriteDeadline(time.Time{}) // the zero time clears it
	}
	if _, err := conn.Write(buf); err != nil {
		c.endAfterWriteError(conn, done, err)
		c.mu.Lock()
		defer c.mu.Unlock()
		return c.stateErr()
	}
	return nil
}

// endAfterWriteError ends the connection: a partial frame cannot be taken back. A hub that sent ERROR
// and closed makes our writes fail while its ERROR frame may still wait in our receive buffer; the
// reader gets a moment to decode it, so callers see the hub's reason rather than a broken pipe.
func (c *Client) endAfterWriteError(conn net.Conn, done chan struct{}, err error) {
	c.mu.Lock()
	if c.writeErr == nil {
		c.writeErr = err
	}
	c.cond.Broadcast() // a reader waiting for room in held deliveries stops waiting (hold)
	c.mu.Unlock()
	var netErr net.Error
	if !(errors.As(err, &netErr) && netErr.Timeout()) {
		select {
		case <-done:
		case <-time.After(readerDrainLimit):
		}
	}
	conn.Close()
	<-done
}

// stateErr is why no request can be made now, or nil. Caller holds mu.
func (c *Client) stateErr() error {
	switch {
	case c.closed:
		return ErrClosed
	case c.err != nil:
		return c.err
	case c.conn == nil:
		return ErrNotConnected
	}
	return nil
}

// readLoop decodes hub frames until the connection ends, then fails every waiter with the reason.
func (c *Client) readLoop(conn net.Conn, done chan struct{}) {
	defer close(done)
	r := bufio.NewReaderSize(conn, readBufferSize)
	for {
		f, err := readFrame(r)
		if err == nil {
			err = c.dispatch(f)
		}
		if err != nil {
			c.fail(c.describeEnd(err))
			conn.Close()
			return
		}
	}
}

// describeEnd turns the read error that ended the connection into what callers see.
func (c *Client) describeEnd(err error) error {
	c.mu.Lock()
	closed, writeErr := c.closed, c.writeErr
	c.mu.Unlock()
	var hubErr *HubError
	var protoErr *ProtocolError
	switch {
	case closed:
		return ErrClosed
	case errors.As(err, &hubErr), errors.As(err, &protoErr):
		return err
	case writeErr != nil:
		return fmt.Errorf("ringhub client: write failed: %w", writeErr)
	case err == io.EOF:
		return ErrHubClosed
	}
	return fmt.Errorf("ringhub client: connection lost: %w", err)
}

// dispatch hands one frame to its consumer; an error ends the connection.
func (c *Client) dispatch(f frame) error {
	switch f.kind {
	case typeDeliver:
		return c.hold(IncomingMessage{SenderID: binary.LittleEndian.Uint64(f.payload), Body: f.payload[idSize:]})
	case typeError:
		return &HubError{Code: f.payload[0], Reason: string(f.payload[1:])}
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.waiters) == 0 || c.waiters[0].kind != f.kind {
		return protocolErrorf("reply type 0x%02x matches no request", f.kind)
	}
	w := c.waiters[0]
	c.waiters[0] = waiter{}
	c.waiters = c.waiters[1:]
	w.ch <- reply{payload: f.payload}
	return nil
}

// hold keeps a delivery for HandleIncomingMessages, waiting while maxHeldDeliveryBytes are held. Once
// a write has failed the connection is ending and nothing may wait for room: the delivery is kept
// (one message past the bound) and the reader stops, so the failed write's caller gets its error.
func (c *Client) hold(msg IncomingMessage) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	cost := len(msg.Body) + messageOverhead
	full := func() bool { return c.heldBytes > 0 && c.heldBytes+cost > maxHeldDeliveryBytes }
	for full() && !c.closed && c.writeErr == nil {
		c.cond.Wait()
	}
	if c.closed {
		return ErrClosed
	}
	ending := full() && c.writeErr != nil
	c.held = append(c.held, msg)
	c.heldBytes += cost
	c.cond.Broadcast()
	if ending {
		return errEndedWhileFull
	}
	return nil
}

// fail records why the connection ended (the first reason wins) and answers every waiter with it.
func (c *Client) fail(err error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.err == nil {
		c.err = err
	}
	for _, w := range c.waiters {
		w.ch <- reply{err: c.err}
	}
	c.waiters = nil
	c.cond.Broadcast()
}
