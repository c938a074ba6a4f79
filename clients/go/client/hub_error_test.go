// The hub's ERROR frame, met through the client: a raw frame the client would never build is written
// on its connection, and every later call returns a *HubError with the hub's code.
package client

import (
	"context"
	"errors"
	"testing"
	"time"

	"ringhub/clients/go/internal/hubtest"
)

// connectToFreshHub starts a hub and connects one client to it; both end with the test.
func connectToFreshHub(t *testing.T) *Client {
	t.Helper()
	hub := hubtest.Start(t)
	c := New()
	if err := c.Connect(hub.RelayAddr); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// sendRaw writes bytes on c's connection as one frame, bypassing SendMsg's checks.
func sendRaw(t *testing.T, c *Client, frame []byte) {
	t.Helper()
	if err := c.write(context.Background(), frame, nil); err != nil {
		t.Fatal(err)
	}
}

// waitHubError waits (bounded) for c's connection to end and returns the error calls get.
func waitHubError(t *testing.T, c *Client) *HubError {
	t.Helper()
	select {
	case <-c.done:
	case <-time.After(30 * time.Second):
		t.Fatal("the hub did not end the connection within 30 s")
	}
	_, err := c.WhoAmI()
	var hubErr *HubError
	if !errors.As(err, &hubErr) {
		t.Fatalf("got %v, want a *HubError", err)
	}
	if _, again := c.ListClientIDs(); !errors.As(again, &hubErr) {
		t.Fatalf("a later call got %v, want the same *HubError", again)
	}
	return hubErr
}

// One byte past the largest body (255 receivers, 1 MiB) is ERROR 3, frame too large
// (docs/protocol.md, "Errors"), refused from the header alone.
func TestOneByteTooLargeGetsError3(t *testing.T) {
	c := connectToFreshHub(t)
	receivers := make([]uint64, MaxReceivers)
	for i := range receivers {
		receivers[i] = uint64(i + 2)
	}
	frame := encodeRelay(receivers, make([]byte, MaxBodySize+1))
	sendRaw(t, c, frame[:headerSize]) // the hub refuses on the header; the rest would go unread
	if got := waitHubError(t, c); got.Code != ErrorFrameTooLarge || got.Reason == "" {
		t.Fatalf("got ERROR %d %q, want %d with a reason", got.Code, got.Reason, ErrorFrameTooLarge)
	}
}

// Nonzero flags get ERROR 5, the code protocol.md's ERROR example shows.
func TestNonzeroFlagsGetError5(t *testing.T) {
	c := connectToFreshHub(t)
	sendRaw(t, c, []byte{typeIdentity, 0, 1, 0, 0, 0, 0, 0})
	if got := waitHubError(t, c); got.Code != ErrorNonzeroFlags {
		t.Fatalf("got ERROR %d %q, want %d", got.Code, got.Reason, ErrorNonzeroFlags)
	}
}
