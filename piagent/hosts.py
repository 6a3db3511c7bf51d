"""Which host names piagent answers to: ALLOWED_HOSTS, or this machine's own.

A request names the host it is for in its Host header. A web page that points
a name of its own at this machine (DNS rebinding) sends that name, so piagent
answers only to the names and addresses listed here; the check itself is
piagent/web/guards/hosts.py. No HTTP here.
"""

from __future__ import annotations

import fcntl
import logging
import socket
import struct
from collections.abc import Iterable
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv6Address, ip_address
from pathlib import Path

from piagent.settings import Settings, comma_list, host_entry

log = logging.getLogger("piagent")

Address = IPv4Address | IPv6Address
# Always answered to: nothing but this machine can be reached by these names.
LOOPBACK = ("localhost", "*.localhost", "127.0.0.1", "::1")
WILDCARD_BINDS = ("", "0.0.0.0", "::")
# Linux's ioctl asking an interface for its IPv4 address (linux/sockios.h).
SIOCGIFADDR = 0x8915
IF_INET6 = Path("/proc/net/if_inet6")


@dataclass(frozen=True)
class AllowedHosts:
    """The hosts a request may name, in the form their matcher wants.

    `names` are werkzeug's trusted hosts (`pi.local`, `.example` for a domain
    and its subdomains, IPv4 addresses); `addresses` the IPv6 ones, which
    werkzeug cannot match (it cuts an entry at its first colon), compared as
    addresses instead. `anything` is ALLOWED_HOSTS=*: no check at all.
    """

    names: tuple[str, ...]
    addresses: frozenset[IPv6Address]
    anything: bool = False

    @classmethod
    def of(cls, entries: Iterable[str]) -> AllowedHosts:
        names: dict[str, None] = {}
        addresses = set()
        for entry in entries:
            parsed = host_entry(entry)
            if parsed is None:
                continue  # only defaults get here (checked settings never do)
            kind, value = parsed
            if kind == "address" and ":" in value:
                addresses.add(IPv6Address(value))
            else:
                names[f".{value}" if kind == "domain" else value] = None
        return cls(tuple(names), frozenset(addresses))

    def describe(self) -> str:
        """The entries as ALLOWED_HOSTS would write them, for the start-up log."""
        if self.anything:
            return "any (ALLOWED_HOSTS=*)"
        shown = [f"*{name}" if name.startswith(".") else name for name in self.names]
        return ", ".join(shown + sorted(map(str, self.addresses)))


def allowed_hosts(
    settings: Settings,
    hostname: str | None = None,
    interfaces: Iterable[Address] | None = None,
) -> AllowedHosts:
    """ALLOWED_HOSTS as set, or the defaults of this machine when it is empty.

    `hostname` and `interfaces` stand in for this machine's (tests).
    """
    entries = comma_list(settings.allowed_hosts)
    if entries == ["*"]:
        return AllowedHosts((), frozenset(), anything=True)
    return AllowedHosts.of(
        entries or default_hosts(settings.bind, hostname, interfaces)
    )


def default_hosts(
    bind: str,
    hostname: str | None = None,
    interfaces: Iterable[Address] | None = None,
) -> list[str]:
    """Loopback names, this machine's name and `<name>.local` (mDNS), and the
    host of each address piagent listens on; a wildcard bind (0.0.0.0, ::)
    listens on every interface, so each interface's address instead."""
    name = (socket.gethostname() if hostname is None else hostname).lower()
    found = list(LOOPBACK)
    if name:
        found += [name, f"{name.partition('.')[0]}.local"]
    wildcard = False
    for address in comma_list(bind):
        if address.startswith(("unix:", "fd://")):
            continue
        host = bind_host(address)
        if host in WILDCARD_BINDS:
            wildcard = True
        else:
            found.append(host)
    if wildcard:
        own = interface_addresses() if interfaces is None else interfaces
        found += [str(address) for address in own if not address.is_link_local]
    return found


def bind_host(address: str) -> str:
    """The host of one TCP address of a gunicorn bind, without brackets or port."""
    address = address.removeprefix("tcp://")
    if address.startswith("["):
        return address[1:].partition("]")[0]
    return address.rpartition(":")[0] if ":" in address else address


def interface_addresses() -> set[Address]:
    """This machine's own addresses, with the standard library only.

    - IPv4: each interface `socket.if_nameindex()` lists, asked for its
      address with Linux's SIOCGIFADDR ioctl (an interface's primary address;
      a secondary one added with `ip addr add` is missed);
    - IPv6: every line of /proc/net/if_inet6;
    - and whatever `getaddrinfo(gethostname())` resolves to (alone it would
      not do: Debian maps the host name to 127.0.1.1 in /etc/hosts).

    A source that fails (not Linux, no /proc) adds nothing; a name missed
    here can always be listed in ALLOWED_HOSTS.
    """
    found: set[Address] = set()
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
            for _, name in socket.if_nameindex():
                request = struct.pack("256s", name.encode()[:15])
                try:
                    answer = fcntl.ioctl(probe.fileno(), SIOCGIFADDR, request)
                except OSError:
                    continue  # an interface without an IPv4 address
                found.add(IPv4Address(answer[20:24]))
    except OSError as exc:
        log.debug("interface addresses: %s", exc)
    try:
        found |= parse_if_inet6(IF_INET6.read_text())
    except OSError as exc:
        log.debug("interface addresses: %s", exc)
    try:
        for *_, sockaddr in socket.getaddrinfo(socket.gethostname(), None):
            found.add(ip_address(str(sockaddr[0]).partition("%")[0]))
    except (OSError, ValueError) as exc:
        log.debug("interface addresses: %s", exc)
    return found


def parse_if_inet6(text: str) -> set[Address]:
    """The addresses of /proc/net/if_inet6: one a line, 32 hex digits first."""
    found: set[Address] = set()
    for line in text.splitlines():
        word = line.split(maxsplit=1)[0] if line.strip() else ""
        if len(word) == 32:
            try:
                found.add(IPv6Address(bytes.fromhex(word)))
            except ValueError:
                continue
    return found
