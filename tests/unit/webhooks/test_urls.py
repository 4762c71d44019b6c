"""Webhook URL checks (SSRF): syntax, IP literals and resolved addresses."""

from __future__ import annotations

import ipaddress

import pytest

from loyalty.webhooks.urls import (
    IPAddress,
    Network,
    WebhookURLError,
    address_allowed,
    check_url,
    check_url_syntax,
    parse_allowed_networks,
    resolve_checked,
)

LOOPBACK = parse_allowed_networks("127.0.0.0/8")


class FakeResolver:
    """Answers from a table (no DNS); unknown names fail like getaddrinfo."""

    def __init__(self, answers: dict[str, list[str]]) -> None:
        self.answers = answers
        self.calls: list[tuple[str, int]] = []

    async def __call__(self, host: str, port: int) -> list[IPAddress]:
        self.calls.append((host, port))
        if host not in self.answers:
            raise OSError("Name or service not known")
        return [ipaddress.ip_address(a) for a in self.answers[host]]


async def no_resolution(host: str, port: int) -> list[IPAddress]:
    raise AssertionError(f"unexpected resolution of {host}")


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("ftp://example.com/x", "must use https://"),
        ("http://example.com/x", "must use https://"),
        ("https://user:pw@example.com/", "must not contain credentials"),
        ("https://user@example.com/", "must not contain credentials"),
        ("https://127.0.0.1/", "loopback address (127.0.0.1)"),
        ("https://10.1.2.3/", "private address (10.1.2.3)"),
        ("https://169.254.169.254/latest", "link-local address (169.254.169.254)"),
        ("https://[::1]/", "loopback address (::1)"),
        ("https://[::ffff:127.0.0.1]/", "loopback address (::ffff:127.0.0.1)"),
        ("https://[::ffff:10.0.0.1]/", "private address"),
        ("https://[fe80::1%25eth0]/", "host is not valid"),
        ("https://[fc00::1]/", "private address"),
        ("https://[2002:7f00:1::]/", "non-public address"),
        ("https://[64:ff9b::7f00:1]/", "reserved address"),
        ("https://localhost/", "loopback address (localhost)"),
        ("https://LOCALHOST./", "loopback address (localhost)"),
        ("https://api.localhost/", "loopback address (localhost)"),
        ("https://0.0.0.0/", "unspecified address"),
        ("https://224.0.0.1/", "multicast address (224.0.0.1)"),
        ("https://239.1.2.3/", "multicast address"),
        ("https://100.64.0.1/", "non-public address (100.64.0.1)"),
        ("https://255.255.255.255/", "address (255.255.255.255)"),
        ("https://2130706433/", "loopback address (127.0.0.1)"),
        ("https://0x7f.1/", "loopback address (127.0.0.1)"),
        ("not a url", "whitespace"),
        ("https://exa mple.com/", "whitespace"),
        ("https://example.com/\nx", "whitespace"),
        ("https://example.com/\x00", "control"),
        ("https:///nohost", "must include a host"),
        ("https://:443/", "must include a host"),
        ("https://example.com:99999/", "port"),
        ("https://example.com:0/", "port"),
        ("https://example.com:abc/", "port"),
        ("https://[::1/", "not a valid URL"),
        ("https://exa%6Dple.com/", "host is not valid"),
        ("https://evil.com\\@example.com/", "credentials"),
        ("https://-bad-.example/", "host is not valid"),
        ("https://example.com/" + "x" * 3000, "at most 2000 characters"),
        ("", "must use https://"),
        ("example.com/hook", "must use https://"),
    ],
)
async def test_refused(url: str, message: str) -> None:
    with pytest.raises(WebhookURLError) as refused:
        check_url_syntax(url, ())
    assert message in str(refused.value)
    with pytest.raises(WebhookURLError):
        await check_url(url, (), resolve=no_resolution)


@pytest.mark.parametrize(
    ("url", "allowed", "host"),
    [
        ("https://93.184.215.14/hook", (), "93.184.215.14"),
        ("https://93.184.215.14:8443/hook?a=b#c", (), "93.184.215.14"),
        ("https://[2606:4700::1]/hook", (), "2606:4700::1"),
        ("http://127.0.0.1:8080/x", LOOPBACK, "127.0.0.1"),
        ("https://127.0.0.1:8080/x", LOOPBACK, "127.0.0.1"),
        ("http://[::ffff:127.0.0.1]/x", LOOPBACK, "::ffff:127.0.0.1"),
        ("https://10.1.2.3/x", parse_allowed_networks("10.0.0.0/8"), "10.1.2.3"),
    ],
)
async def test_accepted_literals(url: str, allowed: tuple[Network, ...], host: str) -> None:
    assert check_url_syntax(url, allowed) == host
    await check_url(url, allowed, resolve=no_resolution)


async def test_http_needs_the_address_inside_the_allowed_networks() -> None:
    with pytest.raises(WebhookURLError, match="http:// is only allowed"):
        check_url_syntax("http://93.184.215.14/x", LOOPBACK)
    with pytest.raises(WebhookURLError, match="http:// is only allowed"):
        check_url_syntax("http://10.0.0.1/x", LOOPBACK)
    resolve = FakeResolver({"hooks.internal": ["127.0.0.5"], "example.com": ["93.184.215.14"]})
    await check_url("http://hooks.internal:8080/x", LOOPBACK, resolve=resolve)
    assert resolve.calls == [("hooks.internal", 8080)]
    with pytest.raises(WebhookURLError, match="http:// is only allowed"):
        await check_url("http://example.com/x", LOOPBACK, resolve=resolve)


async def test_localhost_only_when_loopback_is_allowed() -> None:
    assert check_url_syntax("http://localhost:8080/x", LOOPBACK) == "localhost"
    resolve = FakeResolver({"localhost": ["127.0.0.1"]})
    await check_url("http://localhost:8080/x", LOOPBACK, resolve=resolve)
    both = FakeResolver({"localhost": ["::1", "127.0.0.1"]})
    with pytest.raises(WebhookURLError, match=r"resolves to ::1\)"):
        await check_url("http://localhost:8080/x", LOOPBACK, resolve=both)


async def test_every_resolved_address_must_be_allowed() -> None:
    resolve = FakeResolver(
        {
            "mixed.example": ["93.184.215.14", "10.0.0.1"],
            "public.example": ["93.184.215.14", "2606:4700::1"],
            "mapped.example": ["::ffff:169.254.169.254"],
            "empty.example": [],
        }
    )
    with pytest.raises(WebhookURLError) as refused:
        await check_url("https://mixed.example/hook", (), resolve=resolve)
    assert str(refused.value) == "resolves to a private address (10.0.0.1)"
    assert refused.value.address == ipaddress.ip_address("10.0.0.1")
    await check_url("https://public.example/hook", (), resolve=resolve)
    assert resolve.calls[-1] == ("public.example", 443)
    with pytest.raises(WebhookURLError, match="link-local"):
        await check_url("https://mapped.example/", (), resolve=resolve)
    for host in ("empty.example", "unknown.example"):
        with pytest.raises(WebhookURLError) as unresolved:
            await check_url(f"https://{host}/", (), resolve=resolve)
        assert str(unresolved.value) == "host could not be resolved"
        assert unresolved.value.address is None


async def test_resolve_checked_returns_addresses_in_resolver_order() -> None:
    resolve = FakeResolver({"public.example": ["2606:4700::1", "93.184.215.14"]})
    addresses = await resolve_checked("public.example", 443, (), https=True, resolve=resolve)
    assert [str(a) for a in addresses] == ["2606:4700::1", "93.184.215.14"]
    literal = await resolve_checked("127.0.0.1", 80, LOOPBACK, https=False, resolve=no_resolution)
    assert literal == [ipaddress.ip_address("127.0.0.1")]


async def test_default_resolver_resolves_localhost() -> None:
    with pytest.raises(WebhookURLError, match="loopback"):
        await resolve_checked("localhost", 80, (), https=True)
    addresses = await resolve_checked(
        "localhost", 80, LOOPBACK + parse_allowed_networks("::1"), https=True
    )
    assert ipaddress.ip_address("127.0.0.1") in addresses


def test_address_allowed() -> None:
    public = ipaddress.ip_address("93.184.215.14")
    assert address_allowed(public, ())
    assert address_allowed(ipaddress.ip_address("::ffff:93.184.215.14"), ())
    assert not address_allowed(ipaddress.ip_address("127.0.0.1"), ())
    assert address_allowed(ipaddress.ip_address("127.0.0.1"), LOOPBACK)
    assert address_allowed(ipaddress.ip_address("::ffff:127.0.0.1"), LOOPBACK)
    assert not address_allowed(ipaddress.ip_address("::1"), LOOPBACK)
    assert not address_allowed(ipaddress.ip_address("fec0::1"), ())  # site-local


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (None, ()),
        ("", ()),
        ("  ", ()),
        ("10.0.0.0/8", ("10.0.0.0/8",)),
        (" 10.0.0.0/8 , fd00::/8,", ("10.0.0.0/8", "fd00::/8")),
        ("127.0.0.1", ("127.0.0.1/32",)),
        ("192.168.1.5/24", ("192.168.1.0/24",)),  # host bits tolerated
    ],
)
def test_parse_allowed_networks(text: str | None, expected: tuple[str, ...]) -> None:
    assert tuple(str(n) for n in parse_allowed_networks(text)) == expected


@pytest.mark.parametrize("text", ["10.0.0.0/33", "example.com", "10.0.0.0/8;fd00::/8", "1.2.3"])
def test_parse_allowed_networks_refuses_bad_cidrs(text: str) -> None:
    with pytest.raises(ValueError, match="LOYALTY_WEBHOOK_ALLOWED_NETWORKS"):
        parse_allowed_networks(text)
