"""The guarded delivery client against a tiny HTTP server on 127.0.0.1."""

from __future__ import annotations

import asyncio
import ipaddress
import ssl
from collections.abc import AsyncIterator, Iterable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

import httpcore
import httpx
import pytest

from loyalty.webhooks.transport import AddressRefusedError, GuardedBackend, make_client
from loyalty.webhooks.urls import IPAddress, parse_allowed_networks

LOOPBACK = parse_allowed_networks("127.0.0.0/8")


@dataclass
class Server:
    """Answers every request on a kept-alive connection; counts connections."""

    port: int = 0
    connections: int = 0
    requests: list[bytes] = field(default_factory=list)
    redirect: bool = False

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            while True:
                try:
                    head = await reader.readuntil(b"\r\n\r\n")
                except asyncio.IncompleteReadError:
                    return
                length = 0
                for line in head.split(b"\r\n"):
                    name, _, value = line.partition(b":")
                    if name.strip().lower() == b"content-length":
                        length = int(value)
                await reader.readexactly(length)
                self.requests.append(head)
                if self.redirect:
                    location = f"http://127.0.0.1:{self.port}/other".encode()
                    writer.write(
                        b"HTTP/1.1 302 Found\r\nLocation: " + location + b"\r\n"
                        b"Content-Length: 0\r\n\r\n"
                    )
                else:
                    writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
                await writer.drain()
        finally:
            writer.close()


@asynccontextmanager
async def serving(*, redirect: bool = False) -> AsyncIterator[Server]:
    server = Server(redirect=redirect)
    listener = await asyncio.start_server(server.handle, "127.0.0.1", 0)
    server.port = listener.sockets[0].getsockname()[1]
    try:
        yield server
    finally:
        listener.close()
        await listener.wait_closed()


class FakeResolver:
    def __init__(self, answers: dict[str, list[str]]) -> None:
        self.answers = answers

    async def __call__(self, host: str, port: int) -> list[IPAddress]:
        if host not in self.answers:
            raise OSError("Name or service not known")
        return [ipaddress.ip_address(a) for a in self.answers[host]]


async def test_allowed_network_gets_through() -> None:
    async with serving() as server, make_client(LOOPBACK, timeout_seconds=5) as client:
        response = await client.post(f"http://127.0.0.1:{server.port}/", content=b"{}")
    assert (response.status_code, response.text) == (200, "ok")
    assert server.connections == 1


async def test_refused_at_connect_time_without_the_allowance() -> None:
    async with serving() as server, make_client((), timeout_seconds=5) as client:
        for host in ("127.0.0.1", "localhost", "[::ffff:127.0.0.1]", "2130706433"):
            with pytest.raises(httpx.ConnectError) as refused:
                await client.post(f"http://{host}:{server.port}/", content=b"{}")
            assert isinstance(refused.value.__cause__, AddressRefusedError)
            # The http:// transport allows nothing outside the allowed networks.
            assert "only allowed for addresses inside" in str(refused.value)
        await asyncio.sleep(0.05)
    assert server.connections == 0


async def test_hostname_connects_to_its_checked_address_with_its_own_host_header() -> None:
    resolve = FakeResolver({"hooks.test": ["127.0.0.1"], "mixed.test": ["127.0.0.1", "10.0.0.1"]})
    async with (
        serving() as server,
        make_client(LOOPBACK, timeout_seconds=5, resolve=resolve) as client,
    ):
        response = await client.post(f"http://hooks.test:{server.port}/", content=b"{}")
        assert response.status_code == 200
        with pytest.raises(httpx.ConnectError, match=r"10\.0\.0\.1"):
            await client.post(f"http://mixed.test:{server.port}/", content=b"{}")
        with pytest.raises(httpx.ConnectError, match=r"private address \(10\.0\.0\.1\)"):
            await client.post(f"https://mixed.test:{server.port}/", content=b"{}")
        with pytest.raises(httpx.ConnectError, match="could not be resolved"):
            await client.post(f"http://unknown.test:{server.port}/", content=b"{}")
    assert f"host: hooks.test:{server.port}".encode() in server.requests[0].lower()
    assert server.connections == 1


async def test_redirects_are_not_followed() -> None:
    async with (
        serving(redirect=True) as server,
        make_client(LOOPBACK, timeout_seconds=5) as client,
    ):
        response = await client.post(f"http://127.0.0.1:{server.port}/", content=b"{}")
    assert response.status_code == 302
    assert response.headers["location"] == f"http://127.0.0.1:{server.port}/other"
    assert len(server.requests) == 1


async def test_connections_are_reused() -> None:
    async with serving() as server, make_client(LOOPBACK, timeout_seconds=5) as client:
        for _ in range(3):
            response = await client.post(f"http://127.0.0.1:{server.port}/", content=b"{}")
            assert response.status_code == 200
    assert (server.connections, len(server.requests)) == (1, 3)


async def test_later_addresses_are_tried_when_the_first_fails() -> None:
    # The server listens on 127.0.0.1 only: 127.0.0.2 refuses the connection.
    resolve = FakeResolver({"h.test": ["127.0.0.2", "127.0.0.1"], "down.test": ["127.0.0.2"]})
    backend = GuardedBackend(LOOPBACK, resolve=resolve)
    async with serving() as server:
        stream = await backend.connect_tcp("h.test", server.port, timeout=5)
        assert stream.get_extra_info("server_addr") == ("127.0.0.1", server.port)
        await stream.aclose()
        with pytest.raises(httpcore.ConnectError):
            await backend.connect_tcp("down.test", server.port, timeout=5)
    assert server.connections == 1


class RecordingStream(httpcore.AsyncNetworkStream):
    def __init__(self, calls: list[tuple[str, object]]) -> None:
        self.calls = calls

    async def start_tls(
        self,
        ssl_context: ssl.SSLContext,
        server_hostname: str | None = None,
        timeout: float | None = None,  # noqa: ASYNC109
    ) -> httpcore.AsyncNetworkStream:
        self.calls.append(("start_tls", server_hostname))
        raise httpcore.ConnectError("stop here")

    async def aclose(self) -> None:
        pass


class RecordingBackend(httpcore.AsyncNetworkBackend):
    def __init__(self, failing: Iterable[str] = ()) -> None:
        self.calls: list[tuple[str, object]] = []
        self.failing = set(failing)

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,  # noqa: ASYNC109
        local_address: str | None = None,
        socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        self.calls.append(("connect_tcp", (host, port)))
        if host in self.failing:
            raise httpcore.ConnectError(f"{host} unreachable")
        return RecordingStream(self.calls)


async def test_tls_uses_the_hostname_while_the_socket_uses_the_checked_ip() -> None:
    backend = RecordingBackend(failing={"2606:4700::1"})
    resolve = FakeResolver({"hooks.example": ["2606:4700::1", "93.184.215.14"]})
    pool = httpcore.AsyncConnectionPool(
        network_backend=GuardedBackend((), backend=backend, resolve=resolve)
    )
    async with pool:
        with pytest.raises(httpcore.ConnectError, match="stop here"):
            await pool.request("POST", "https://hooks.example/hook", content=b"{}")
    assert backend.calls == [
        ("connect_tcp", ("2606:4700::1", 443)),
        ("connect_tcp", ("93.184.215.14", 443)),
        ("start_tls", "hooks.example"),
    ]


async def test_nothing_is_connected_when_one_address_is_refused() -> None:
    backend = RecordingBackend()
    resolve = FakeResolver({"hooks.example": ["93.184.215.14", "169.254.169.254"]})
    guarded = GuardedBackend((), backend=backend, resolve=resolve)
    with pytest.raises(AddressRefusedError) as refused:
        await guarded.connect_tcp("hooks.example", 443)
    assert refused.value.address == ipaddress.ip_address("169.254.169.254")
    assert "169.254.169.254" in str(refused.value)
    with pytest.raises(AddressRefusedError):
        await guarded.connect_unix_socket("/var/run/docker.sock")
    assert backend.calls == []
