// The client over a connection whose peer writes one byte per write: a scripted listener stands in
// for the hub, so the reader meets every frame cut at every byte, on a real socket.
package client

import (
	"bytes"
	"io"
	"net"
	"reflect"
	"testing"
	"time"
)

func TestClientReassemblesFramesWrittenByteByByte(t *testing.T) {
	listener, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer listener.Close()
	deliver := encodeHubFrame(frame{typeDeliver, append([]byte{7, 0, 0, 0, 0, 0, 0, 0}, "foobar"...)})
	identity := encodeHubFrame(frame{typeIdentityReply, []byte{42, 0, 0, 0, 0, 0, 0, 0}})
	list := encodeHubFrame(frame{typeListReply, []byte{2, 0, 0, 0, 0, 0, 0, 0, 3, 0, 0, 0, 0, 0, 0, 0}})
	script := bytes.Join([][]byte{deliver, identity, deliver, list}, nil)
	hubDone := make(chan error, 1)
	go func() {
		conn, err := listener.Accept()
		if err != nil {
			hubDone <- err
			return
		}
		defer conn.Close()
		requests := make([]byte, 2*headerSize) // IDENTITY then LIST, read before any reply is written
		if _, err := io.ReadFull(conn, requests[:headerSize]); err != nil {
			hubDone <- err
			return
		}
		for i := range script {
			if i == len(deliver)+len(identity)+len(deliver) { // LIST must have been asked before its reply
				if _, err := io.ReadFull(conn, requests[headerSize:]); err != nil {
					hubDone <- err
					return
				}
			}
			if _, err := conn.Write(script[i : i+1]); err != nil {
				hubDone <- err
				return
			}
		}
		hubDone <- nil
	}()
	c := New()
	if err := c.Connect(listener.Addr().(*net.TCPAddr)); err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	inbox := make(chan IncomingMessage, 2)
	go c.HandleIncomingMessages(inbox)
	if id, err := c.WhoAmI(); err != nil || id != 42 {
		t.Fatalf("WhoAmI: %d, %v; want 42", id, err)
	}
	if ids, err := c.ListClientIDs(); err != nil || !reflect.DeepEqual(ids, []uint64{2, 3}) {
		t.Fatalf("ListClientIDs: %v, %v; want [2 3]", ids, err)
	}
	for i := 0; i < 2; i++ {
		select {
		case msg := <-inbox:
			if msg.SenderID != 7 || string(msg.Body) != "foobar" {
				t.Fatalf("delivery %d: %d %q", i, msg.SenderID, msg.Body)
			}
		case <-time.After(30 * time.Second):
			t.Fatal("no delivery within 30 s")
		}
	}
	if err := <-hubDone; err != nil {
		t.Fatal(err)
	}
}
