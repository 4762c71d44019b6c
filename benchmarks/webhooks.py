"""Webhook delivery benchmark: one ``loyalty worker`` against a local receiver.

    python -m benchmarks.webhooks [--seconds 20] [--rate 500] [--backlog 20000]

On a fresh Postgres database (created here, dropped at the end) with one
merchant and one webhook endpoint pointing at a local receiver (its own
process, uvloop + a raw asyncio protocol answering ``200`` at once), it
measures:

0. **Warm-up**: 500 events delivered end to end by a worker, then ``ANALYZE``
   (``--analyze before``): the statistics autovacuum keeps in a steady state
   (events stamped, nothing pending), whether or not autovacuum runs here.
1. **Backlog drain**: ``--backlog`` credits are made through the API
   (``loyalty serve --workers 2``, wrk) with no worker running, then ONE
   ``loyalty worker`` is started; deliveries/s as the receiver sees them, and
   whether every event id arrived (missing, duplicates). At most
   ``--drain-timeout`` seconds: what is left then is given up (marked failed).
2. **Lag under load**: with a worker running, an open-loop client paces
   ``--rate`` credits/s at the API for ``--seconds``; lag = receive time -
   the body's ``timestamp`` (the event's creation in the committing
   transaction), p50/p99/max; events not delivered ``--lag-wait`` seconds
   after the load count with the lag they had then (the figures are then
   lower bounds).
3. **Adjust throughput, one active endpoint vs none**: the harness's wrk
   adjust (``benchmarks/adjust.lua``, ``--clients`` connections) with the
   worker running, first with no endpoint, then with one, and the ratio.

Also reported: the worker's CPU per delivery (user and kernel), Postgres
commits and ``webhook_attempts`` rows read per delivery, and how busy the
whole machine was in each phase (others' load skews every figure).
``--py-spy FILE`` profiles the worker during the drain.

Prints a table and the figures as JSON, and writes both to
``benchmarks/results/webhooks-*.{json,txt}``. Every process it starts is
stopped and the database dropped, even on failure. Needs ``wrk``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar, cast

import asyncpg
import httpx
import msgspec

from benchmarks.__main__ import (
    HERE,
    RESULTS,
    Result,
    _admin,
    _suppress_missing_process,
    free_port,
    run_wrk,
    seed,
    server,
    write_wrk_config,
)
from benchmarks.machine import percentile

T = TypeVar("T")

ALLOWED_NETWORKS = {"LOYALTY_WEBHOOK_ALLOWED_NETWORKS": "127.0.0.0/8"}
TRANSACTIONS_PATH = "/api/v1/public/customers/transactions"
STARTUP_SECONDS_MAX = 30
_CLOCK_TICKS = os.sysconf("SC_CLK_TCK")

# --- the receiver (its own process) ----------------------------------------

_OK = b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"
_TIMESTAMP = b'"timestamp":"'


class _Records:
    """What arrived: per POST its arrival (wall clock), ``webhook-id`` and body timestamp."""

    def __init__(self) -> None:
        self.arrivals: list[float] = []
        self.ids: list[bytes] = []
        self.timestamps: list[bytes] = []

    def add(self, webhook_id: bytes, body: bytes) -> None:
        self.arrivals.append(time.time())
        self.ids.append(webhook_id)
        start = body.find(_TIMESTAMP)
        if start < 0:
            self.timestamps.append(b"")
            return
        start += len(_TIMESTAMP)
        self.timestamps.append(body[start : body.find(b'"', start)])

    def control(self, request_line: bytes) -> bytes:
        """``GET /stats`` (count, CPU seconds) and ``GET /records?from=N``."""
        target = request_line.split(b" ")[1].decode()
        path, _, query = target.partition("?")
        if path == "/records":
            start = int(query.partition("=")[2] or 0)
            payload: dict[str, Any] = {
                "arrivals": self.arrivals[start:],
                "ids": [value.decode() for value in self.ids[start:]],
                "timestamps": [value.decode() for value in self.timestamps[start:]],
            }
        else:
            payload = {"count": len(self.arrivals), "cpu_seconds": time.process_time()}
        body = msgspec.json.encode(payload)
        return (
            b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
            b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body
        )


class _ReceiverProtocol(asyncio.Protocol):
    """HTTP/1.1 keep-alive, Content-Length bodies only (what httpx sends)."""

    def __init__(self, records: _Records) -> None:
        self._records = records
        self._buffer = bytearray()
        self._transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = cast(asyncio.Transport, transport)  # uvloop's is not a subclass

    def data_received(self, data: bytes) -> None:
        buffer = self._buffer
        buffer += data
        assert self._transport is not None
        while True:
            end = buffer.find(b"\r\n\r\n")
            if end < 0:
                return
            lines = bytes(buffer[:end]).split(b"\r\n")
            length = 0
            webhook_id = b""
            for line in lines[1:]:
                name, _, value = line.partition(b":")
                name = name.strip().lower()
                if name == b"content-length":
                    length = int(value)
                elif name == b"webhook-id":
                    webhook_id = value.strip()
            total = end + 4 + length
            if len(buffer) < total:
                return
            body = bytes(buffer[end + 4 : total])
            del buffer[:total]
            if lines[0].startswith(b"POST "):
                self._records.add(webhook_id, body)
                self._transport.write(_OK)
            else:
                self._transport.write(self._records.control(lines[0]))


def run_receiver(port: int) -> None:
    import uvloop

    async def main() -> None:
        loop = asyncio.get_running_loop()
        records = _Records()
        stop = asyncio.Event()
        loop.add_signal_handler(signal.SIGTERM, stop.set)
        loop.add_signal_handler(signal.SIGINT, stop.set)
        listening = await loop.create_server(
            lambda: _ReceiverProtocol(records), "127.0.0.1", port, backlog=1024
        )
        await stop.wait()
        listening.close()

    uvloop.run(main())


@dataclass
class Received:
    arrivals: list[float]
    ids: list[str]
    timestamps: list[str]


class Receiver:
    def __init__(self, url: str, process: subprocess.Popen[bytes]) -> None:
        self.url = url
        self.process = process

    def stats(self) -> tuple[int, float]:
        body = httpx.get(f"{self.url}/stats", timeout=10).json()
        return int(body["count"]), float(body["cpu_seconds"])

    def count(self) -> int:
        return self.stats()[0]

    def records(self, start: int) -> Received:
        body = httpx.get(f"{self.url}/records", params={"from": start}, timeout=60).json()
        return Received(body["arrivals"], body["ids"], body["timestamps"])


@contextmanager
def _process(
    command: list[str], directory: Path, log_name: str, environment: dict[str, str]
) -> Iterator[subprocess.Popen[bytes]]:
    """A process in its own session, stopped (SIGTERM, then SIGKILL) on the way out."""
    log = (directory / log_name).open("wb")
    process = subprocess.Popen(
        command,
        env=environment,
        cwd=HERE.parent,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        yield process
    finally:
        with _suppress_missing_process():
            os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            with _suppress_missing_process():
                os.killpg(process.pid, signal.SIGKILL)
            process.wait()
        log.close()


@contextmanager
def receiver(directory: Path) -> Iterator[Receiver]:
    port = free_port()
    command = [sys.executable, "-m", "benchmarks.webhooks", "--receiver-port", str(port)]
    with _process(command, directory, "receiver.log", dict(os.environ)) as process:
        running = Receiver(f"http://127.0.0.1:{port}", process)
        deadline = time.monotonic() + STARTUP_SECONDS_MAX
        while True:
            try:
                running.count()
                break
            except httpx.TransportError:
                pass
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"receiver did not start; see {directory / 'receiver.log'}")
            time.sleep(0.1)
        yield running


@contextmanager
def worker(database_url: str, directory: Path) -> Iterator[subprocess.Popen[bytes]]:
    """ONE ``loyalty worker`` (webhook delivery and the scheduled jobs)."""
    environment = {
        **os.environ,
        "LOYALTY_DATABASE_URL": database_url,
        "LOYALTY_LOG_LEVEL": "warning",
        **ALLOWED_NETWORKS,
    }
    command = [sys.executable, "-m", "loyalty", "worker"]
    with _process(command, directory, "worker.log", environment) as process:
        yield process


class MachineCPU:
    """How busy all CPUs were since it was made (``/proc/stat``): every process of the
    machine counts, so others' load (which skews every figure here) shows."""

    def __init__(self) -> None:
        self._start = self._sample()

    @staticmethod
    def _sample() -> tuple[int, int]:
        values = [int(v) for v in Path("/proc/stat").read_text().split("\n")[0].split()[1:]]
        idle = values[3] + values[4]
        return sum(values) - idle, sum(values)

    def busy_percent(self) -> float:
        busy, total = self._sample()
        return (busy - self._start[0]) / max(1, total - self._start[1]) * 100


def machine_busy_percent(seconds: float = 1.0) -> float:
    meter = MachineCPU()
    time.sleep(seconds)
    return meter.busy_percent()


def cpu_times(pid: int) -> tuple[float, float]:
    """User and system CPU seconds of a process so far (``/proc``)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return int(fields[11]) / _CLOCK_TICKS, int(fields[12]) / _CLOCK_TICKS


def cpu_seconds(pid: int) -> float:
    return sum(cpu_times(pid))


# --- the database ----------------------------------------------------------


def query(dsn: str, work: Callable[[asyncpg.Connection], Awaitable[T]]) -> T:
    async def run() -> T:
        connection = await asyncpg.connect(dsn)
        try:
            return await work(connection)
        finally:
            await connection.close()

    return asyncio.run(run())


def fetch_value(dsn: str, sql: str) -> Any:
    return query(dsn, lambda connection: connection.fetchval(sql))


def event_ids(dsn: str) -> set[str]:
    async def work(connection: asyncpg.Connection) -> set[str]:
        return {str(row["id"]) for row in await connection.fetch("SELECT id FROM events")}

    return query(dsn, work)


def backlog_state(dsn: str) -> tuple[int, int]:
    """(events not yet stamped by the relay, attempts still pending)."""

    async def work(connection: asyncpg.Connection) -> tuple[int, int]:
        unstamped = await connection.fetchval("SELECT count(*) FROM events WHERE sequence IS NULL")
        pending = await connection.fetchval(
            "SELECT count(*) FROM webhook_attempts WHERE status = 'pending'"
        )
        return int(unstamped), int(pending)

    return query(dsn, work)


def attempt_counts(dsn: str) -> dict[str, int]:
    async def work(connection: asyncpg.Connection) -> dict[str, int]:
        rows = await connection.fetch(
            "SELECT status, count(*) AS n FROM webhook_attempts GROUP BY status"
        )
        return {row["status"]: int(row["n"]) for row in rows}

    return query(dsn, work)


def wait_drained(dsn: str, timeout_seconds: float) -> float | None:
    """Seconds until every event is relayed and no attempt is pending (None: timed out)."""
    started = time.monotonic()
    while time.monotonic() - started < timeout_seconds:
        if backlog_state(dsn) == (0, 0):
            return time.monotonic() - started
        time.sleep(0.1)
    return None


# --- the API ---------------------------------------------------------------


def api(base_url: str, token: str) -> httpx.Client:
    return httpx.Client(base_url=base_url, headers={"Authorization": f"Bearer {token}"}, timeout=30)


def register_endpoint(base_url: str, token: str, url: str) -> str:
    with api(base_url, token) as client:
        response = client.post(
            "/api/v1/webhooks",
            json={"url": url, "description": "benchmark receiver"},
            headers={"Idempotency-Key": uuid.uuid4().hex},
        )
    if response.status_code != 201:
        raise RuntimeError(f"registering the endpoint: {response.status_code} {response.text}")
    return str(response.json()["data"]["id"])


def delete_endpoint(base_url: str, token: str, endpoint_id: str) -> None:
    with api(base_url, token) as client:
        response = client.delete(
            f"/api/v1/webhooks/{endpoint_id}", headers={"Idempotency-Key": uuid.uuid4().hex}
        )
    if response.status_code != 204:
        raise RuntimeError(f"deleting the endpoint: {response.status_code} {response.text}")


def make_backlog(
    base_url: str, config: Path, dsn: str, events: int, clients: int, directory: Path
) -> float:
    """Adjust through the API (wrk) until ``events`` unstamped events exist; returns seconds."""
    script = directory / "adjust-limited.lua"
    script.write_text(
        f"dofile({json.dumps(str(HERE / 'adjust.lua'))})\n"
        f"local limit, done = {events}, 0\n"
        "response = function(status, headers, body)\n"
        "  done = done + 1\n"
        "  if done >= limit then wrk.thread:stop() end\n"
        "end\n"
    )
    environment = {**os.environ, "LOYALTY_BENCH_CONFIG": str(config)}
    command = ["wrk", "-t1", f"-c{clients}", "-d600s", "--timeout", "10s", "-s", str(script)]
    started = time.monotonic()
    process = subprocess.Popen(
        [*command, base_url], env=environment, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
    )
    try:
        last, last_change = -1, time.monotonic()
        while process.poll() is None:
            count = int(fetch_value(dsn, "SELECT count(*) FROM events WHERE sequence IS NULL"))
            if count >= events:
                break
            if count != last:
                last, last_change = count, time.monotonic()
            elif time.monotonic() - last_change > 5:
                raise RuntimeError(f"the backlog stopped growing at {count} events")
            time.sleep(0.1)
        return time.monotonic() - started
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGINT)
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@dataclass
class PacedLoad:
    requested: int = 0
    succeeded: int = 0
    errors: int = 0
    seconds: float = 0.0
    # From each request's scheduled start (no coordinated omission).
    latencies_ms: list[float] = field(default_factory=list)


async def _read_response(reader: asyncio.StreamReader) -> int:
    """One HTTP/1.1 response (Content-Length or chunked); returns its status."""
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    status = int(lines[0].split(b" ", 2)[1])
    length = 0
    chunked = False
    for line in lines[1:]:
        name, _, value = line.partition(b":")
        name = name.strip().lower()
        if name == b"content-length":
            length = int(value)
        elif name == b"transfer-encoding":
            chunked = b"chunked" in value.lower()
    if not chunked:
        await reader.readexactly(length)
        return status
    while True:
        size = int((await reader.readuntil(b"\r\n")).split(b";")[0], 16)
        await reader.readexactly(size + 2)
        if size == 0:
            return status


async def paced_credits(
    base_url: str, token: str, customers: int, rate: float, seconds: float, connections: int
) -> PacedLoad:
    """Open loop: credit i is due at start + i / rate, whatever the answers take; up to
    ``connections`` keep-alive connections take the due credits in order. A raw asyncio
    HTTP/1.1 client: httpx's pool costs milliseconds of CPU per request once requests
    queue, and the client would become the bottleneck."""
    load = PacedLoad()
    prefix = uuid.uuid4().hex
    url = httpx.URL(base_url)
    host, port = url.host, url.port or 80
    head = (
        f"Host: {host}:{port}\r\nAuthorization: Bearer {token}\r\n"
        "Content-Type: application/json\r\n"
    )
    due: asyncio.Queue[tuple[int, float] | None] = asyncio.Queue()

    def request(number: int) -> bytes:
        body = f'{{"points": {random.randint(1, 10)}, "description": "benchmark"}}'
        return (
            f"POST {TRANSACTIONS_PATH}?customer_id=c{random.randint(1, customers)} HTTP/1.1\r\n"
            f"{head}Idempotency-Key: {prefix}-{number}\r\nContent-Length: {len(body)}\r\n\r\n"
            f"{body}"
        ).encode()

    async def connection() -> None:
        streams: tuple[asyncio.StreamReader, asyncio.StreamWriter] | None = None
        while (item := await due.get()) is not None:
            number, scheduled = item
            try:
                if streams is None:
                    streams = await asyncio.open_connection(host, port)
                reader, writer = streams
                writer.write(request(number))
                status = await asyncio.wait_for(_read_response(reader), 30)
                if 200 <= status < 300:
                    load.succeeded += 1
                else:
                    load.errors += 1
            except (OSError, TimeoutError, asyncio.IncompleteReadError, ValueError):
                load.errors += 1
                if streams is not None:
                    streams[1].close()
                streams = None
            load.latencies_ms.append((time.perf_counter() - scheduled) * 1000)
        if streams is not None:
            streams[1].close()

    clients = [asyncio.create_task(connection()) for _ in range(connections)]
    total = int(rate * seconds)
    start = time.perf_counter() + 0.05
    for number in range(total):
        scheduled = start + number / rate
        delay = scheduled - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        due.put_nowait((number, scheduled))
    for _ in clients:
        due.put_nowait(None)
    await asyncio.gather(*clients)
    load.requested = total
    load.seconds = time.perf_counter() - start
    return load


# --- the run ---------------------------------------------------------------


@dataclass
class Delivered:
    """What the receiver got for a set of expected events."""

    events: int
    received: int
    unique: int
    duplicates: int
    missing: int
    unexpected: int


def check_delivered(expected: set[str], received: Received) -> Delivered:
    unique = set(received.ids)
    return Delivered(
        events=len(expected),
        received=len(received.ids),
        unique=len(unique & expected),
        duplicates=len(received.ids) - len(unique),
        missing=len(expected - unique),
        unexpected=len(unique - expected),
    )


def lags_ms(received: Received) -> list[float]:
    return [
        (arrival - datetime.fromisoformat(stamp).timestamp()) * 1000
        for arrival, stamp in zip(received.arrivals, received.timestamps, strict=True)
        if stamp
    ]


@dataclass
class Drain:
    backlog_seconds: float = 0.0  # making the backlog through the API
    delivered: Delivered | None = None
    first_arrival_s: float = 0.0  # after the worker was started
    last_arrival_s: float = 0.0
    deliveries_per_second: float = 0.0  # first → last arrival
    deliveries_per_second_from_start: float = 0.0  # worker start → last arrival
    deliveries_per_second_middle: float = 0.0  # 10th → 90th percentile of arrivals
    worker_cpu_us_per_delivery: float = 0.0
    worker_cpu_percent: float = 0.0
    worker_cpu_system_percent: float = 0.0  # of its CPU, in the kernel
    machine_busy_percent: float = 0.0  # all CPUs, every process, during the drain
    receiver_cpu_us_per_delivery: float = 0.0
    # Postgres, per delivery: commits in the database, webhook_attempts rows read.
    commits_per_delivery: float = 0.0
    attempt_rows_read_per_delivery: float = 0.0
    analyze: str = ""  # when ANALYZE ran: before the backlog, after it, or never (none)
    attempts: dict[str, int] = field(default_factory=dict)
    drained: bool = False
    given_up: int = 0  # attempts still pending at --drain-timeout, then marked failed


@dataclass
class Lag:
    rate_requested: float = 0.0
    seconds: float = 0.0
    credits_per_second: float = 0.0
    credit_errors: int = 0
    credit_ms_p50: float = 0.0
    credit_ms_p99: float = 0.0
    delivered: Delivered | None = None
    lag_ms_p50: float = 0.0
    lag_ms_p90: float = 0.0
    lag_ms_p99: float = 0.0
    lag_ms_max: float = 0.0
    worker_cpu_percent: float = 0.0
    machine_busy_percent: float = 0.0  # while the load ran
    drained_after_s: float | None = None
    waited_s: float = 0.0  # for the rest to be delivered, after the load, at most
    lower_bounds: bool = False  # some events were not delivered: lags are at least these


@dataclass
class Adjust:
    endpoint: bool
    result: Result
    events: int
    deliveries_during: int
    worker_cpu_percent: float
    machine_busy_percent: float
    drained_after_s: float | None = None


@dataclass
class WebhookRun:
    started_at: str
    options: dict[str, object]
    drain: Drain = field(default_factory=Drain)
    lag: Lag = field(default_factory=Lag)
    adjust: list[Adjust] = field(default_factory=list)
    delivered_after_adjust: Delivered | None = None

    def adjust_rate(self, endpoint: bool) -> float:
        rates = [a.result.requests_per_second for a in self.adjust if a.endpoint == endpoint]
        return sum(rates) / len(rates) if rates else float("nan")


def measure(options: argparse.Namespace, run: WebhookRun, directory: Path) -> None:
    admin_url: str = options.postgres_url
    name = f"loyalty_bench_webhooks_{uuid.uuid4().hex[:10]}"
    base, _, _ = admin_url.rpartition("/")
    dsn = f"{base}/{name}"
    asyncio.run(_admin(admin_url, f'CREATE DATABASE "{name}"'))
    try:
        print(f"seeding 1 merchant with {options.customers:,} customers…")
        token = asyncio.run(seed(dsn, 1, options.customers))[0]
        run.options["postgres_autovacuum"] = fetch_value(dsn, "SHOW autovacuum")
        config = write_wrk_config(directory, "spread", [token], options.customers, hot=False)
        with (
            receiver(directory) as sink,
            server(dsn, options.workers, directory, extra_environment=ALLOWED_NETWORKS) as base_url,
        ):
            hook_url = f"{sink.url}/hook"
            endpoint_id = register_endpoint(base_url, token, hook_url)
            warm_up(options, dsn, base_url, config, sink, directory)
            measure_drain(options, run.drain, dsn, base_url, config, sink, directory)
            with worker(dsn, directory) as process:
                # The backlog is delivered (measure_drain ran its own worker): idle now.
                if wait_drained(dsn, options.drain_timeout) is None:
                    raise RuntimeError("the worker did not settle after its start")
                measure_lag(options, run.lag, dsn, base_url, token, sink, process.pid)
                if run.lag.drained_after_s is None:
                    give_up_pending(dsn)
                print("adjust with no endpoint, then with one…")
                delete_endpoint(base_url, token, endpoint_id)
                run.delivered_after_adjust = compare_adjust(
                    options, run, dsn, base_url, token, config, sink, hook_url, process.pid
                )
    finally:
        asyncio.run(_admin(admin_url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


def warm_up(
    options: argparse.Namespace,
    dsn: str,
    base_url: str,
    config: Path,
    sink: Receiver,
    directory: Path,
) -> None:
    """A few hundred events delivered end to end (the pipeline works), then, with
    ``--analyze before``, statistics as autovacuum keeps them in a steady state: events
    stamped, no attempt pending."""
    print("warming up: 500 events delivered end to end…")
    make_backlog(base_url, config, dsn, 500, options.clients, directory)
    start = sink.count()
    with worker(dsn, directory):
        if wait_drained(dsn, options.drain_timeout) is None:
            raise RuntimeError(f"the warm-up was not delivered; see {directory / 'worker.log'}")
    if sink.count() == start:
        raise RuntimeError("the receiver got nothing in the warm-up")
    if options.analyze == "before":
        query(dsn, lambda connection: connection.execute("ANALYZE"))


def compare_adjust(
    options: argparse.Namespace,
    run: WebhookRun,
    dsn: str,
    base_url: str,
    token: str,
    config: Path,
    sink: Receiver,
    hook_url: str,
    worker_pid: int,
) -> Delivered:
    """Adjust with no endpoint, then with one (``--rounds`` times), the worker running;
    everything is delivered before the next measurement. Returns what the endpoint got."""
    expected: set[str] = set()
    start = sink.count()
    for round_number in range(1, options.rounds + 1):
        run.adjust.append(measure_adjust(options, False, dsn, base_url, config, sink, worker_pid))
        run.adjust[-1].drained_after_s = wait_drained(dsn, options.drain_timeout)
        before = event_ids(dsn)
        endpoint_id = register_endpoint(base_url, token, hook_url)
        run.adjust.append(measure_adjust(options, True, dsn, base_url, config, sink, worker_pid))
        last = round_number == options.rounds
        # After the last measurement only a while: it is measured, this is a check.
        timeout = min(options.drain_timeout, 15) if last else options.drain_timeout
        run.adjust[-1].drained_after_s = wait_drained(dsn, timeout)
        # Deleting the endpoint deletes its attempts: which events it got, first.
        expected |= events_with_attempts(dsn) - before
        delete_endpoint(base_url, token, endpoint_id)
    return check_delivered(expected, sink.records(start))


def events_with_attempts(dsn: str) -> set[str]:
    async def work(connection: asyncpg.Connection) -> set[str]:
        rows = await connection.fetch("SELECT DISTINCT event_id FROM webhook_attempts")
        return {str(row["event_id"]) for row in rows}

    return query(dsn, work)


def measure_drain(
    options: argparse.Namespace,
    drain: Drain,
    dsn: str,
    base_url: str,
    config: Path,
    sink: Receiver,
    directory: Path,
) -> None:
    print(f"making a backlog of {options.backlog:,} events through the API (no worker)…")
    drain.backlog_seconds = make_backlog(
        base_url, config, dsn, options.backlog, options.clients, directory
    )

    async def unstamped(connection: asyncpg.Connection) -> set[str]:
        rows = await connection.fetch("SELECT id FROM events WHERE sequence IS NULL")
        return {str(row["id"]) for row in rows}

    expected = query(dsn, unstamped)
    if options.analyze == "after":
        query(dsn, lambda connection: connection.execute("ANALYZE"))
    drain.analyze = options.analyze
    start, receiver_cpu = sink.stats()
    print(f"starting one worker on {len(expected):,} events…")
    started = time.time()
    machine = MachineCPU()
    with worker(dsn, directory) as process:
        user, system = cpu_times(process.pid)
        counters = postgres_counters(dsn)
        with profiled(process.pid, options.py_spy):
            drained = wait_drained(dsn, options.drain_timeout)
        elapsed = time.time() - started
        user_end, system_end = cpu_times(process.pid)
        worker_cpu = user_end - user + system_end - system
        drain.worker_cpu_system_percent = (system_end - system) / max(worker_cpu, 1e-9) * 100
        time.sleep(1.1)  # backends report their statistics at most once a second
        counters = {key: value - counters[key] for key, value in postgres_counters(dsn).items()}
    drain.machine_busy_percent = machine.busy_percent()
    drain.drained = drained is not None
    if not drain.drained:
        drain.given_up = give_up_pending(dsn)
    end, receiver_cpu_end = sink.stats()
    received = sink.records(start)
    drain.delivered = check_delivered(expected, received)
    drain.attempts = attempt_counts(dsn)
    arrivals = sorted(received.arrivals)
    drain.worker_cpu_percent = worker_cpu / elapsed * 100
    if len(arrivals) >= 2:
        drain.first_arrival_s = arrivals[0] - started
        drain.last_arrival_s = arrivals[-1] - started
        drain.deliveries_per_second = (len(arrivals) - 1) / (arrivals[-1] - arrivals[0])
        drain.deliveries_per_second_from_start = len(arrivals) / (arrivals[-1] - started)
        low, high = round(0.1 * (len(arrivals) - 1)), round(0.9 * (len(arrivals) - 1))
        if arrivals[high] > arrivals[low]:
            drain.deliveries_per_second_middle = (high - low) / (arrivals[high] - arrivals[low])
        drain.worker_cpu_us_per_delivery = worker_cpu / len(arrivals) * 1e6
        drain.receiver_cpu_us_per_delivery = (receiver_cpu_end - receiver_cpu) / (end - start) * 1e6
        drain.commits_per_delivery = counters["commits"] / len(arrivals)
        drain.attempt_rows_read_per_delivery = counters["attempt_rows_read"] / len(arrivals)


@contextmanager
def profiled(pid: int, output: Path | None) -> Iterator[None]:
    """``py-spy record`` of a process (folded stacks) while the block runs, if asked."""
    if output is None:
        yield
        return
    spy = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    command = [spy, "record", "--pid", str(pid), "--rate", "200", "--format", "raw"]
    process = subprocess.Popen(
        [*command, "--output", str(output)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        yield
    finally:
        process.send_signal(signal.SIGINT)  # py-spy writes its output on SIGINT
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def postgres_counters(dsn: str) -> dict[str, int]:
    """Cumulative statistics of the benchmark database (pg_stat_*)."""

    async def work(connection: asyncpg.Connection) -> dict[str, int]:
        commits = await connection.fetchval(
            "SELECT xact_commit FROM pg_stat_database WHERE datname = current_database()"
        )
        rows_read = await connection.fetchval(
            "SELECT coalesce(seq_tup_read, 0) + coalesce(idx_tup_fetch, 0) "
            "FROM pg_stat_user_tables WHERE relname = 'webhook_attempts'"
        )
        return {"commits": int(commits), "attempt_rows_read": int(rows_read)}

    return query(dsn, work)


def give_up_pending(dsn: str) -> int:
    """Fail what is still pending (the worker is stopped), so the next phase starts idle."""

    async def work(connection: asyncpg.Connection) -> int:
        status = await connection.execute(
            "UPDATE webhook_attempts SET status = 'failed', locked_until = NULL, "
            "error = 'benchmark: not delivered within --drain-timeout' "
            "WHERE status = 'pending'"
        )
        return int(status.split()[-1])

    return query(dsn, work)


def measure_lag(
    options: argparse.Namespace,
    lag: Lag,
    dsn: str,
    base_url: str,
    token: str,
    sink: Receiver,
    worker_pid: int,
) -> None:
    import uvloop

    print(f"lag: {options.rate:g} credits/s for {options.seconds} s with the worker running…")
    before = event_ids(dsn)
    start = sink.count()
    cpu = cpu_seconds(worker_pid)
    machine = MachineCPU()
    load = uvloop.run(
        paced_credits(
            base_url, token, options.customers, options.rate, options.seconds, options.connections
        )
    )
    cpu = cpu_seconds(worker_pid) - cpu
    lag.machine_busy_percent = machine.busy_percent()
    lag.drained_after_s = wait_drained(dsn, options.lag_wait)
    lag.waited_s = options.lag_wait
    checked = time.time()
    expected = event_ids(dsn) - before
    received = sink.records(start)
    lag.rate_requested = options.rate
    lag.seconds = load.seconds
    lag.credits_per_second = load.succeeded / load.seconds
    lag.credit_errors = load.errors
    lag.credit_ms_p50 = percentile(load.latencies_ms, 0.50)
    lag.credit_ms_p99 = percentile(load.latencies_ms, 0.99)
    lag.delivered = check_delivered(expected, received)
    # An event not delivered by then is at least that late: with such events the
    # percentiles are lower bounds.
    lags = lags_ms(received) + [
        (checked - created.timestamp()) * 1000
        for created in created_at(dsn, expected - set(received.ids))
    ]
    lag.lower_bounds = lag.delivered.missing > 0
    lag.lag_ms_p50 = percentile(lags, 0.50)
    lag.lag_ms_p90 = percentile(lags, 0.90)
    lag.lag_ms_p99 = percentile(lags, 0.99)
    lag.lag_ms_max = max(lags, default=math.nan)
    lag.worker_cpu_percent = cpu / load.seconds * 100


def created_at(dsn: str, ids: set[str]) -> list[datetime]:
    async def work(connection: asyncpg.Connection) -> list[datetime]:
        rows = await connection.fetch(
            "SELECT created_at FROM events WHERE id = ANY($1::uuid[])", [uuid.UUID(i) for i in ids]
        )
        return [row["created_at"] for row in rows]

    return query(dsn, work) if ids else []


def measure_adjust(
    options: argparse.Namespace,
    endpoint: bool,
    dsn: str,
    base_url: str,
    config: Path,
    sink: Receiver,
    worker_pid: int,
) -> Adjust:
    label = f"API adjust, {'one endpoint' if endpoint else 'no endpoint'}"
    print(f"running {label}…")
    events = int(fetch_value(dsn, "SELECT count(*) FROM events"))
    delivered = sink.count()
    cpu = cpu_seconds(worker_pid)
    machine = MachineCPU()
    result = run_wrk(
        label,
        base_url,
        HERE / "adjust.lua",
        config,
        clients=options.clients,
        seconds=options.adjust_seconds,
    )
    return Adjust(
        endpoint=endpoint,
        result=result,
        events=int(fetch_value(dsn, "SELECT count(*) FROM events")) - events,
        deliveries_during=sink.count() - delivered,
        worker_cpu_percent=(cpu_seconds(worker_pid) - cpu) / options.adjust_seconds * 100,
        machine_busy_percent=machine.busy_percent(),
    )


# --- the report ------------------------------------------------------------


def _delivered(value: Delivered | None) -> str:
    if value is None:
        return "n/a"
    return (
        f"{value.unique:,} of {value.events:,} events, {value.missing} missing, "
        f"{value.duplicates} duplicates"
    )


def _ms(value: float, lower_bound: bool) -> str:
    return f"{'>= ' if lower_bound else ''}{value:,.0f} ms"


def _finite(value: Any) -> Any:
    """JSON without Infinity: an undelivered event's lag is null."""
    if isinstance(value, dict):
        return {key: _finite(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_finite(item) for item in value]
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def _met(ok: bool) -> str:
    return "met" if ok else "MISSED"


def report(run: WebhookRun) -> str:
    drain, lag = run.drain, run.lag
    rows: list[tuple[str, str, str]] = [
        (
            "backlog: deliveries/s (first → last arrival)",
            f"{drain.deliveries_per_second:,.0f}",
            f">= 1,000: {_met(drain.deliveries_per_second >= 1000)}",
        ),
        (
            "backlog: deliveries/s (10th → 90th pct)",
            f"{drain.deliveries_per_second_middle:,.0f}",
            "",
        ),
        (
            "backlog: deliveries/s (worker start → last)",
            f"{drain.deliveries_per_second_from_start:,.0f}",
            "",
        ),
        (
            "backlog: first / last arrival after start",
            f"{drain.first_arrival_s:.2f} s / {drain.last_arrival_s:.2f} s",
            "",
        ),
        (
            "backlog: delivered",
            _delivered(drain.delivered),
            "" if drain.drained else f"NOT drained: {drain.given_up:,} given up",
        ),
        (
            "backlog: CPU per delivery (worker / receiver)",
            f"{drain.worker_cpu_us_per_delivery:,.0f} µs / "
            f"{drain.receiver_cpu_us_per_delivery:,.0f} µs",
            f"worker at {drain.worker_cpu_percent:.0f}% of a core "
            f"({drain.worker_cpu_system_percent:.0f}% of it in the kernel); "
            f"machine {drain.machine_busy_percent:.0f}% busy",
        ),
        (
            "backlog: per delivery, commits / attempt rows read",
            f"{drain.commits_per_delivery:.2f} / {drain.attempt_rows_read_per_delivery:,.0f}",
            f"ANALYZE: {drain.analyze}",
        ),
        (
            "lag load: credits/s (p50 / p99 ms)",
            f"{lag.credits_per_second:,.0f} ({lag.credit_ms_p50:.1f} / {lag.credit_ms_p99:.1f})",
            f"asked {lag.rate_requested:g}/s, {lag.credit_errors} errors",
        ),
        (
            "lag: commit → first attempt p50 / p99",
            f"{_ms(lag.lag_ms_p50, lag.lower_bounds)} / {_ms(lag.lag_ms_p99, lag.lower_bounds)}",
            f"p99 <= 1,000 ms: {_met(lag.lag_ms_p99 <= 1000)}",
        ),
        (
            "lag: p90 / max",
            f"{_ms(lag.lag_ms_p90, lag.lower_bounds)} / {_ms(lag.lag_ms_max, lag.lower_bounds)}",
            "",
        ),
        (
            "lag: delivered",
            _delivered(lag.delivered),
            f"NOT all delivered {lag.waited_s:g} s after the load (lags: lower bounds)"
            if lag.lower_bounds
            else "",
        ),
        (
            "lag: worker CPU during the load",
            f"{lag.worker_cpu_percent:.0f}% of a core",
            f"machine {lag.machine_busy_percent:.0f}% busy",
        ),
    ]
    for adjust in run.adjust:
        result = adjust.result
        during = (
            f"; {adjust.deliveries_during:,} delivered during, "
            + (
                f"drained {adjust.drained_after_s:.1f} s after"
                if adjust.drained_after_s is not None
                else "not drained"
            )
            if adjust.endpoint
            else ""
        )
        rows.append(
            (
                f"{result.name}: req/s (p50 / p99 ms)",
                f"{result.requests_per_second:,.0f} "
                f"({result.latency_ms_p50:.1f} / {result.latency_ms_p99:.1f})",
                f"{adjust.events:,} events, {result.errors} errors, worker at "
                f"{adjust.worker_cpu_percent:.0f}% of a core, machine "
                f"{adjust.machine_busy_percent:.0f}% busy{during}",
            )
        )
    none, one = run.adjust_rate(False), run.adjust_rate(True)
    ratio = one / none if none else float("nan")
    with_endpoint = [a for a in run.adjust if a.endpoint]
    written = sum(a.events for a in with_endpoint)
    delivered = sum(a.deliveries_during for a in with_endpoint)
    caveat = (
        f"; but only {delivered:,} of {written:,} events were delivered during the run: "
        "the worker did not keep up, so the ratio understates the cost of delivering"
        if written and delivered < 0.9 * written
        else ""
    )
    rows += [
        ("adjust: one endpoint / none", f"{ratio:.2f}", f">= 0.9: {_met(ratio >= 0.9)}{caveat}"),
        ("adjust: delivered", _delivered(run.delivered_after_adjust), ""),
    ]
    width = max(len(row[0]) for row in rows)
    value_width = max(len(row[1]) for row in rows)
    lines = [
        f"loyalty webhook benchmark — {run.started_at} — "
        + ", ".join(f"{key}={value}" for key, value in run.options.items()),
        "",
        f"| {'measurement':<{width}} | {'value':>{value_width}} | notes",
        f"|{'-' * (width + 2)}|{'-' * (value_width + 2)}|{'-' * 40}",
    ]
    lines += [
        f"| {name:<{width}} | {value:>{value_width}} | {notes}" for name, value, notes in rows
    ]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.webhooks", description=(__doc__ or "").split("\n")[0]
    )
    parser.add_argument("--seconds", type=int, default=20, help="duration of the lag load")
    parser.add_argument("--rate", type=float, default=500, help="credits/s during the lag load")
    parser.add_argument("--connections", type=int, default=32, help="for the paced lag load")
    parser.add_argument("--backlog", type=int, default=20_000, help="events to drain")
    parser.add_argument("--adjust-seconds", type=int, default=10, help="each adjust measurement")
    parser.add_argument("--rounds", type=int, default=1, help="no-endpoint/one-endpoint pairs")
    parser.add_argument("--clients", type=int, default=64, help="wrk connections")
    parser.add_argument("--workers", type=int, default=2, help="API worker processes")
    parser.add_argument("--customers", type=int, default=10_000)
    parser.add_argument(
        "--drain-timeout",
        type=float,
        default=60,
        help="seconds, at most, for the backlog's drain (what is left is given up)",
    )
    parser.add_argument(
        "--lag-wait",
        type=float,
        default=30,
        help="seconds, at most, for the lag load's last deliveries after it ends "
        "(the lags of those not delivered by then are lower bounds)",
    )
    parser.add_argument(
        "--analyze",
        choices=("before", "after", "none"),
        default="before",
        help="ANALYZE the database before the backlog (after the warm-up: statistics of a "
        "steady state, as autovacuum keeps them; the default), after it, or never",
    )
    parser.add_argument(
        "--postgres-url",
        default=os.environ.get(
            "LOYALTY_BENCH_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test"
        ),
        help="a database to connect to for creating (and dropping) the benchmark database",
    )
    parser.add_argument(
        "--log-dir",
        type=Path,
        help="keep the processes' logs here (default: a temporary directory)",
    )
    parser.add_argument(
        "--py-spy",
        type=Path,
        metavar="FILE",
        help="profile the worker during the backlog's drain (py-spy, folded stacks to FILE)",
    )
    parser.add_argument("--receiver-port", type=int, help=argparse.SUPPRESS)
    options = parser.parse_args()
    if options.receiver_port:
        run_receiver(options.receiver_port)
        return
    if shutil.which("wrk") is None:
        sys.exit("missing wrk: install the Debian package wrk")
    run = WebhookRun(
        started_at=datetime.now(UTC).isoformat(timespec="seconds"),
        options={
            "seconds": options.seconds,
            "rate": options.rate,
            "backlog": options.backlog,
            "adjust_seconds": options.adjust_seconds,
            "clients": options.clients,
            "workers": options.workers,
            "customers": options.customers,
            "analyze": options.analyze,
            "machine_busy_before": f"{machine_busy_percent():.0f}%",
        },
    )
    if options.log_dir is not None:
        options.log_dir.mkdir(parents=True, exist_ok=True)
        measure(options, run, options.log_dir)
    else:
        with tempfile.TemporaryDirectory(prefix="loyalty-bench-webhooks-") as temporary:
            measure(options, run, Path(temporary))
    text = report(run)
    figures = json.dumps(_finite(asdict(run)), indent=2, default=str)
    print()
    print(text)
    print()
    print(figures)
    RESULTS.mkdir(exist_ok=True)
    stamp = run.started_at.replace(":", "")
    (RESULTS / f"webhooks-{stamp}.json").write_text(
        json.dumps(_finite({**asdict(run), "report": text}), indent=2, default=str)
    )
    (RESULTS / f"webhooks-{stamp}.txt").write_text(text + "\n")


if __name__ == "__main__":
    main()
