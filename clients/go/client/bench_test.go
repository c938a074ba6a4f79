// The relay assignment's benchmark against a real hub: 100 clients; client 1 relays one body to all
// 100 ids (itself included, which the hub skips) and waits until each of the 99 others has it.
//
//	RINGHUB_BIN=$PWD/../../build/release/bin/ringhub go test -run '^$' -bench Relay -benchtime 3000x ./client
//
// Reports ns/op (one relay, 99 deliveries), deliveries/s, and the hub's and this process's CPU per
// delivery from /proc/<pid>/stat.
package client_test

import (
	"bytes"
	"os"
	"testing"
	"time"

	"ringhub/clients/go/client"
	"ringhub/clients/go/internal/hubtest"
)

// The assignment's benchmark sizes.
const (
	benchClients  = 100
	shortBodySize = 6    // "hello!"
	longBodySize  = 1900 // about 1.9 KB
)

func BenchmarkRelayShortBody(b *testing.B) { benchmarkRelay(b, []byte("hello!")) }

func BenchmarkRelayLongBody(b *testing.B) { benchmarkRelay(b, bytes.Repeat([]byte("x"), longBodySize)) }

func benchmarkRelay(b *testing.B, body []byte) {
	hub := hubtest.Start(b)
	clients := connect(b, hub, benchClients)
	inboxes := make([]chan client.IncomingMessage, 0, benchClients-1)
	for _, c := range clients[1:] {
		inboxes = append(inboxes, handle(c, 1))
	}
	everyone := ids(1, benchClients)
	hubCPUBefore, clientCPUBefore := cpuTimes(b, hub)
	b.SetBytes(int64(len(body)) * int64(len(inboxes)))
	// One timer bounds each operation's wait; a time.After per delivery would cost more than a delivery.
	watchdog := time.NewTimer(stepLimit)
	watchdog.Stop()
	b.ResetTimer()
	start := time.Now() // testing.B.Elapsed is Go 1.20+; the module builds with 1.19
	for i := 0; i < b.N; i++ {
		if err := clients[0].SendMsg(everyone, body); err != nil {
			b.Fatal(err)
		}
		watchdog.Reset(stepLimit)
		for _, inbox := range inboxes {
			select {
			case msg := <-inbox:
				if msg.SenderID != 1 || len(msg.Body) != len(body) {
					b.Fatalf("received %d bytes from %d, want %d from 1", len(msg.Body), msg.SenderID, len(body))
				}
			case <-watchdog.C:
				b.Fatalf("operation %d: not every receiver got the relay within %v", i, stepLimit)
			}
		}
		watchdog.Stop()
	}
	elapsed := time.Since(start)
	b.StopTimer()
	hubCPUAfter, clientCPUAfter := cpuTimes(b, hub)
	deliveries := float64(b.N) * float64(len(inboxes))
	b.ReportMetric(deliveries/elapsed.Seconds(), "deliveries/s")
	b.ReportMetric(float64((hubCPUAfter-hubCPUBefore).Nanoseconds())/deliveries, "hub-ns/delivery")
	// The Go side's CPU too (all 100 clients, one process), to show which side is the bottleneck.
	b.ReportMetric(float64((clientCPUAfter-clientCPUBefore).Nanoseconds())/deliveries, "client-ns/delivery")
}

// cpuTimes reads the hub's and this process's CPU time so far.
func cpuTimes(b *testing.B, hub *hubtest.Hub) (hubCPU, clientCPU time.Duration) {
	hubCPU, err := hubtest.CPUTime(hub.Pid())
	if err == nil {
		clientCPU, err = hubtest.CPUTime(os.Getpid())
	}
	if err != nil {
		b.Fatal(err)
	}
	return hubCPU, clientCPU
}
