"""WSGI middleware: the real client address behind a trusted reverse proxy."""

from __future__ import annotations

from collections.abc import Iterable
from functools import lru_cache
from ipaddress import (
    IPv4Address,
    IPv4Network,
    IPv6Address,
    IPv6Network,
    ip_address,
    ip_network,
)
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIApplication, WSGIEnvironment

from piagent.settings import comma_list

Address = IPv4Address | IPv6Address


def proxy_networks(value: str) -> tuple[IPv4Network | IPv6Network, ...]:
    """TRUSTED_PROXIES as networks; a bare address is a network of one.

    Strict like gunicorn's forwarded_allow_ips: 10.0.0.1/8 is refused, since
    whoever wrote it meant either 10.0.0.1 or 10.0.0.0/8.
    """
    return tuple(ip_network(part) for part in comma_list(value))


class TrustedProxies:
    """Set REMOTE_ADDR to the client a trusted proxy names; trust nobody else.

    Only when the peer (REMOTE_ADDR) is a trusted proxy are its headers read:
    X-Forwarded-For from the right, skipping trusted proxies, so the first
    untrusted entry is the address the last trusted hop saw (entries further
    left were written by the client and may be forged); else X-Real-IP. The
    peer's own address is kept in `piagent.proxy_addr`. Everything downstream
    (request logs, rate limits) then reads `request.remote_addr` and sees the
    real client.
    """

    def __init__(self, app: WSGIApplication, trusted: str) -> None:
        self.app = app
        self.networks = proxy_networks(trusted)
        # Parsing the peer and matching it to the networks took 1% of a
        # request's CPU; a worker sees few distinct peers (nginx, mostly).
        self._peer_trusted = lru_cache(maxsize=256)(self._check_peer)

    def __call__(
        self, environ: WSGIEnvironment, start_response: StartResponse
    ) -> Iterable[bytes]:
        peer = environ.get("REMOTE_ADDR", "")
        if self.networks and self._peer_trusted(peer):
            forwarded_for = environ.get("HTTP_X_FORWARDED_FOR", "")
            real_ip = environ.get("HTTP_X_REAL_IP", "")
            client = (
                self.client_address(forwarded_for, real_ip)
                if forwarded_for or real_ip
                else None
            )
            if client is not None:
                environ["piagent.proxy_addr"] = peer
                environ["REMOTE_ADDR"] = client
        return self.app(environ, start_response)

    def _check_peer(self, peer: str) -> bool:
        return self.is_trusted(_parse(peer))

    def is_trusted(self, address: Address | None) -> bool:
        return address is not None and any(address in net for net in self.networks)

    def client_address(self, forwarded_for: str, real_ip: str) -> str | None:
        """The right-most untrusted X-Forwarded-For entry, else X-Real-IP.

        A malformed entry stops the walk: whatever is left of it cannot be
        trusted, and the proxy's own view is not known, so nothing is changed.
        """
        entries = [part.strip() for part in forwarded_for.split(",") if part.strip()]
        for entry in reversed(entries):
            address = _parse(entry)
            if address is None:
                return None
            if not self.is_trusted(address):
                return str(address)
        if entries:
            # Every hop was a trusted proxy: the left-most is the closest to
            # the client that is known.
            return str(_parse(entries[0]))
        address = _parse(real_ip.strip())
        return str(address) if address is not None else None


def _parse(text: str) -> Address | None:
    """An address from a header or REMOTE_ADDR; IPv4-mapped IPv6 as IPv4."""
    if text.startswith("[") and "]" in text:
        text = text[1 : text.index("]")]
    try:
        address = ip_address(text)
    except ValueError:
        return None
    if isinstance(address, IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address
