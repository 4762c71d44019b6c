"""GET /metrics: the Prometheus text, route templates as labels, the token setting,
and the ledger, jobs and rate-limit figures moving (in-process: the default registry)."""

from __future__ import annotations

import asyncio
import dataclasses
import re
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, cast

import httpx
from litestar import Litestar
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy.ext.asyncio import AsyncConnection

from loyalty import metrics
from loyalty.app import create_app, start_services, stop_services
from loyalty.auth import service as auth_service
from loyalty.db.engine import Database
from loyalty.jobs import JobsRun
from loyalty.settings import Settings
from loyalty.webhooks import backlog
from tests.support.tenant import Tenant

REQUIRED = (
    "loyalty_http_requests_total",
    "loyalty_http_request_duration_seconds",
    "loyalty_ledger_batch_size",
    "loyalty_ledger_batch_duration_seconds",
    "loyalty_ledger_queue_depth",
    "loyalty_ledger_movements_total",
    "loyalty_webhook_deliveries_total",
    "loyalty_webhook_backlog",
    "loyalty_webhook_delivery_lag_seconds",
    "loyalty_jobs_runs_total",
    "loyalty_import_rows_total",
    "loyalty_rate_limited_total",
)
REWARD_TEMPLATE = "/api/v1/public/customers/rewards/{customer_reward_id}"


def samples(text: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def value(text: str, name: str, **labels: str) -> float:
    """The sum of ``name``'s samples that carry ``labels`` (0 when none)."""
    wanted = set(labels.items())
    return sum(v for (n, found), v in samples(text).items() if n == name and wanted <= found)


async def scrape(client: httpx.AsyncClient, **headers: str) -> str:
    response = await client.get("/metrics", headers=headers)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/plain")
    assert "version=0.0.4" in response.headers["content-type"]
    return response.text


async def test_metrics_answer_the_text_format_with_every_metric(
    tenant: Tenant, unique_id: str
) -> None:
    await tenant.enrol(unique_id, email=f"{unique_id}@example.com")
    assert (await tenant.adjust(unique_id, 10)).status_code == 201
    assert (await tenant.client.get(f"/no/such/path/{unique_id}")).status_code == 404
    text = await scrape(tenant.client)
    names = {family.name for family in text_string_to_metric_families(text)}
    for name in REQUIRED:
        # The parser names counters without their _total suffix.
        assert name.removesuffix("_total") in names, name
    assert "# TYPE loyalty_http_request_duration_seconds histogram" in text
    assert value(text, "loyalty_http_requests_total", route="unmatched", status="404") >= 1
    adjusted = value(
        text,
        "loyalty_http_requests_total",
        method="POST",
        route="/api/v1/public/customers/transactions",
        status="201",
    )
    assert adjusted >= 1
    # No customer id, email, key or raw path in any label.
    assert unique_id not in text
    assert tenant.token not in text
    assert tenant.token[:12] not in text
    assert "/no/such/path" not in text
    # Not part of the API's documented surface.
    schema = (await tenant.client.get("/openapi.json")).json()
    assert "/metrics" not in schema["paths"]


async def test_the_route_label_is_the_template_not_the_path(tenant: Tenant) -> None:
    labels = {"method": "GET", "route": REWARD_TEMPLATE, "status": "404"}
    before = value(await scrape(tenant.client), "loyalty_http_requests_total", **labels)
    first, second = uuid.uuid4().hex, uuid.uuid4().hex
    for reward_id in (first, second):
        response = await tenant.get(f"/api/v1/public/customers/rewards/{reward_id}")
        assert response.status_code == 404
    text = await scrape(tenant.client)
    # Two customer rewards, one series.
    assert value(text, "loyalty_http_requests_total", **labels) == before + 2
    assert first not in text
    assert second not in text
    count = value(
        text, "loyalty_http_request_duration_seconds_count", method="GET", route=REWARD_TEMPLATE
    )
    assert count >= 2


async def test_ledger_batches_move_after_an_adjust(tenant: Tenant, unique_id: str) -> None:
    before = await scrape(tenant.client)
    await tenant.enrol(unique_id)
    assert (await tenant.adjust(unique_id, 25)).status_code == 201
    refused = await tenant.adjust(unique_id, -1000)
    assert refused.status_code == 422

    async def keyed() -> httpx.Response:
        return await tenant.post(
            "/api/v1/public/customers/transactions",
            params={"customer_id": unique_id},
            json={"points": 5, "description": "keyed"},
            headers={"Idempotency-Key": f"metrics-{unique_id}"},
        )

    retried, again = await keyed(), await keyed()
    assert retried.status_code == again.status_code == 201, retried.text
    after = await scrape(tenant.client)

    def moved(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    assert moved("loyalty_ledger_batch_size_count") >= 1
    assert moved("loyalty_ledger_batch_size_sum") >= 1
    assert moved("loyalty_ledger_batch_duration_seconds_count") >= 1
    assert moved("loyalty_ledger_movements_total", outcome="applied") >= 2
    assert moved("loyalty_ledger_movements_total", outcome="refused") >= 1
    assert moved("loyalty_ledger_movements_total", outcome="replayed") >= 1
    assert value(after, "loyalty_ledger_queue_depth") >= 0


async def test_jobs_runs_are_counted(
    tenant: Tenant, run_jobs: Callable[[], Awaitable[JobsRun]]
) -> None:
    before = await scrape(tenant.client)
    run = await run_jobs()
    after = await scrape(tenant.client)
    assert run.ran()
    for job in run.ran():
        ok_before = value(before, "loyalty_jobs_runs_total", job=job, outcome="ok")
        assert value(after, "loyalty_jobs_runs_total", job=job, outcome="ok") == ok_before + 1


async def test_a_rate_limited_call_is_counted(tenant: Tenant) -> None:
    async def work(connection: AsyncConnection) -> str:
        key = await auth_service.create_key(
            connection, merchant_id=tenant.merchant_id, scopes="all", rate_limit="1/minute"
        )
        return key.token

    token = await tenant.database.transaction(work)
    headers = {"Authorization": f"Bearer {token}"}
    before = value(await scrape(tenant.client), "loyalty_rate_limited_total")
    statuses = [
        (await tenant.client.get("/api/v1/public/customers", headers=headers)).status_code
        for _ in range(2)
    ]
    assert statuses[-1] == 429
    after = await scrape(tenant.client)
    assert value(after, "loyalty_rate_limited_total") == before + 1
    assert token not in after


async def test_the_backlog_is_read_from_the_database(tenant: Tenant) -> None:
    metrics.forget_backlog_reading()
    text = await scrape(tenant.client)
    assert value(text, "loyalty_webhook_backlog") >= 0


async def test_the_workers_backlog_refresh_stops_when_asked(database: Database) -> None:
    # loyalty worker --metrics-port stops it with a flag at shutdown, not by cancelling a
    # read (which can fail as another error that the refresh would log and carry on from).
    metrics.forget_backlog_reading()
    stop = asyncio.Event()
    refreshing = asyncio.create_task(backlog.refresh_forever(database, stop))
    await asyncio.sleep(0.2)  # the first read under way or done, the pause begun
    assert not refreshing.done()
    stop.set()
    # At once: not after the pause between reads (BACKLOG_REFRESH_SECONDS).
    await asyncio.wait_for(refreshing, metrics.BACKLOG_REFRESH_SECONDS / 2)


@dataclasses.dataclass
class Served:
    client: httpx.AsyncClient


async def _client(app: Litestar) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=cast("Any", app))
    async with httpx.AsyncClient(transport=transport, base_url="http://loyalty.test") as client:
        yield client


async def test_the_token_setting_guards_metrics(settings: Settings, database: Database) -> None:
    guarded = dataclasses.replace(settings, metrics_token="s3cret-metrics-token")
    app = create_app(guarded, database)
    await start_services(app, guarded, database)
    try:
        async for client in _client(app):
            refused = await client.get("/metrics")
            assert refused.status_code == 401
            assert refused.json()["error"]["code"] == "unauthorized"
            wrong = await client.get("/metrics", headers={"Authorization": "Bearer nope"})
            assert wrong.status_code == 401
            text = await scrape(client, Authorization="Bearer s3cret-metrics-token")
            assert "loyalty_http_requests_total" in text
            assert "s3cret-metrics-token" not in text
            # Open routes stay open.
            assert (await client.get("/healthz")).status_code == 200
    finally:
        await stop_services(app, dispose_database=False)


async def test_metrics_off_counts_no_request(settings: Settings, database: Database) -> None:
    quiet = dataclasses.replace(settings, metrics=False)
    app = create_app(quiet, database)
    await start_services(app, quiet, database)
    try:
        async for client in _client(app):
            path = "/healthz"
            before = value(await scrape(client), "loyalty_http_requests_total", route=path)
            for _ in range(3):
                await client.get(path)
            after = value(await scrape(client), "loyalty_http_requests_total", route=path)
            assert after == before
    finally:
        await stop_services(app, dispose_database=False)


async def test_no_label_can_hold_a_raw_path() -> None:
    metrics.HTTP.record("BREW", None, 404, 0.001)
    text = metrics.exposition().decode()
    assert re.search(r'loyalty_http_requests_total\{method="other",route="unmatched"', text)


async def test_recorded_requests_reach_the_metrics_within_a_second() -> None:
    def counted() -> float:
        child = metrics.HTTP_REQUESTS.labels("GET", "/flush-test", "200")
        return float(child._value.get())

    before = counted()
    for seconds in (0.0005, 0.03, 20.0):
        metrics.HTTP.record("GET", "/flush-test", 200, seconds)
    await asyncio.sleep(metrics.HttpRecorder.FLUSH_SECONDS + 0.2)
    assert counted() == before + 3
    text = metrics.exposition().decode()
    assert 'duration_seconds_bucket{le="0.001",method="GET",route="/flush-test"} 1.0' in text
    assert 'duration_seconds_bucket{le="0.05",method="GET",route="/flush-test"} 2.0' in text
    assert 'duration_seconds_bucket{le="+Inf",method="GET",route="/flush-test"} 3.0' in text
