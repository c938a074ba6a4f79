#!/usr/bin/env python3
"""Writes the seed corpora of the fuzz targets into tests/fuzz/corpus/<target>/ (run from anywhere;
rewrites only the files it names). Layout of every input (tests/fuzz/fuzz_input.hpp): byte 0 = cut count
(low nibble) | mode (high nibble), then 2 bytes per cut (u16 little-endian), then the stream.

    python3 tests/fuzz/make_corpus.py
"""
import pathlib
import struct

CORPUS = pathlib.Path(__file__).resolve().parent / "corpus"


def fuzz_input(stream, cuts=(), mode=0):
    head = bytes([(mode << 4) | len(cuts)])
    return head + b"".join(struct.pack("<H", c) for c in cuts) + stream


def header(ftype, count, flags, length):
    return struct.pack("<BBHI", ftype, count, flags, length)


def relay(receivers, body):
    ids = b"".join(struct.pack("<Q", r) for r in receivers)
    return header(0x03, len(receivers), 0, len(ids) + len(body)) + ids + body


IDENTITY = header(0x01, 0, 0, 0)
LIST = header(0x02, 0, 0, 0)


def client_streams():
    """Streams of client frames, well formed and broken (one per documented error code)."""
    return {
        "identity": IDENTITY,
        "list": LIST,
        "relay_foobar": relay([2, 3], b"foobar"),  # the docs/protocol.md example
        "relay_empty_body": relay([7], b""),
        "mixed": relay([11, 22, 33], bytes(range(20))) + IDENTITY + relay([44], b"hello") + LIST,
        "partial_tail": relay([1], b"abcdef") + relay([2], b"0123456789")[:13],
        "big_announced": header(0x03, 1, 0, 8 + (1 << 20)) + struct.pack("<Q", 5) + b"x" * 40,
        "err1_unknown_type": IDENTITY + header(0x83, 0, 0, 0),
        "err2_relay_count0": header(0x03, 0, 0, 8),
        "err2_list_count": header(0x02, 1, 0, 0),
        "err3_too_large": header(0x03, 1, 0, 8 + (1 << 20) + 1),
        "err4_short_relay": header(0x03, 2, 0, 15),
        "err4_identity_length": header(0x01, 0, 0, 4) + b"abcd",
        "err5_flags": header(0x01, 0, 1, 0),
        "max_receivers": relay(list(range(1, 256)), b"z" * 3),
    }


def assembler_corpus():
    out = {}
    for name, stream in client_streams().items():
        out[name + "_whole"] = fuzz_input(stream)
        n = len(stream)
        out[name + "_cuts"] = fuzz_input(stream, cuts=sorted({1, n // 3, n // 2, max(n - 1, 0)}), mode=0)
        out[name + "_direct"] = fuzz_input(stream, cuts=(3, 9, 17, 40), mode=1)
        out[name + "_offset"] = fuzz_input(stream, cuts=(8,), mode=2)
    return out


def codec_corpus():
    out = {name: fuzz_input(stream) for name, stream in client_streams().items()}
    out["reply_ids"] = fuzz_input(struct.pack("<QQQ", 1, 2, 3))
    out["error_reason"] = fuzz_input(bytes([5]) + b"nonzero flags" + b"r" * 220)
    return out


def hub_streams():
    """Streams of hub frames, well formed and broken (one per reader error)."""
    def ids(*values):
        return b"".join(struct.pack("<Q", v) for v in values)

    def deliver(sender, body):
        return header(0x83, 0, 0, 8 + len(body)) + ids(sender) + body

    def error(code, reason):
        return header(0xFF, 0, 0, 1 + len(reason)) + bytes([code]) + reason

    identity_reply = header(0x81, 0, 0, 8) + ids(1)
    list_reply = header(0x82, 0, 0, 16) + ids(2, 3)
    return {
        "identity_reply": identity_reply,
        "list_reply": list_reply,
        "list_empty": header(0x82, 0, 0, 0),
        "deliver_foobar": deliver(1, b"foobar"),  # the docs/protocol.md example
        "deliver_empty": deliver(4, b""),
        "error_flags": error(5, b"nonzero flags"),
        "error_max_reason": error(6, b"r" * 200),
        "mixed": identity_reply + deliver(9, bytes(range(40))) + list_reply + error(6, b"slow consumer"),
        "partial_deliver": deliver(2, b"0123456789")[:20],
        "bad_type": identity_reply + header(0x03, 1, 0, 8) + ids(1),
        "bad_count": header(0x83, 1, 0, 8) + ids(1),
        "bad_flags": header(0x81, 0, 2, 8) + ids(1),
        "bad_length_identity": header(0x81, 0, 0, 4) + b"abcd",
        "bad_length_list": header(0x82, 0, 0, 12) + b"x" * 12,
        "too_large_deliver": header(0x83, 0, 0, 8 + (1 << 20) + 1) + ids(1),
        "too_large_error": error(1, b"e" * 201),
    }


def reader_corpus():
    out = {}
    for name, stream in hub_streams().items():
        n = len(stream)
        out[name] = fuzz_input(stream, mode=15)  # the default 64 MiB LIST_REPLY cap
        out[name + "_cuts"] = fuzz_input(stream, cuts=sorted({1, 9, n // 2, max(n - 1, 0)}), mode=15)
        out[name + "_cap8"] = fuzz_input(stream, cuts=(3, 17), mode=1)  # LIST_REPLY cap: one id
    return out


def line_corpus():
    text = {
        "message_ok": b"message hello\nok hello\n",
        "crlf": b"message a b c\r\nok a b c\r\n",
        "unknown": b"hello\n\nmessage \nok \nmessage\n",
        "double_cr": b"message x\r\r\nok x\r\n",
        "partial": b"message one\nmessage tw",
        "binary": b"message \x00\xff\x80\r\n",
    }
    out = {}
    for name, stream in text.items():
        out[name] = fuzz_input(stream, mode=15)  # the default 64 KiB cap
        out[name + "_cuts"] = fuzz_input(stream, cuts=(1, 5, 9, 14), mode=15)
        out[name + "_cap8"] = fuzz_input(stream, cuts=(4, 11), mode=7)  # cap 8: long lines fail
    out["too_long_cap3"] = fuzz_input(b"ok a\nok abcd\nok b\n", cuts=(2, 6), mode=3)
    out["cap_with_cr"] = fuzz_input(b"12345678\r", cuts=(8,), mode=7)
    return out


def http_corpus():
    requests = {
        "metrics": b"GET /metrics HTTP/1.1\r\nHost: 127.0.0.1:7402\r\nAccept: */*\r\n\r\n",
        "healthz_head": b"HEAD /healthz HTTP/1.0\r\n\r\n",
        "query": b"GET /metrics?x=1 HTTP/1.1\nUser-Agent: Prometheus/2.45\n\n",
        "post": b"POST /metrics HTTP/1.1\r\nContent-Length: 3\r\n\r\nabc",
        "bad_version": b"GET / HTTP/2.0\r\n\r\n",
        "bad_header": b"GET / HTTP/1.1\r\nno colon here\r\n\r\n",
        "pipelined": b"GET /a HTTP/1.1\r\n\r\nGET /b HTTP/1.1\r\n\r\n",
    }
    out = {}
    for name, stream in requests.items():
        out[name] = fuzz_input(stream, mode=15)  # the default 8 KiB cap
        out[name + "_cuts"] = fuzz_input(stream, cuts=(1, 4, 13, 20, 30), mode=15)
        out[name + "_cap32"] = fuzz_input(stream, cuts=(10, 31), mode=7)  # cap 32: 431 for most
    return out


def write(target, inputs):
    folder = CORPUS / target
    folder.mkdir(parents=True, exist_ok=True)
    for name, data in inputs.items():
        (folder / name).write_bytes(data)
    print(f"{target}: {len(inputs)} seeds in {folder}")


def main():
    write("client_frame_reader_fuzz", reader_corpus())
    write("frame_assembler_fuzz", assembler_corpus())
    write("frame_codec_fuzz", codec_corpus())
    write("line_protocol_fuzz", line_corpus())
    write("http_request_fuzz", http_corpus())


if __name__ == "__main__":
    main()
