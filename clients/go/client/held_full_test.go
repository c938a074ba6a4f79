// A failed write while the held deliveries are full: the reader, waiting for room, must not keep the
// failed call (and every call queued behind it) waiting. A scripted listener stands in for a hub that
// fills our store and then stops reading from us.
package client

import (
	"context"
	"encoding/binary"
	"net"
	"testing"
	"time"
)

// Writes DELIVER frames of 1 MiB until more than maxHeldDeliveryBytes have gone out (or the write
// fails), and never reads: the client's store fills and its writes stall.
func fillAndStopReading(conn net.Conn) {
	body := make([]byte, idSize+MaxBodySize)
	binary.LittleEndian.PutUint64(body, 9)
	deliver := encodeHubFrame(frame{typeDeliver, body})
	for sent := 0; sent <= maxHeldDeliveryBytes+len(deliver); sent += len(deliver) {
		if _, err := conn.Write(deliver); err != nil {
			return
		}
	}
}

func TestFailedWriteWhileDeliveriesAreHeldReturns(t *testing.T) {
	listener, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer listener.Close()
	accepted := make(chan net.Conn, 1)
	go func() {
		conn, err := listener.Accept()
		if err != nil {
			close(accepted)
			return
		}
		accepted <- conn
		fillAndStopReading(conn)
	}()
	c := New()
	if err := c.Connect(listener.Addr().(*net.TCPAddr)); err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	hubSide := <-accepted
	if hubSide == nil {
		t.Fatal("accept failed")
	}
	defer hubSide.Close()
	waitForFullStore(t, c)

	// Relays of 1 MiB fill the socket buffers towards the silent hub; one then meets its deadline.
	body := make([]byte, MaxBodySize)
	var sendErr error
	for i := 0; i < 256 && sendErr == nil; i++ {
		ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
		returned := make(chan error, 1)
		go func() { returned <- c.SendMsgContext(ctx, []uint64{2}, body) }()
		select {
		case sendErr = <-returned:
		case <-time.After(10 * time.Second):
			t.Fatal("SendMsgContext still blocked 10 s after its 200 ms deadline")
		}
		cancel()
	}
	if sendErr == nil {
		t.Fatal("256 relays of 1 MiB to a hub that never reads all succeeded")
	}
	// The connection has ended with the write's error; what was received is still handed over.
	if _, err := c.WhoAmI(); err == nil {
		t.Fatal("WhoAmI succeeded on a connection whose write failed")
	}
	inbox := make(chan IncomingMessage)
	go c.HandleIncomingMessages(inbox)
	select {
	case msg := <-inbox:
		if msg.SenderID != 9 || len(msg.Body) != MaxBodySize {
			t.Fatalf("held delivery: sender %d, %d bytes", msg.SenderID, len(msg.Body))
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the deliveries held before the failure were not handed over")
	}
}

// Waits until the reader holds its bound of deliveries (it then waits for room, reading nothing).
func waitForFullStore(t *testing.T, c *Client) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		c.mu.Lock()
		held := c.heldBytes
		c.mu.Unlock()
		if held+MaxBodySize+idSize+messageOverhead > maxHeldDeliveryBytes {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("the store holds %d bytes after 30 s; want close to %d", held, maxHeldDeliveryBytes)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
