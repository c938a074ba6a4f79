// Hub-frame decoding: the protocol.md examples, every split of a stream into two reads, one byte per
// read, refused headers, and a native fuzz target (Go 1.18+) that round-trips whatever it decodes.
package client

import (
	"bytes"
	"errors"
	"io"
	"reflect"
	"testing"
	"testing/iotest"
)

// The hub→client examples of docs/protocol.md, byte for byte.
var protocolExamples = [][]byte{
	{0x81, 0, 0, 0, 8, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0},
	{0x82, 0, 0, 0, 16, 0, 0, 0, 2, 0, 0, 0, 0, 0, 0, 0, 3, 0, 0, 0, 0, 0, 0, 0},
	{0x82, 0, 0, 0, 0, 0, 0, 0},
	append([]byte{0x83, 0, 0, 0, 14, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0}, "foobar"...),
	append([]byte{0xff, 0, 0, 0, 14, 0, 0, 0, 5}, "nonzero flags"...),
}

func exampleStream() []byte {
	return bytes.Join(protocolExamples, nil)
}

// readAll decodes frames until the stream ends; the error is nil only for a clean end between frames.
func readAll(r io.Reader) ([]frame, error) {
	var frames []frame
	for {
		f, err := readFrame(r)
		if err == io.EOF {
			return frames, nil
		}
		if err != nil {
			return frames, err
		}
		frames = append(frames, f)
	}
}

func TestReadFrameDecodesProtocolExamples(t *testing.T) {
	frames, err := readAll(bytes.NewReader(exampleStream()))
	if err != nil {
		t.Fatal(err)
	}
	want := []frame{
		{typeIdentityReply, []byte{1, 0, 0, 0, 0, 0, 0, 0}},
		{typeListReply, []byte{2, 0, 0, 0, 0, 0, 0, 0, 3, 0, 0, 0, 0, 0, 0, 0}},
		{typeListReply, []byte{}},
		{typeDeliver, append([]byte{1, 0, 0, 0, 0, 0, 0, 0}, "foobar"...)},
		{typeError, append([]byte{5}, "nonzero flags"...)},
	}
	if !reflect.DeepEqual(frames, want) {
		t.Fatalf("decoded %v, want %v", frames, want)
	}
	if ids := decodeIDs(frames[1].payload); !reflect.DeepEqual(ids, []uint64{2, 3}) {
		t.Fatalf("LIST_REPLY ids %v, want [2 3]", ids)
	}
}

// The stream cut into two reads at every byte decodes to the same frames as the stream whole.
func TestReadFrameSplitAtEveryByte(t *testing.T) {
	stream := exampleStream()
	whole, err := readAll(bytes.NewReader(stream))
	if err != nil {
		t.Fatal(err)
	}
	for cut := 0; cut <= len(stream); cut++ {
		r := io.MultiReader(bytes.NewReader(stream[:cut]), bytes.NewReader(stream[cut:]))
		got, err := readAll(r)
		if err != nil || !reflect.DeepEqual(got, whole) {
			t.Fatalf("cut at %d: got %v, %v; want %v", cut, got, err, whole)
		}
	}
	got, err := readAll(iotest.OneByteReader(bytes.NewReader(stream)))
	if err != nil || !reflect.DeepEqual(got, whole) {
		t.Fatalf("one byte per read: got %v, %v", got, err)
	}
}

// A stream that stops inside a frame is an unexpected EOF at every cut, never a silent clean end.
func TestReadFrameTruncatedIsUnexpectedEOF(t *testing.T) {
	stream := exampleStream()
	frameEnds := map[int]bool{}
	end := 0
	for _, f := range protocolExamples {
		end += len(f)
		frameEnds[end] = true
	}
	for cut := 1; cut < len(stream); cut++ {
		if frameEnds[cut] {
			continue
		}
		_, err := readAll(bytes.NewReader(stream[:cut]))
		if !errors.Is(err, io.ErrUnexpectedEOF) {
			t.Fatalf("cut at %d: got %v, want io.ErrUnexpectedEOF", cut, err)
		}
	}
}

func TestReadFrameRefusesImpossibleHeaders(t *testing.T) {
	cases := map[string][]byte{
		"client frame type":        {0x01, 0, 0, 0, 0, 0, 0, 0},
		"nonzero count":            {0x82, 1, 0, 0, 0, 0, 0, 0},
		"nonzero flags":            {0x82, 0, 1, 0, 0, 0, 0, 0},
		"identity not 8 bytes":     {0x81, 0, 0, 0, 4, 0, 0, 0},
		"list not a multiple of 8": {0x82, 0, 0, 0, 9, 0, 0, 0},
		"deliver without sender":   {0x83, 0, 0, 0, 7, 0, 0, 0},
		"deliver over 1 MiB":       {0x83, 0, 0, 0, 9, 0, 0x10, 0},
		"empty error":              {0xff, 0, 0, 0, 0, 0, 0, 0},
		"error reason too long":    {0xff, 0, 0, 0, 202, 0, 0, 0},
	}
	for name, header := range cases {
		_, err := readFrame(bytes.NewReader(header))
		var protoErr *ProtocolError
		if !errors.As(err, &protoErr) {
			t.Errorf("%s: got %v, want a *ProtocolError", name, err)
		}
	}
}

// Whatever bytes arrive, the reader never panics, and every frame it accepts re-encodes to exactly the
// bytes it consumed.
func FuzzReadFrame(f *testing.F) {
	for _, example := range protocolExamples {
		f.Add(example)
	}
	f.Add(exampleStream())
	f.Fuzz(func(t *testing.T, data []byte) {
		r := bytes.NewReader(data)
		for {
			before := int(r.Size()) - r.Len()
			fr, err := readFrame(r)
			if err != nil {
				return
			}
			consumed := data[before : int(r.Size())-r.Len()]
			if again := encodeHubFrame(fr); !bytes.Equal(again, consumed) {
				t.Fatalf("frame %v re-encodes to %x, read from %x", fr, again, consumed)
			}
		}
	})
}

func TestCheckRelayLimits(t *testing.T) {
	ids := func(n int) []uint64 {
		out := make([]uint64, n)
		for i := range out {
			out[i] = uint64(i + 1)
		}
		return out
	}
	if err := checkRelay(ids(MaxReceivers), make([]byte, MaxBodySize)); err != nil {
		t.Errorf("the largest relay is refused: %v", err)
	}
	if err := checkRelay(ids(1), nil); err != nil {
		t.Errorf("an empty body is refused: %v", err)
	}
	for name, err := range map[string]error{
		"no receivers":          checkRelay(nil, []byte("x")),
		"256 receivers":         checkRelay(ids(MaxReceivers+1), []byte("x")),
		"body one byte too big": checkRelay(ids(1), make([]byte, MaxBodySize+1)),
	} {
		if err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}

// encodeRelay writes the protocol.md RELAY example byte for byte.
func TestEncodeRelayMatchesProtocolExample(t *testing.T) {
	want := append([]byte{3, 2, 0, 0, 0x16, 0, 0, 0, 2, 0, 0, 0, 0, 0, 0, 0, 3, 0, 0, 0, 0, 0, 0, 0}, "foobar"...)
	if got := encodeRelay([]uint64{2, 3}, []byte("foobar")); !bytes.Equal(got, want) {
		t.Fatalf("got %x, want %x", got, want)
	}
}
