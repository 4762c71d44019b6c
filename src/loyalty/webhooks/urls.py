"""Webhook URL checks against server-side request forgery (SSRF).

A webhook URL must use ``https://``; ``http://`` is accepted only for hosts
inside ``LOYALTY_WEBHOOK_ALLOWED_NETWORKS``. Its host must not be, nor resolve
to, an address that is not globally routable (loopback, private, link-local,
multicast, reserved...) unless the address is inside those networks. The
check runs when an endpoint is created or changed (``check_url``) and again
at every connection (``resolve_checked``, used by the delivery transport), as
DNS answers can change in between.
"""

from __future__ import annotations

import asyncio
import ipaddress
import re
import socket
from collections.abc import Awaitable, Callable, Sequence
from urllib.parse import urlsplit

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
Resolver = Callable[[str, int], Awaitable[list[IPAddress]]]

ALLOWED_NETWORKS_SETTING = "LOYALTY_WEBHOOK_ALLOWED_NETWORKS"
URL_CHARS_MAX = 2000
_DEFAULT_PORTS = {"https": 443, "http": 80}
_LOOPBACK_V4 = ipaddress.IPv4Address("127.0.0.1")
# An ASCII host name: dot-separated labels (underscores occur in real DNS
# names), with an optional final dot.
_LABEL = r"[a-z0-9_](?:[a-z0-9_-]{0,61}[a-z0-9_])?"
_HOST_NAME = re.compile(rf"{_LABEL}(?:\.{_LABEL})*\.?")


class WebhookURLError(ValueError):
    """A webhook URL that may not be used; ``str()`` is a message for API clients.

    ``address`` is the refused address when an address was refused.
    """

    def __init__(self, message: str, *, address: IPAddress | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.address = address

    def __str__(self) -> str:
        return self.message


def parse_allowed_networks(text: str | None) -> tuple[Network, ...]:
    """Parse comma-separated CIDRs (``LOYALTY_WEBHOOK_ALLOWED_NETWORKS``).

    A bare address is a single-address network; host bits are tolerated.
    """
    if text is None:
        return ()
    networks: list[Network] = []
    for part in text.split(","):
        item = part.strip()
        if not item:
            continue
        try:
            networks.append(ipaddress.ip_network(item, strict=False))
        except ValueError as error:
            raise ValueError(
                f"{ALLOWED_NETWORKS_SETTING} must be comma-separated CIDRs "
                f"(like 10.0.0.0/8,fd00::/8), got {item!r}"
            ) from error
    return tuple(networks)


def _unwrap(address: IPAddress) -> IPAddress:
    """The IPv4 address inside an IPv4-mapped IPv6 address, else the address."""
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def _inside(address: IPAddress, allowed: Sequence[Network]) -> bool:
    candidates = {address, _unwrap(address)}
    return any(candidate in network for candidate in candidates for network in allowed)


def _kind(address: IPAddress) -> str | None:
    """Why ``address`` is not a public address (None when it is one)."""
    address = _unwrap(address)
    if address.is_unspecified:
        return "unspecified"
    if address.is_loopback:
        return "loopback"
    if address.is_link_local:
        return "link-local"
    if address.is_multicast:
        # Python counts some multicast ranges as global: refuse them all.
        return "multicast"
    if address.is_private:
        return "private"
    if address.is_reserved:
        return "reserved"
    # IPv6 addresses carrying an IPv4 one: NAT64 (64:ff9b::/96) and
    # IPv4-compatible (::/96) ones lie in ::/8, refused as reserved above;
    # a 6to4 one (2002::/16) is judged by its IPv4 address too.
    if isinstance(address, ipaddress.IPv6Address):
        if address.is_site_local:
            return "site-local"
        if address.sixtofour is not None and _kind(address.sixtofour) is not None:
            return "non-public"
    if not address.is_global:
        return "non-public"
    return None


def address_allowed(address: IPAddress, allowed: Sequence[Network]) -> bool:
    """Whether a webhook may connect to ``address``.

    Inside the allowed networks: yes. Otherwise only a globally routable
    unicast address (an IPv4-mapped IPv6 address is judged by its IPv4 one).
    """
    return _inside(address, allowed) or _kind(address) is None


def _literal_address(host: str) -> IPAddress | None:
    """``host`` as an IP address, including legacy IPv4 forms (``127.1``, ``0x7f.1``)."""
    try:
        return ipaddress.ip_address(host)
    except ValueError:
        pass
    if re.fullmatch(r"[0-9a-fA-Fx.]+", host) and not host.endswith("."):
        try:
            return ipaddress.IPv4Address(socket.inet_aton(host))
        except OSError:
            return None
    return None


def _display(address: IPAddress) -> str:
    """``address`` as text; an IPv4-mapped one as ``::ffff:a.b.c.d`` on every Python."""
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return f"::ffff:{address.ipv4_mapped}"
    return str(address)


def _refusal(
    address: IPAddress, allowed: Sequence[Network], *, https: bool, verb: str
) -> str | None:
    """The message refusing ``address``, or None if it may be used."""
    if not https:
        if _inside(address, allowed):
            return None
        return (
            f"http:// is only allowed for addresses inside {ALLOWED_NETWORKS_SETTING}; "
            f"use https:// ({verb} {_display(address)})"
        )
    if address_allowed(address, allowed):
        return None
    return f"{verb} a {_kind(address) or 'non-public'} address ({_display(address)})"


def _has_unsafe_characters(url: str) -> bool:
    return any(ord(char) < 0x21 or ord(char) == 0x7F or char.isspace() for char in url)


def _port(url_port: int | None, scheme: str) -> int:
    return _DEFAULT_PORTS[scheme] if url_port is None else url_port


def _split(url: str) -> tuple[str, str, int]:
    """(scheme, host, port) of a syntactically acceptable URL."""
    if len(url) > URL_CHARS_MAX:
        raise WebhookURLError(f"must be at most {URL_CHARS_MAX} characters")
    if _has_unsafe_characters(url):
        raise WebhookURLError("must not contain whitespace or control characters")
    try:
        parts = urlsplit(url)
        scheme = parts.scheme.lower()
        if scheme not in _DEFAULT_PORTS:
            raise WebhookURLError("must use https://")
        host = parts.hostname
        if not host:
            raise WebhookURLError("must include a host")
        if parts.username is not None or parts.password is not None or "@" in parts.netloc:
            raise WebhookURLError("must not contain credentials")
    except WebhookURLError:
        raise
    except ValueError as error:
        raise WebhookURLError("is not a valid URL") from error
    try:
        port = _port(parts.port, scheme)
    except ValueError:
        port = 0
    if not 1 <= port <= 65535:
        raise WebhookURLError("port must be a number between 1 and 65535")
    if "\\" in parts.netloc or "%" in host:
        raise WebhookURLError("host is not valid")
    return scheme, host, port


def _check_host_name(host: str) -> None:
    try:
        ascii_host = host if host.isascii() else host.encode("idna").decode("ascii")
    except UnicodeError as error:
        raise WebhookURLError("host is not valid") from error
    if not _HOST_NAME.fullmatch(ascii_host.lower()):
        raise WebhookURLError("host is not valid")


def check_url_syntax(url: str, allowed: Sequence[Network]) -> str:
    """Check everything about ``url`` that needs no DNS; return its host.

    The host of an IPv6 literal comes without brackets. IP literals are
    checked here; host names must also pass ``check_url`` (resolution).
    """
    scheme, host, _ = _split(url)
    https = scheme == "https"
    if not https and not allowed:
        raise WebhookURLError("must use https://")
    address = _literal_address(host)
    if address is not None:
        refusal = _refusal(address, allowed, https=https, verb="host is")
        if refusal is not None:
            raise WebhookURLError(refusal, address=address)
        return host
    _check_host_name(host)
    name = host.rstrip(".")
    if (name == "localhost" or name.endswith(".localhost")) and not _inside(_LOOPBACK_V4, allowed):
        raise WebhookURLError("host is a loopback address (localhost)")
    return host


async def resolve_host(host: str, port: int) -> list[IPAddress]:
    """The host's addresses from the system resolver, in its order, without repeats."""
    loop = asyncio.get_running_loop()
    infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    addresses: list[IPAddress] = []
    for family, _, _, _, sockaddr in infos:
        if family not in (socket.AF_INET, socket.AF_INET6):
            continue
        address = ipaddress.ip_address(sockaddr[0])
        if address not in addresses:
            addresses.append(address)
    return addresses


async def resolve_checked(
    host: str,
    port: int,
    allowed: Sequence[Network],
    *,
    https: bool,
    resolve: Resolver | None = None,
) -> list[IPAddress]:
    """Resolve ``host`` (an IP literal is its own answer) and check EVERY address.

    Returns the addresses in resolver order; raises ``WebhookURLError`` if
    the host cannot be resolved or if any address is refused. With
    ``https=False`` every address must be inside ``allowed``.
    """
    literal = _literal_address(host)
    if literal is not None:
        addresses: list[IPAddress] = [literal]
        verb = "host is"
    else:
        try:
            addresses = await (resolve or resolve_host)(host, port)
        except (OSError, UnicodeError, ValueError) as error:
            raise WebhookURLError("host could not be resolved") from error
        verb = "resolves to"
    if not addresses:
        raise WebhookURLError("host could not be resolved")
    for address in addresses:
        refusal = _refusal(address, allowed, https=https, verb=verb)
        if refusal is not None:
            raise WebhookURLError(refusal, address=address)
    return addresses


async def check_url(
    url: str, allowed: Sequence[Network], *, resolve: Resolver | None = None
) -> None:
    """Check ``url`` fully: syntax, then every address its host resolves to."""
    check_url_syntax(url, allowed)
    scheme, host, port = _split(url)
    await resolve_checked(host, port, allowed, https=scheme == "https", resolve=resolve)
