"""The HTTP client for webhook deliveries, guarded against SSRF at connect time.

httpcore asks its network backend to ``connect_tcp(host, port)`` with the
URL's host name, then calls ``start_tls`` on the returned stream with that
same host name (SNI and certificate check), and sends the ``Host`` header
from the URL. ``GuardedBackend`` resolves the host itself, checks EVERY
address and connects the wrapped backend to a checked IP address, so a DNS
answer that changed since the URL was accepted cannot reach an internal
address, while TLS and ``Host`` still use the original name.
"""

from __future__ import annotations

import ssl
from collections.abc import Iterable, Sequence

import anyio
import httpcore
import httpx

from loyalty.webhooks.urls import (
    IPAddress,
    Network,
    Resolver,
    WebhookURLError,
    resolve_checked,
)

KEEPALIVE_EXPIRY_SECONDS = 5.0


class AddressRefusedError(httpcore.ConnectError):
    """A connection refused before it was attempted (httpx raises ``httpx.ConnectError``)."""

    def __init__(self, host: str, reason: str, address: IPAddress | None = None) -> None:
        super().__init__(f"webhook connection to {host!r} refused: {reason}")
        self.host = host
        self.reason = reason
        self.address = address


class GuardedBackend(httpcore.AsyncNetworkBackend):
    """A network backend that connects only to addresses the webhook rules allow.

    ``https``: the backend of the https:// transport (an address inside
    ``allowed`` or globally routable); otherwise of the http:// one (inside
    ``allowed`` only), so the scheme's rule holds at every connection.
    """

    def __init__(
        self,
        allowed: Sequence[Network],
        *,
        backend: httpcore.AsyncNetworkBackend | None = None,
        resolve: Resolver | None = None,
        https: bool = True,
    ) -> None:
        self._allowed = tuple(allowed)
        self._https = https
        # AnyIOBackend runs on asyncio (uvloop included); httpcore's own
        # AutoBackend merely picks it when not on trio.
        self._backend = httpcore.AnyIOBackend() if backend is None else backend
        self._resolve = resolve

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,  # noqa: ASYNC109 (httpcore's interface)
        local_address: str | None = None,
        socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        deadline = None if timeout is None else anyio.current_time() + timeout
        try:
            with anyio.fail_after(timeout):
                addresses = await resolve_checked(
                    host, port, self._allowed, https=self._https, resolve=self._resolve
                )
        except TimeoutError as error:
            raise httpcore.ConnectTimeout(f"resolving {host!r} timed out") from error
        except WebhookURLError as error:
            if error.address is None:
                raise httpcore.ConnectError(f"{host!r}: {error}") from error
            raise AddressRefusedError(host, str(error), error.address) from error
        last_error: httpcore.ConnectError | httpcore.ConnectTimeout | None = None
        for address in addresses:
            remaining = None if deadline is None else deadline - anyio.current_time()
            if remaining is not None and remaining <= 0:
                raise httpcore.ConnectTimeout(f"connecting to {host!r} timed out")
            try:
                return await self._backend.connect_tcp(
                    str(address),
                    port,
                    timeout=remaining,
                    local_address=local_address,
                    socket_options=socket_options,
                )
            except (httpcore.ConnectError, httpcore.ConnectTimeout) as error:
                last_error = error
        assert last_error is not None  # resolve_checked never returns no address
        raise last_error

    async def connect_unix_socket(
        self,
        path: str,
        timeout: float | None = None,  # noqa: ASYNC109 (httpcore's interface)
        socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        raise AddressRefusedError(path, "webhooks never use Unix sockets")

    async def sleep(self, seconds: float) -> None:
        await self._backend.sleep(seconds)


def _ssl_context() -> ssl.SSLContext:
    # What httpx builds by default (certifi's CA bundle), without reading
    # SSL_CERT_FILE / SSL_CERT_DIR from the environment.
    return httpx.create_ssl_context(verify=True, trust_env=False)


def make_client(
    allowed: Sequence[Network],
    *,
    timeout_seconds: float,
    max_connections: int = 100,
    max_keepalive: int = 100,
    resolve: Resolver | None = None,
) -> httpx.AsyncClient:
    """One reusable client for deliveries: no redirects, no proxy, guarded connects.

    ``resolve`` replaces the system resolver (tests).
    """
    ssl_context = _ssl_context()
    limits = httpx.Limits(
        max_connections=max_connections,
        max_keepalive_connections=max_keepalive,
        keepalive_expiry=KEEPALIVE_EXPIRY_SECONDS,
    )

    def transport(https: bool) -> httpx.AsyncHTTPTransport:
        guarded = httpx.AsyncHTTPTransport(verify=ssl_context, trust_env=False, limits=limits)
        # httpx offers no network_backend option: swap the pool it built (never
        # opened, it holds no connection) for one on the guarded backend.
        guarded._pool = httpcore.AsyncConnectionPool(
            ssl_context=ssl_context,
            max_connections=limits.max_connections,
            max_keepalive_connections=limits.max_keepalive_connections,
            keepalive_expiry=limits.keepalive_expiry,
            http1=True,
            http2=False,
            network_backend=GuardedBackend(allowed, resolve=resolve, https=https),
        )
        return guarded

    return httpx.AsyncClient(
        # Each scheme's rule at connect time: http:// only inside ``allowed``.
        mounts={"https://": transport(True), "http://": transport(False)},
        timeout=httpx.Timeout(timeout_seconds),
        follow_redirects=False,
        trust_env=False,
    )


__all__ = ["AddressRefusedError", "GuardedBackend", "make_client"]
