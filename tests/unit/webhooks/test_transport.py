"""The guarded delivery client against a tiny HTTP server on 127.0.0.1."""

from __future__ import annotations

import asyncio
import ipaddress
import ssl
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

import pytest

from loyalty.webhooks.transport import (
    AddressRefusedError,
    ConnectFailedError,
    DeliveryClient,
)
from loyalty.webhooks.urls import IPAddress, parse_allowed_networks

LOOPBACK = parse_allowed_networks("127.0.0.0/8")


@dataclass
class Server:
    """Answers every request on a kept-alive connection; counts connections."""

    port: int = 0
    connections: int = 0
    requests: list[bytes] = field(default_factory=list)
    redirect: bool = False
    # Close each connection after one answer, without saying so.
    one_per_connection: bool = False
    large: bool = False

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
                elif self.large:
                    size = 10 * 1024 * 1024
                    writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % size)
                    writer.write(b"x" * size)
                else:
                    writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
                await writer.drain()
                if self.one_per_connection:
                    return
        except ConnectionError:
            return
        finally:
            writer.close()


@asynccontextmanager
async def serving(
    *, redirect: bool = False, one_per_connection: bool = False, large: bool = False
) -> AsyncIterator[Server]:
    server = Server(redirect=redirect, one_per_connection=one_per_connection, large=large)
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


BODY = b"{}"


async def post(client: DeliveryClient, url: str) -> tuple[int, bytes, dict[str, str]]:
    reply = await client.post(url, BODY, {"content-type": "application/json"})
    return reply.status, reply.body, reply.headers


async def test_allowed_network_gets_through() -> None:
    client = DeliveryClient(LOOPBACK)
    async with serving() as server:
        status, body, _ = await post(client, f"http://127.0.0.1:{server.port}/hook?x=1")
    await client.aclose()
    assert (status, body) == (200, b"ok")
    assert server.connections == 1
    assert server.requests[0].startswith(b"POST /hook?x=1 HTTP/1.1\r\n")


async def test_refused_at_connect_time_without_the_allowance() -> None:
    client = DeliveryClient(())
    async with serving() as server:
        for host in ("127.0.0.1", "localhost", "[::ffff:127.0.0.1]", "2130706433"):
            with pytest.raises(AddressRefusedError) as refused:
                await post(client, f"http://{host}:{server.port}/")
            # The http:// rule: nothing outside the allowed networks.
            assert "only allowed for addresses inside" in str(refused.value)
            with pytest.raises(AddressRefusedError, match="loopback address"):
                await post(client, f"https://{host}:{server.port}/")
        await asyncio.sleep(0.05)
    assert server.connections == 0


async def test_hostname_connects_to_its_checked_address_with_its_own_host_header() -> None:
    resolve = FakeResolver({"hooks.test": ["127.0.0.1"], "mixed.test": ["127.0.0.1", "10.0.0.1"]})
    client = DeliveryClient(LOOPBACK, resolve=resolve)
    async with serving() as server:
        assert (await post(client, f"http://hooks.test:{server.port}/"))[0] == 200
        with pytest.raises(AddressRefusedError, match=r"10\.0\.0\.1"):
            await post(client, f"http://mixed.test:{server.port}/")
        with pytest.raises(AddressRefusedError, match=r"private address \(10\.0\.0\.1\)"):
            await post(client, f"https://mixed.test:{server.port}/")
        with pytest.raises(ConnectFailedError, match="could not be resolved"):
            await post(client, f"http://unknown.test:{server.port}/")
    await client.aclose()
    assert f"host: hooks.test:{server.port}".encode() in server.requests[0].lower()
    assert server.connections == 1


async def test_redirects_are_not_followed() -> None:
    client = DeliveryClient(LOOPBACK)
    async with serving(redirect=True) as server:
        status, _, headers = await post(client, f"http://127.0.0.1:{server.port}/")
    await client.aclose()
    assert status == 302
    assert headers["location"] == f"http://127.0.0.1:{server.port}/other"
    assert len(server.requests) == 1


async def test_connections_are_reused() -> None:
    client = DeliveryClient(LOOPBACK)
    async with serving() as server:
        for _ in range(3):
            assert (await post(client, f"http://127.0.0.1:{server.port}/"))[0] == 200
    await client.aclose()
    assert (server.connections, len(server.requests)) == (1, 3)


async def test_a_connection_closed_by_the_receiver_is_replaced() -> None:
    client = DeliveryClient(LOOPBACK)
    async with serving(one_per_connection=True) as server:
        for _ in range(3):
            assert (await post(client, f"http://127.0.0.1:{server.port}/"))[0] == 200
            await asyncio.sleep(0.01)
    await client.aclose()
    assert (server.connections, len(server.requests)) == (3, 3)


async def test_a_large_answer_is_cut_and_its_connection_closed() -> None:
    client = DeliveryClient(LOOPBACK)
    async with serving(large=True) as server:
        status, body, _ = await post(client, f"http://127.0.0.1:{server.port}/")
        assert (status, body) == (200, b"x" * 1024)
        await post(client, f"http://127.0.0.1:{server.port}/")
    await client.aclose()
    assert server.connections == 2


async def test_later_addresses_are_tried_when_the_first_fails() -> None:
    # The server listens on 127.0.0.1 only: 127.0.0.2 refuses the connection.
    resolve = FakeResolver({"h.test": ["127.0.0.2", "127.0.0.1"], "down.test": ["127.0.0.2"]})
    client = DeliveryClient(LOOPBACK, resolve=resolve)
    async with serving() as server:
        connection = await client.connect("http", "h.test", server.port)
        assert connection.writer.get_extra_info("peername")[:2] == ("127.0.0.1", server.port)
        connection.close()
        with pytest.raises(ConnectFailedError):
            await client.connect("http", "down.test", server.port)
    assert server.connections == 1


class RecordingOpener:
    def __init__(self) -> None:
        self.calls: list[tuple[str, int, str | None, bool]] = []

    async def __call__(
        self,
        host: str,
        port: int,
        ssl: ssl.SSLContext | None = None,
        server_hostname: str | None = None,
    ) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        self.calls.append((host, port, server_hostname, ssl is not None))
        raise OSError(f"{host} unreachable")


async def test_tls_uses_the_hostname_while_the_socket_uses_the_checked_ip() -> None:
    opener = RecordingOpener()
    resolve = FakeResolver({"hooks.example": ["2606:4700::1", "93.184.215.14"]})
    client = DeliveryClient((), resolve=resolve, open_connection=opener)
    with pytest.raises(ConnectFailedError, match="unreachable"):
        await post(client, "https://hooks.example/hook")
    assert opener.calls == [
        ("2606:4700::1", 443, "hooks.example", True),
        ("93.184.215.14", 443, "hooks.example", True),
    ]


async def test_nothing_is_connected_when_one_address_is_refused() -> None:
    opener = RecordingOpener()
    resolve = FakeResolver({"hooks.example": ["93.184.215.14", "169.254.169.254"]})
    client = DeliveryClient((), resolve=resolve, open_connection=opener)
    with pytest.raises(AddressRefusedError) as refused:
        await post(client, "https://hooks.example/hook")
    assert refused.value.address == ipaddress.ip_address("169.254.169.254")
    assert "169.254.169.254" in str(refused.value)
    assert opener.calls == []
