"""A chunked HTTP body read as whatever has arrived, in as few reads as it takes.

urllib3 decodes a chunked body one chunk at a time: a readline for the size,
a read for the data, a readline for its CRLF, each through several Python
layers. A model server sends one NDJSON or SSE line per chunk, so that is
three calls and a generator step per token, and each token then becomes a
write of its own to the client. When the model is faster than the client, or
a whole short reply is already in the socket buffer, one read returns many
chunks; decoding them together and handing them on as one batch lets the
server write them in one system call. A token that arrives alone is still
handed on at once: nothing here waits for more.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from io import BufferedReader

from urllib3.exceptions import ProtocolError, ReadTimeoutError

# A chunk-size line or a trailer longer than this is not a model server's.
MAX_LINE = 4096
# Chunks are only decoded whole; a model server's are a line each.
MAX_CHUNK = 16 * 1024 * 1024


def chunked_reads(arrived: Callable[[], bytes]) -> Iterator[bytes]:
    """The data of the complete chunks each read brought, until the last chunk.

    `arrived` returns what the connection has delivered (blocking until there
    is something) and b"" at its end; see `arrived`. Framing errors, a
    connection that closes mid-body and socket errors are raised as urllib3's
    ProtocolError, a read timeout as its ReadTimeoutError, as urllib3's own
    chunk reader would.
    """
    pending = b""
    while True:
        data = _read(arrived)
        if pending:
            data = pending + data
        pending, chunks, ended, error = _decode(data)
        if chunks:
            yield chunks
        if error is not None:
            raise error
        if ended:
            return


def arrived(file: BufferedReader) -> bytes:
    """Whatever a buffered socket file holds, or what one blocking read brings.

    `peek` reads into the file's own buffer, so a stream waiting for its next
    token holds no buffer of its own: with `read1(64 KiB)` each of a thousand
    waiting streams would hold 64 KiB.
    """
    return file.read1(len(file.peek(1)))


def _read(arrived: Callable[[], bytes]) -> bytes:
    try:
        data = arrived()
    except TimeoutError as exc:
        # The pool is typed as required, but urllib3's own chunk reader passes
        # its response's, which may be None too, and nothing reads it.
        raise ReadTimeoutError(None, None, "Read timed out.") from exc  # type: ignore[arg-type]  # no pool here, as in urllib3
    except OSError as exc:
        raise ProtocolError(f"Connection broken: {exc!r}", exc) from exc
    if not data:
        raise ProtocolError("the connection closed inside a chunked body")
    return data


def _decode(data: bytes) -> tuple[bytes, bytes, bool, ProtocolError | None]:
    """(the undecoded rest, the data of all complete chunks, whether the body
    ended, the framing error that stopped decoding): chunks that arrived whole
    before bad framing are still handed out, as text before a bad line is."""
    out: list[bytes] = []
    pos = 0
    end = len(data)
    try:
        while pos < end:
            eol = data.find(b"\r\n", pos, pos + MAX_LINE)
            if eol < 0:
                if end - pos >= MAX_LINE:
                    raise ProtocolError("chunk size line too long")
                break
            size = _size(data[pos:eol])
            start = eol + 2
            if size == 0:
                if not _trailer_complete(data, eol):
                    break
                return b"", b"".join(out), True, None
            stop = start + size
            if stop + 2 > end:
                break
            if data[stop : stop + 2] != b"\r\n":
                raise ProtocolError("chunk data not followed by CRLF")
            out.append(data[start:stop])
            pos = stop + 2
    except ProtocolError as exc:
        return b"", b"".join(out), False, exc
    return data[pos:], b"".join(out), False, None


def _size(line: bytes) -> int:
    digits = line.split(b";", 1)[0].strip()
    if not digits or digits.strip(b"0123456789abcdefABCDEF"):
        raise ProtocolError(f"invalid chunk size {line[:40]!r}")
    size = int(digits, 16)
    if size > MAX_CHUNK:
        raise ProtocolError(f"chunk of {size} bytes is too large")
    return size


def _trailer_complete(data: bytes, eol: int) -> bool:
    """Whether the (usually empty) trailer after the last chunk's size line,
    which ends at `eol`, has all arrived."""
    if data.startswith(b"\r\n", eol + 2) or data.find(b"\r\n\r\n", eol) >= 0:
        return True
    if len(data) - eol > MAX_LINE:
        raise ProtocolError("trailer too long")
    return False


def line_batches(reads: Iterator[bytes]) -> Iterator[list[bytes]]:
    """The complete, non-blank lines each piece of body brought, as one list.

    A line split across reads is held until its end arrives; requests'
    iter_lines can also hold a finished line back until more bytes come
    (psf/requests#2433), which would delay tokens.
    """
    pending = b""
    for data in reads:
        if pending:
            data = pending + data
        # The common case, one line: no split, no list of parts (0.4 us
        # instead of 1.4 us a read, against ~4 us of CPU per relayed token).
        if data.endswith(b"\n") and data.count(b"\n") == 1:
            pending = b""
            if not data.isspace():
                yield [data]
            continue
        *lines, pending = data.split(b"\n")
        batch = [line for line in lines if line and not line.isspace()]
        if batch:
            yield batch
    if pending and not pending.isspace():
        yield [pending]
