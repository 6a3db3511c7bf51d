"""The Host check: a request must name a host piagent answers to (ALLOWED_HOSTS)."""

from __future__ import annotations

import re
from ipaddress import ip_address

from flask import Flask, request
from werkzeug.sansio.utils import host_is_trusted

from piagent.errors import HostNotAllowed
from piagent.hosts import AllowedHosts

# A Host header worth repeating in an answer: a name or address and a port.
SHOWN_HOST = re.compile(r"[a-z0-9.:\[\]-]{1,260}")
BRACKETED = re.compile(r"\[([0-9a-f:.]+)\](?::(\d{1,5}))?")


def host_allowed(host: str, allowed: AllowedHosts) -> bool:
    """Whether a Host header (`name`, `name:port`, `[v6]:port`) is allowed.

    Names and IPv4 addresses are werkzeug's matching, Flask's TRUSTED_HOSTS
    own: ports ignored, a leading-dot entry matches the domain and its
    subdomains, the header's characters validated. Lower-cased first, since
    werkzeug compares as written and host names are not case-sensitive.
    IPv6 addresses in brackets are compared as addresses: werkzeug cuts a
    trusted entry at its first colon, so it can never match one.
    """
    host = host.strip().lower()
    found = BRACKETED.fullmatch(host)
    if found is not None:
        address, port = found.groups()
        if port is not None and not 1 <= int(port) <= 65535:
            return False
        try:
            return ip_address(address) in allowed.addresses
        except ValueError:
            return False
    # werkzeug reads an empty list as "any host": never hand it one.
    return bool(allowed.names) and host_is_trusted(host, allowed.names)


def install_host_check(app: Flask, allowed: AllowedHosts) -> None:
    """Answer 400 to a request whose Host names a host not allowed.

    Flask's own TRUSTED_HOSTS is not used as such: Flask checks it while
    matching the URL, and its error is raised only when the view is
    dispatched, after every before_request function (the rate limits, the
    key check) has run; and its IPv6 matching never matches (see
    host_allowed). A request without a Host header (HTTP/1.0) names no host
    and passes: browsers, and so rebinding pages, always send one.
    """
    if allowed.anything:
        return

    @app.before_request
    def check_host() -> None:
        host = request.environ.get("HTTP_HOST")
        if host is None or host_allowed(host, allowed):
            return
        shown = host.strip().lower()
        named = f"Host {shown!r}" if SHOWN_HOST.fullmatch(shown) else "this Host"
        raise HostNotAllowed(
            f"{named} is not in ALLOWED_HOSTS: piagent answers only to the host "
            "names and addresses listed there (add this one if it is yours)"
        )
