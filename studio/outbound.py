"""Where the studio may connect for its users: the operator's OUTBOUND_ALLOW rules.

Users give the studio addresses to reach: VMs and HDInsight head nodes over SSH,
Docker engines, cloud service endpoints. Unchecked, those could point at the
studio's own network: the cloud metadata service (169.254.169.254), services on
loopback, hosts on private ranges. A host name is resolved and every address it
resolves to must be allowed, and the connection goes to an address that was
checked, so a name that resolves elsewhere a moment later (DNS rebinding) gains
nothing.

OUTBOUND_ALLOW is a comma-separated list of:
- `public`: every globally routable address (not loopback, link-local, private,
  shared, reserved or multicast ranges);
- a network or an address, e.g. `10.20.0.0/16`, `127.0.0.1`, `::1`;
- a host name pattern, e.g. `*.corp.example` or `docker1`: that name is allowed
  whatever it resolves to (the operator trusts its DNS);
- `unix`: Docker engines on a local socket (`unix://`).
"""

from __future__ import annotations

import fnmatch
import functools
import ipaddress
import socket
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import requests
from django.conf import settings
from django.contrib.auth.models import User
from requests.adapters import HTTPAdapter
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool
from urllib3.exceptions import NameResolutionError, NewConnectionError

PUBLIC = "public"
UNIX = "unix"
DEFAULT_PORTS = {"tcp": 2375, "ssh": 22, "http": 80, "https": 443}
# IPv6 ranges that carry an IPv4 address a gateway forwards to (NAT64, 6to4).
_NAT64 = ipaddress.ip_network("64:ff9b::/96")

Address = ipaddress.IPv4Address | ipaddress.IPv6Address
Network = ipaddress.IPv4Network | ipaddress.IPv6Network


class OutboundRefused(Exception):
    """The operator's rules do not let the studio connect there; the message says so."""

    def __init__(self, message: str):
        super().__init__(message)
        self.message = message


def refused_message(host: str) -> str:
    return (
        f"Trainyard may not connect to {host}: the server's operator has not allowed that "
        "address (setting OUTBOUND_ALLOW). Use a public address, or ask the operator to "
        "allow this one."
    )


def unreachable_message(where: str) -> str:
    """What a user who is not staff reads when connecting to `where` (host:port) fails.

    One message whether the port is closed, filtered or nobody is there, so the
    studio does not map the networks it can reach for its users.
    """
    return (
        f"Could not connect to {where}: check the address, the port, and that its firewall "
        "lets this server in."
    )


def detailed_errors_for(creator: User | None) -> bool:
    """Whether failing to reach an address may be explained in detail.

    The user who gave the address learns why it did not answer only if staff;
    rows made without a user (by the operator) keep the details.
    """
    return creator is None or creator.is_staff


def _embedded(address: Address) -> list[Address]:
    """The address and any IPv4 address it stands for."""
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            return [address.ipv4_mapped]
        if address.sixtofour is not None:
            return [address, address.sixtofour]
        if address in _NAT64:
            return [address, ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)]
    return [address]


def _public(address: Address) -> bool:
    return address.is_global and not address.is_multicast


@dataclass(frozen=True)
class OutboundPolicy:
    public: bool = True
    unix: bool = False
    networks: tuple[Network, ...] = ()
    hosts: tuple[str, ...] = ()

    @classmethod
    def parse(cls, entries: list[str] | tuple[str, ...]) -> OutboundPolicy:
        public, unix, networks, hosts = False, False, [], []
        for entry in (e.strip().lower() for e in entries):
            if entry == PUBLIC:
                public = True
            elif entry == UNIX:
                unix = True
            elif entry:
                try:
                    networks.append(ipaddress.ip_network(entry.strip("[]"), strict=False))
                except ValueError:
                    hosts.append(entry.rstrip("."))
        return cls(public, unix, tuple(networks), tuple(hosts))

    def named(self, host: str) -> bool:
        """Whether the operator allows this host name whatever it resolves to."""
        name = host.lower().rstrip(".")
        return any(fnmatch.fnmatchcase(name, pattern) for pattern in self.hosts)

    def address_allowed(self, address: str) -> bool:
        ip = ipaddress.ip_address(address.split("%", 1)[0])
        return all(
            (self.public and _public(each)) or any(each in net for net in self.networks)
            for each in _embedded(ip)
        )

    def addresses(self, host: str, port: int) -> list[tuple]:
        """`host`'s addresses (getaddrinfo tuples) if every one is allowed.

        Raises socket.gaierror when the name does not resolve and OutboundRefused
        when any address it resolves to is not allowed.
        """
        found = socket.getaddrinfo(host.strip("[]"), port, type=socket.SOCK_STREAM)
        if not self.named(host):
            for *_, sockaddr in found:
                if not self.address_allowed(str(sockaddr[0])):
                    raise OutboundRefused(refused_message(host))
        return found

    def connect(self, host: str, port: int, timeout: float) -> socket.socket:
        """A TCP connection to an allowed address of `host`, as socket.create_connection."""
        error: OSError | None = None
        for family, kind, proto, _, sockaddr in self.addresses(host, port):
            sock = socket.socket(family, kind, proto)
            try:
                sock.settimeout(timeout)
                sock.connect(sockaddr)
                return sock
            except OSError as exc:
                sock.close()
                error = exc
        raise error or OSError(f"{host} has no address")

    def check_host(self, host: str) -> None:
        """For a form: refuse a host that resolves to an address not allowed.

        A name that does not resolve passes here: connecting says so in its own words.
        """
        try:
            self.addresses(host, 0)
        except (socket.gaierror, UnicodeError):
            return

    def check_url(self, url: str) -> None:
        """Refuse a Docker engine or service URL the rules do not allow (resolving its host)."""
        parts = urlsplit(url)
        if parts.scheme == "unix":
            if not self.unix:
                raise OutboundRefused(
                    "Trainyard may not use Docker engines on local sockets (unix://): the "
                    "server's operator has not allowed them (setting OUTBOUND_ALLOW). Use the "
                    "workspace's `local` engine, or an engine at a public address."
                )
            return
        try:
            host, port = parts.hostname, parts.port
        except ValueError:
            host = port = None
        if not host:
            raise OutboundRefused(f"{url} names no host to connect to.")
        try:
            self.addresses(host, port or DEFAULT_PORTS.get(parts.scheme, 443))
        except (socket.gaierror, UnicodeError):
            raise OutboundRefused(
                f"Cannot resolve the host name {host}: check its spelling, or use an IP address."
            ) from None


def pinned_url(url: str) -> str:
    """`url` with its host name replaced by an address checked now (for plain HTTP/TCP)."""
    parts = urlsplit(url)
    host, port = parts.hostname or "", parts.port or DEFAULT_PORTS.get(parts.scheme, 80)
    address = str(outbound_policy().addresses(host, port)[0][4][0])
    address = f"[{address}]" if ":" in address else address
    user, at, _ = parts.netloc.rpartition("@")
    return parts._replace(netloc=f"{user}{at}{address}:{port}").geturl()


@functools.lru_cache(maxsize=8)
def _parsed(entries: tuple[str, ...]) -> OutboundPolicy:
    return OutboundPolicy.parse(entries)


def outbound_policy() -> OutboundPolicy:
    """The operator's rules as the settings hold them now."""
    return _parsed(tuple(settings.OUTBOUND_ALLOW))


# --- HTTP clients -------------------------------------------------------------------


class _Checked:
    """A urllib3 connection that connects only to an address the rules allow, as checked."""

    _dns_host: str
    port: int

    def _new_conn(self) -> socket.socket:
        name = self._dns_host
        try:
            found = outbound_policy().addresses(name, self.port)
        except socket.gaierror as exc:
            raise NameResolutionError(name, self, exc) from exc  # type: ignore[arg-type]
        except OutboundRefused as exc:
            raise NewConnectionError(self, exc.message) from exc  # type: ignore[arg-type]
        # The name stays for TLS (SNI, the certificate); the socket goes to what was checked.
        self._dns_host = found[0][4][0]
        try:
            return super()._new_conn()  # type: ignore[misc]
        finally:
            self._dns_host = name


class _CheckedHTTPConnection(_Checked, HTTPConnection):
    pass


class _CheckedHTTPSConnection(_Checked, HTTPSConnection):
    pass


class _CheckedHTTPPool(HTTPConnectionPool):
    ConnectionCls = _CheckedHTTPConnection


class _CheckedHTTPSPool(HTTPSConnectionPool):
    ConnectionCls = _CheckedHTTPSConnection  # type: ignore[assignment]


class CheckedAdapter(HTTPAdapter):
    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        super().init_poolmanager(*args, **kwargs)
        self.poolmanager.pool_classes_by_scheme = {
            "http": _CheckedHTTPPool,
            "https": _CheckedHTTPSPool,
        }


def checked_session(session: requests.Session | None = None) -> requests.Session:
    """`session` (or a new one) connecting only where the operator's rules allow."""
    session = session or requests.Session()
    adapter = CheckedAdapter()
    session.mount("http://", adapter)
    session.mount("https://", adapter)
    return session
