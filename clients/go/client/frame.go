// The relay protocol's wire format (docs/protocol.md, core/protocol.hpp): frame constants, encoding of
// client frames, and a reader that decodes and checks hub frames. Pure byte work: no sockets here, so
// the fuzz and split tests drive it directly.
package client

import (
	"encoding/binary"
	"fmt"
	"io"
)

// Frame types (protocol.md, "Client → hub" and "Hub → client").
const (
	typeIdentity      byte = 0x01
	typeList          byte = 0x02
	typeRelay         byte = 0x03
	typeIdentityReply byte = 0x81
	typeListReply     byte = 0x82
	typeDeliver       byte = 0x83
	typeError         byte = 0xFF
)

// Sizes and limits, mirrored from core/protocol.hpp.
const (
	headerSize = 8 // type, count, flags (u16), length (u32), little-endian
	idSize     = 8 // a user id is a little-endian u64

	// MaxReceivers is the most receivers one RELAY names: what the one-byte count holds.
	MaxReceivers = 255
	// MaxBodySize is the largest RELAY body the hub accepts (1 MiB); one byte more gets ERROR 3.
	MaxBodySize = 1 << 20

	// The longest reason an ERROR frame carries.
	maxErrorReasonSize = 200
	// A LIST_REPLY names every other client; the hub holds at most a few hundred thousand, so 2^24 ids
	// (128 MiB) is far past any real reply and still stops a corrupt length from asking for 4 GiB.
	maxListReplyIDs = 1 << 24
)

// frame is one decoded hub frame: its type and the bytes after the header.
type frame struct {
	kind    byte
	payload []byte
}

// ProtocolError says the hub sent bytes that are no valid hub frame; the connection is dropped.
type ProtocolError struct {
	Reason string
}

func (e *ProtocolError) Error() string { return "ringhub client: protocol error: " + e.Reason }

func protocolErrorf(format string, args ...interface{}) error {
	return &ProtocolError{Reason: fmt.Sprintf(format, args...)}
}

// appendHeader appends one frame header to dst.
func appendHeader(dst []byte, kind byte, count uint8, length uint32) []byte {
	var h [headerSize]byte
	h[0] = kind
	h[1] = count
	binary.LittleEndian.PutUint32(h[4:], length)
	return append(dst, h[:]...)
}

// encodeRequest is an IDENTITY or LIST frame: a bare header.
func encodeRequest(kind byte) []byte {
	return appendHeader(make([]byte, 0, headerSize), kind, 0, 0)
}

// encodeRelay builds a RELAY frame whole, so it goes out in one write. It does not check limits:
// checkRelay does, and the limit tests use encodeRelay to send what the hub must refuse.
func encodeRelay(recipients []uint64, body []byte) []byte {
	length := len(recipients)*idSize + len(body)
	buf := make([]byte, 0, headerSize+length)
	buf = appendHeader(buf, typeRelay, uint8(len(recipients)), uint32(length))
	for _, id := range recipients {
		buf = binary.LittleEndian.AppendUint64(buf, id)
	}
	return append(buf, body...)
}

// checkRelay refuses locally what the hub would answer with an ERROR and a close.
func checkRelay(recipients []uint64, body []byte) error {
	if len(recipients) == 0 || len(recipients) > MaxReceivers {
		return fmt.Errorf("ringhub client: a relay names 1 to %d receivers, not %d", MaxReceivers, len(recipients))
	}
	if len(body) > MaxBodySize {
		return fmt.Errorf("ringhub client: a relay body holds at most %d bytes, not %d", MaxBodySize, len(body))
	}
	return nil
}

// checkHubHeader judges a hub frame by its header, before its payload is read.
func checkHubHeader(h []byte) (kind byte, length uint32, err error) {
	kind, count, flags, length := h[0], h[1], binary.LittleEndian.Uint16(h[2:]), binary.LittleEndian.Uint32(h[4:])
	if count != 0 || flags != 0 {
		return 0, 0, protocolErrorf("frame type 0x%02x with count %d and flags %d; hub frames carry 0", kind, count, flags)
	}
	ok := false
	switch kind {
	case typeIdentityReply:
		ok = length == idSize
	case typeListReply:
		ok = length%idSize == 0 && length/idSize <= maxListReplyIDs
	case typeDeliver:
		ok = length >= idSize && length <= idSize+MaxBodySize
	case typeError:
		ok = length >= 1 && length <= 1+maxErrorReasonSize
	default:
		return 0, 0, protocolErrorf("unknown hub frame type 0x%02x", kind)
	}
	if !ok {
		return 0, 0, protocolErrorf("frame type 0x%02x with impossible length %d", kind, length)
	}
	return kind, length, nil
}

// readFrame reads one whole hub frame. io.EOF means the stream ended cleanly between frames;
// io.ErrUnexpectedEOF means it ended inside one.
func readFrame(r io.Reader) (frame, error) {
	var h [headerSize]byte
	if _, err := io.ReadFull(r, h[:]); err != nil {
		return frame{}, err
	}
	kind, length, err := checkHubHeader(h[:])
	if err != nil {
		return frame{}, err
	}
	payload := make([]byte, length)
	if _, err := io.ReadFull(r, payload); err != nil {
		if err == io.EOF {
			err = io.ErrUnexpectedEOF
		}
		return frame{}, err
	}
	return frame{kind: kind, payload: payload}, nil
}

// encodeHubFrame is readFrame's inverse, for tests and the fuzz target's round trip.
func encodeHubFrame(f frame) []byte {
	return append(appendHeader(make([]byte, 0, headerSize+len(f.payload)), f.kind, 0, uint32(len(f.payload))), f.payload...)
}

// decodeIDs reads the little-endian u64 ids of an IDENTITY_REPLY or LIST_REPLY payload.
func decodeIDs(payload []byte) []uint64 {
	ids := make([]uint64, len(payload)/idSize)
	for i := range ids {
		ids[i] = binary.LittleEndian.Uint64(payload[i*idSize:])
	}
	return ids
}
