"""The chunked-body decoder and line batching the providers read with (no socket)."""

import io
import socket

import pytest
from urllib3.exceptions import ProtocolError, ReadTimeoutError

from piagent.providers.chunked import MAX_LINE, arrived, chunked_reads, line_batches


def chunked(*pieces: bytes, trailer: bytes = b"") -> bytes:
    body = b"".join(b"%x\r\n%s\r\n" % (len(p), p) for p in pieces)
    return body + b"0\r\n" + trailer + b"\r\n"


class Reads:
    """What the connection delivered: each call returns the next piece."""

    def __init__(self, *pieces):
        self.pieces = list(pieces)
        self.calls = 0

    def __call__(self) -> bytes:
        self.calls += 1
        piece = self.pieces.pop(0) if self.pieces else b""
        if isinstance(piece, BaseException):
            raise piece
        return piece


def decoded(*pieces) -> list[bytes]:
    return list(chunked_reads(Reads(*pieces)))


def test_chunks_that_arrived_together_come_out_as_one_piece():
    body = chunked(b'{"a":1}\n', b'{"b":2}\n', b'{"c":3}\n')
    assert decoded(body) == [b'{"a":1}\n{"b":2}\n{"c":3}\n']


def test_a_chunk_that_arrived_alone_is_not_held_for_more():
    reads = Reads(b"4\r\none\n\r\n", b"4\r\ntwo\n\r\n0\r\n\r\n")
    pieces = chunked_reads(reads)
    assert next(pieces) == b"one\n" and reads.calls == 1
    assert list(pieces) == [b"two\n"]


@pytest.mark.parametrize("size", [1, 2, 3, 5, 7, 64])
def test_a_body_split_anywhere_decodes_to_the_same_bytes(size):
    body = chunked("Grüß 🙂\n".encode(), b"x" * 300, b"\n", trailer=b"X-T: 1\r\n")
    pieces = [body[i : i + size] for i in range(0, len(body), size)]
    assert b"".join(decoded(*pieces)) == "Grüß 🙂\n".encode() + b"x" * 300 + b"\n"


def test_extensions_and_trailers_are_accepted_and_nothing_is_read_after_the_end():
    body = b"3;name=value\r\nabc\r\n0\r\nX-Checksum: 1\r\nX-Other: 2\r\n\r\n"
    reads = Reads(body, b"never read")
    assert list(chunked_reads(reads)) == [b"abc"]
    assert reads.calls == 1


@pytest.mark.parametrize(
    "body",
    [
        b"zz\r\nab\r\n0\r\n\r\n",
        b"-1\r\nab\r\n0\r\n\r\n",
        b"0x2\r\nab\r\n0\r\n\r\n",
        b"+2\r\nab\r\n0\r\n\r\n",
        b"1_0\r\nab\r\n0\r\n\r\n",
        b"\r\nab\r\n0\r\n\r\n",
        b"2\r\nabXY0\r\n\r\n",
        b"fffffffffff\r\n",
    ],
    ids=["not-hex", "negative", "0x", "plus", "underscore", "empty", "no-crlf", "huge"],
)
def test_bad_framing_is_a_protocol_error(body):
    with pytest.raises(ProtocolError):
        decoded(body)


def test_chunks_that_arrived_whole_before_bad_framing_come_out_first():
    pieces = chunked_reads(Reads(b"3\r\nabc\r\n2\r\nxyZZ\r\n"))
    assert next(pieces) == b"abc"
    with pytest.raises(ProtocolError, match="CRLF"):
        next(pieces)


def test_a_size_line_without_end_is_refused_once_too_long():
    with pytest.raises(ProtocolError, match="too long"):
        decoded(b"1" * (MAX_LINE + 1))


def test_a_trailer_without_end_is_refused_once_too_long():
    with pytest.raises(ProtocolError, match="trailer"):
        decoded(b"0\r\n" + b"X: " + b"y" * (MAX_LINE + 10))


def test_a_connection_that_closes_mid_body_is_a_protocol_error():
    reads = Reads(b"4\r\none\n\r\n", b"4\r\ntw")
    pieces = chunked_reads(reads)
    assert next(pieces) == b"one\n"
    with pytest.raises(ProtocolError, match="closed"):
        next(pieces)


def test_a_read_timeout_and_a_reset_are_urllib3s_errors():
    with pytest.raises(ReadTimeoutError):
        decoded(TimeoutError("timed out"))
    with pytest.raises(ProtocolError, match="Connection broken"):
        decoded(b"4\r\none\n\r\n", ConnectionResetError(104, "reset"))


def test_lines_that_arrived_together_come_out_as_one_batch():
    batches = list(line_batches(iter([b"a\nb\n\n  \nc\n", b"d\n", b"e"])))
    assert batches == [[b"a", b"b", b"c"], [b"d\n"], [b"e"]]


def test_a_line_split_across_pieces_waits_for_its_end():
    batches = list(line_batches(iter([b"ab", b"c\nd", b"e\n"])))
    assert batches == [[b"abc"], [b"de\n"]]


def test_blank_pieces_make_no_batch():
    assert list(line_batches(iter([b"\n", b"  \n", b"", b" "]))) == []


def test_arrived_returns_what_the_socket_delivered_then_nothing_at_its_end():
    left, right = socket.socketpair()
    with left, right:
        file = left.makefile("rb")
        right.sendall(b"first")
        assert arrived(file) == b"first"
        right.sendall(b"second and third")
        assert arrived(file) == b"second and third"
        right.close()
        assert arrived(file) == b""


def test_arrived_hands_out_what_the_file_had_buffered_first():
    file = io.BufferedReader(io.BytesIO(b"HTTP/1.1 200 OK\r\n\r\nbody"), 64)
    assert file.readline() == b"HTTP/1.1 200 OK\r\n"
    assert arrived(file) == b"\r\nbody"
