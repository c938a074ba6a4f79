// Compile-only proof that code written against the original relay-hub assignment's client moves over
// by changing its import path: the assignment's interface is satisfied, and its calls, written the
// way its integration test writes them, type-check against this package.
package client_test

import (
	"net"

	"ringhub/clients/go/client" // the assignment's import path, changed to this module's
)

// assignmentClient is the method set of the assignment's client stub, signature for signature.
type assignmentClient interface {
	Connect(serverAddr *net.TCPAddr) error
	Close() error
	WhoAmI() (uint64, error)
	ListClientIDs() ([]uint64, error)
	SendMsg(recipients []uint64, body []byte) error
	HandleIncomingMessages(writeCh chan<- client.IncomingMessage)
}

var _ assignmentClient = client.New()

// Example shows the assignment's calls in its own style. It has no Output comment, so `go test`
// compiles it but does not run it (it needs a hub on 127.0.0.1:7400).
func Example() {
	serverAddr, err := net.ResolveTCPAddr("tcp", "127.0.0.1:7400")
	if err != nil {
		panic(err)
	}
	c := client.New()
	if err := c.Connect(serverAddr); err != nil {
		panic(err)
	}
	defer c.Close()

	incoming := make(chan client.IncomingMessage)
	go c.HandleIncomingMessages(incoming)

	id, _ := c.WhoAmI()
	others, _ := c.ListClientIDs()
	if err := c.SendMsg(others, []byte("Hello world!")); err != nil {
		panic(err)
	}
	msg := <-incoming
	_ = msg.SenderID == id
	_ = client.IncomingMessage{SenderID: msg.SenderID, Body: msg.Body}
}
