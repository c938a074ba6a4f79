// The relay client against a real hub (started by hubtest on free ports; skipped without
// $RINGHUB_BIN): the original assignment's integration scenario, the protocol's limits, duplicate
// receivers, the hub's ERROR as a typed error, and deliveries that arrive before anyone handles them.
package client_test

import (
	"bytes"
	"context"
	"errors"
	"reflect"
	"sync"
	"testing"
	"time"

	"ringhub/clients/go/client"
	"ringhub/clients/go/internal/hubtest"
)

// Bounds every wait on the hub, so a broken hub fails the test instead of hanging it; healthy runs
// finish each step in milliseconds, so this is no timed assertion.
const stepLimit = 30 * time.Second

// connect opens n clients in order and checks the hub numbered them 1..n (a fresh hub numbers
// connections in accept order; asking each id before the next connects makes that order ours).
func connect(t testing.TB, hub *hubtest.Hub, n int) []*client.Client {
	t.Helper()
	clients := make([]*client.Client, n)
	for i := range clients {
		c := client.New()
		if err := c.Connect(hub.RelayAddr); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		id, err := c.WhoAmI()
		if err != nil {
			t.Fatal(err)
		}
		if id != uint64(i+1) {
			t.Fatalf("client %d got id %d, want %d", i+1, id, i+1)
		}
		clients[i] = c
	}
	return clients
}

// handle starts HandleIncomingMessages for c into a fresh channel.
func handle(c *client.Client, capacity int) chan client.IncomingMessage {
	ch := make(chan client.IncomingMessage, capacity)
	go c.HandleIncomingMessages(ch)
	return ch
}

func receive(t testing.TB, ch <-chan client.IncomingMessage) client.IncomingMessage {
	t.Helper()
	select {
	case msg := <-ch:
		return msg
	case <-time.After(stepLimit):
		t.Fatalf("no delivery within %v", stepLimit)
		return client.IncomingMessage{}
	}
}

func ids(from, to uint64) []uint64 {
	var out []uint64
	for id := from; id <= to; id++ {
		out = append(out, id)
	}
	return out
}

// The original assignment's integration test: ids 1, 2, 3; each lists the other two in ascending
// order; client 1 relays "Hello world!" to 2 and 3, who receive it from sender 1.
func TestAssignmentIntegrationScenario(t *testing.T) {
	hub := hubtest.Start(t)
	clients := connect(t, hub, 3)
	for i, c := range clients {
		got, err := c.ListClientIDs()
		if err != nil {
			t.Fatal(err)
		}
		var want []uint64
		for _, id := range ids(1, 3) {
			if id != uint64(i+1) {
				want = append(want, id)
			}
		}
		if !reflect.DeepEqual(got, want) {
			t.Fatalf("client %d lists %v, want %v", i+1, got, want)
		}
	}
	inbox2, inbox3 := handle(clients[1], 1), handle(clients[2], 1)
	body := []byte("Hello world!")
	if err := clients[0].SendMsg([]uint64{2, 3}, body); err != nil {
		t.Fatal(err)
	}
	for name, inbox := range map[string]chan client.IncomingMessage{"client 2": inbox2, "client 3": inbox3} {
		msg := receive(t, inbox)
		if msg.SenderID != 1 || !bytes.Equal(msg.Body, body) {
			t.Fatalf("%s received %d %q, want 1 %q", name, msg.SenderID, msg.Body, body)
		}
	}
}

// Deliveries that arrive before HandleIncomingMessages is called are kept and handed over in order.
func TestDeliveriesBeforeHandlerAreKept(t *testing.T) {
	hub := hubtest.Start(t)
	clients := connect(t, hub, 2)
	const count = 100
	for i := 0; i < count; i++ {
		if err := clients[0].SendMsg([]uint64{2}, []byte{byte(i)}); err != nil {
			t.Fatal(err)
		}
	}
	// A reply after the deliveries proves they reached client 2's reader: one sender's frames and
	// the hub's replies to client 2 are both in order, and the relays were written before this LIST.
	if _, err := clients[0].ListClientIDs(); err != nil {
		t.Fatal(err)
	}
	if _, err := clients[1].ListClientIDs(); err != nil {
		t.Fatal(err)
	}
	inbox := handle(clients[1], 0)
	for i := 0; i < count; i++ {
		if msg := receive(t, inbox); msg.SenderID != 1 || !bytes.Equal(msg.Body, []byte{byte(i)}) {
			t.Fatalf("delivery %d is %d %v", i, msg.SenderID, msg.Body)
		}
	}
}

// 255 receivers and a 1 MiB body, the largest relay, arrive intact at every receiver.
func TestLargestRelayArrivesIntact(t *testing.T) {
	hub := hubtest.Start(t)
	clients := connect(t, hub, 1+client.MaxReceivers)
	var wg sync.WaitGroup
	inboxes := make([]chan client.IncomingMessage, len(clients))
	for i := 1; i < len(clients); i++ {
		inboxes[i] = handle(clients[i], 1)
	}
	body := make([]byte, client.MaxBodySize)
	for i := range body {
		body[i] = byte(i * 7)
	}
	if err := clients[0].SendMsg(ids(2, 1+client.MaxReceivers), body); err != nil {
		t.Fatal(err)
	}
	errs := make(chan string, len(clients))
	for i := 1; i < len(clients); i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			select {
			case msg := <-inboxes[i]:
				if msg.SenderID != 1 || !bytes.Equal(msg.Body, body) {
					errs <- "a receiver got a different body or sender"
				}
			case <-time.After(stepLimit):
				errs <- "a receiver got nothing"
			}
		}(i)
	}
	wg.Wait()
	close(errs)
	for e := range errs {
		t.Fatal(e)
	}
}

// SendMsg refuses locally what the hub would refuse, and the connection stays usable.
func TestSendMsgChecksLimitsBeforeWriting(t *testing.T) {
	hub := hubtest.Start(t)
	c := connect(t, hub, 1)[0]
	tooMany := ids(1, client.MaxReceivers+1)
	for name, err := range map[string]error{
		"no receivers":           c.SendMsg(nil, []byte("x")),
		"256 receivers":          c.SendMsg(tooMany, []byte("x")),
		"1 MiB + 1 byte of body": c.SendMsg([]uint64{1}, make([]byte, client.MaxBodySize+1)),
	} {
		if err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
	if id, err := c.WhoAmI(); err != nil || id != 1 {
		t.Fatalf("after refused relays WhoAmI gives %d, %v; want 1", id, err)
	}
}

// A repeated receiver id is delivered once (docs/protocol.md, "Semantics": each distinct receiver
// gets exactly one DELIVER), and the sender naming itself is skipped.
func TestRepeatedReceiverIsDeliveredOnce(t *testing.T) {
	hub := hubtest.Start(t)
	clients := connect(t, hub, 2)
	inbox1, inbox2 := handle(clients[0], 4), handle(clients[1], 4)
	if err := clients[0].SendMsg([]uint64{2, 2, 1, 2}, []byte("once")); err != nil {
		t.Fatal(err)
	}
	// A second relay from the same sender arrives after every copy of the first would have.
	if err := clients[0].SendMsg([]uint64{2}, []byte("after")); err != nil {
		t.Fatal(err)
	}
	if msg := receive(t, inbox2); string(msg.Body) != "once" {
		t.Fatalf("first delivery %q, want \"once\"", msg.Body)
	}
	if msg := receive(t, inbox2); string(msg.Body) != "after" {
		t.Fatalf("second delivery %q, want \"after\": a repeated id was delivered twice", msg.Body)
	}
	// Client 1 hears from itself only if the hub broke the self-skip; client 2 relaying to 1 orders it.
	if err := clients[1].SendMsg([]uint64{1}, []byte("from 2")); err != nil {
		t.Fatal(err)
	}
	if msg := receive(t, inbox1); msg.SenderID != 2 {
		t.Fatalf("client 1 received its own relay: %d %q", msg.SenderID, msg.Body)
	}
}

// A context that ends abandons the wait, not the connection.
func TestContextVariantsGiveUpAndKeepTheConnection(t *testing.T) {
	hub := hubtest.Start(t)
	c := connect(t, hub, 1)[0]
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := c.WhoAmIContext(ctx); !errors.Is(err, context.Canceled) {
		t.Fatalf("WhoAmIContext with a cancelled context: %v", err)
	}
	if err := c.SendMsgContext(ctx, []uint64{1}, nil); !errors.Is(err, context.Canceled) {
		t.Fatalf("SendMsgContext with a cancelled context: %v", err)
	}
	if got, err := c.ListClientIDsContext(context.Background()); err != nil || len(got) != 0 {
		t.Fatalf("ListClientIDs afterwards: %v, %v", got, err)
	}
}

// Calls after Close and before Connect say why they cannot work.
func TestCallsOutsideAConnection(t *testing.T) {
	c := client.New()
	if _, err := c.WhoAmI(); !errors.Is(err, client.ErrNotConnected) {
		t.Fatalf("WhoAmI before Connect: %v", err)
	}
	if err := c.Close(); err != nil {
		t.Fatalf("Close before Connect: %v", err)
	}
	if err := c.SendMsg([]uint64{1}, nil); !errors.Is(err, client.ErrClosed) {
		t.Fatalf("SendMsg after Close: %v", err)
	}
}

// A hub that stops closes its connections without an ERROR frame: every call then says so with an
// error callers can test for (errors.Is), not only a text.
func TestAHubThatStopsGivesErrHubClosed(t *testing.T) {
	hub := hubtest.Start(t)
	c := connect(t, hub, 1)[0]
	hub.Stop(t)
	deadline := time.Now().Add(stepLimit)
	var err error
	for time.Now().Before(deadline) {
		if _, err = c.WhoAmI(); err != nil {
			break
		}
	}
	if !errors.Is(err, client.ErrHubClosed) {
		t.Fatalf("WhoAmI after the hub stopped: %v", err)
	}
	if err := c.SendMsg([]uint64{1}, []byte("x")); !errors.Is(err, client.ErrHubClosed) {
		t.Fatalf("SendMsg after the hub stopped: %v", err)
	}
}

// Many goroutines share one client: every reply reaches its own caller (run with -race).
func TestConcurrentRequests(t *testing.T) {
	hub := hubtest.Start(t)
	clients := connect(t, hub, 3)
	var wg sync.WaitGroup
	errs := make(chan error, 64)
	for g := 0; g < 16; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 50; i++ {
				if id, err := clients[0].WhoAmI(); err != nil || id != 1 {
					errs <- errors.New("WhoAmI gave a wrong answer or failed")
					return
				}
				if got, err := clients[0].ListClientIDs(); err != nil || !reflect.DeepEqual(got, []uint64{2, 3}) {
					errs <- errors.New("ListClientIDs gave a wrong answer or failed")
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
}
