"""Whether a request's client is still connected, for waits that write nothing."""

from __future__ import annotations

import select
import socket
from collections.abc import Callable
from typing import Any


def client_probe(environ: dict[str, Any]) -> Callable[[], bool]:
    """A check that peeks at gunicorn's client socket without consuming it.

    WSGI has no disconnect signal, and a waiting request writes nothing, so
    no failed write can tell. A readable socket that peeks as EOF (or resets)
    is a client that closed its end. The body has been read by then, so any
    bytes waiting are a pipelined next request: still connected. A client that
    half-closes after sending (rare; `nc -N`) looks gone. Outside gunicorn
    (the Flask test client) there is no socket, and the client counts as present.
    """
    sock = environ.get("gunicorn.socket")
    if sock is None:
        return lambda: True

    def present() -> bool:
        try:
            if sock.fileno() < 0:
                return False
            readable, _, _ = select.select([sock], [], [], 0)
            if not readable:
                return True
            peeked: bytes = sock.recv(1, socket.MSG_PEEK)
            return peeked != b""
        except (BlockingIOError, InterruptedError):
            return True
        except OSError:
            return False

    return present
