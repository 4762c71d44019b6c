"""``POST /api/v1/imports``: a job that validates, applies, and survives its process."""

from __future__ import annotations

import asyncio
import dataclasses
from datetime import timedelta
from typing import Any

import pytest
from litestar import Litestar
from sqlalchemy import select, update

from loyalty.db.tables import import_chunks, imports
from loyalty.db.types import utc_now
from loyalty.imports import jobs
from loyalty.scheduling import JobContext
from tests.support.ledger import ledger_count
from tests.support.tenant import Tenant, create_key

IMPORTS = "/api/v1/imports"
CSV = {"Content-Type": "text/csv"}


async def post_csv(tenant: Tenant, body: bytes, **headers: str) -> Any:
    return await tenant.post(IMPORTS, content=body, headers={**CSV, **headers})


async def wait_finished(tenant: Tenant, import_id: str) -> dict[str, Any]:
    for _ in range(400):
        response = await tenant.get(f"{IMPORTS}/{import_id}")
        assert response.status_code == 200, response.text
        job: dict[str, Any] = response.json()["data"]
        if job["status"] in ("succeeded", "failed"):
            return job
        await asyncio.sleep(0.05)
    raise AssertionError("the import did not finish")


async def test_an_import_job_runs_to_the_end(tenant: Tenant, unique_id: str) -> None:
    body = (
        "customer_id,email,points\n"
        f"{unique_id}-1,{unique_id}@example.com,100\n"
        f"{unique_id}-2,,40\n"
        f"{unique_id}-1,,-30\n"
    ).encode()
    response = await post_csv(tenant, body)
    assert response.status_code == 202, response.text
    job = response.json()["data"]
    assert set(job) >= {
        "id", "status", "rows_total", "rows_done", "rows_failed", "errors",
        "created_at", "finished_at",
    }  # fmt: skip
    assert job["status"] in ("validating", "running", "succeeded")
    done = await wait_finished(tenant, job["id"])
    assert done["status"] == "succeeded"
    assert (done["rows_total"], done["rows_done"], done["rows_failed"]) == (3, 3, 0)
    assert done["customers_created"] == 2
    assert done["points_moved"] == 110
    assert done["finished_at"] is not None
    assert (await tenant.customer(f"{unique_id}-1"))["points_balance"] == 70
    async with tenant.database.read() as connection:
        left = (
            await connection.execute(
                select(import_chunks.c.number).where(
                    import_chunks.c.merchant_id == tenant.merchant_id
                )
            )
        ).all()
    assert left == []  # the stored body is dropped once done

    again = await post_csv(tenant, body)
    rerun = await wait_finished(tenant, again.json()["data"]["id"])
    assert rerun["rows_already_applied"] == 3
    assert rerun["points_moved"] == 0
    assert await ledger_count(tenant) == 3


async def test_an_invalid_file_fails_with_its_errors(tenant: Tenant, unique_id: str) -> None:
    body = f"customer_id,points,colour\n{unique_id},5,red\n".encode()
    response = await post_csv(tenant, body)
    assert response.status_code == 202
    job = await wait_finished(tenant, response.json()["data"]["id"])
    assert job["status"] == "failed"
    assert job["errors"] == [
        {
            "line": 1,
            "column": "colour",
            "message": job["errors"][0]["message"],
            "code": None,
        }
    ]
    assert "Unknown column" in job["errors"][0]["message"]
    assert job["errors_total"] == 1
    assert await ledger_count(tenant) == 0


@pytest.mark.parametrize(
    "body",
    [b"", b"\xff\xfe\x00\x00binary", b"customer_id\n", b'customer_id\n"unclosed\n'],
)
async def test_unreadable_files_fail_without_a_write(tenant: Tenant, body: bytes) -> None:
    response = await post_csv(tenant, body)
    assert response.status_code == 202
    job = await wait_finished(tenant, response.json()["data"]["id"])
    assert job["status"] == "failed"
    assert job["errors"][0]["line"] >= 1
    assert job["errors"][0]["message"]


async def test_media_type_size_scope_and_unknown_ids(
    app: Litestar, tenant: Tenant, monkeypatch: pytest.MonkeyPatch
) -> None:
    response = await tenant.post(IMPORTS, content=b"customer_id\n1\n")
    assert response.status_code == 415
    assert response.json()["error"]["code"] == "unsupported_media_type"

    small = dataclasses.replace(app.state.settings, import_bytes_max=64)
    monkeypatch.setattr(app.state, "settings", small)
    big = b"customer_id,points\n" + b"1,5\n" * 40
    response = await post_csv(tenant, big)
    assert response.status_code == 413
    assert response.json()["error"]["code"] == "payload_too_large"
    async with tenant.database.read() as connection:
        kept = (
            await connection.execute(
                select(imports.c.id).where(imports.c.merchant_id == tenant.merchant_id)
            )
        ).all()
    assert kept == []  # nothing left behind

    reader = await create_key(tenant.database, tenant.merchant_id, scopes="customers:write")
    response = await tenant.client.post(
        IMPORTS, content=b"customer_id\n1\n", headers={**CSV, "Authorization": f"Bearer {reader}"}
    )
    assert response.status_code == 403
    assert response.json()["error"]["details"]["required_scope"] == "transactions:write"

    response = await tenant.get(f"{IMPORTS}/01a23526-86f1-77ae-ac3a-6ecfdd6fea0d")
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "import_not_found"
    response = await tenant.get(f"{IMPORTS}/not-a-uuid")
    assert response.status_code == 404


async def test_another_merchant_cannot_see_a_job(
    tenant: Tenant, other_tenant: Tenant, unique_id: str
) -> None:
    response = await post_csv(tenant, f"customer_id\n{unique_id}\n".encode())
    job_id = response.json()["data"]["id"]
    await wait_finished(tenant, job_id)
    assert (await other_tenant.get(f"{IMPORTS}/{job_id}")).status_code == 404


async def test_a_job_whose_process_died_is_finished_by_the_resume_job(
    app: Litestar, tenant: Tenant, unique_id: str
) -> None:
    """A stored job nobody runs (its process died): once its lease lapses, the
    scheduler's imports_resume finishes it, from its checkpoint."""
    database = tenant.database
    lines = [f"{unique_id}-{n},{n + 1}" for n in range(50)]
    body = ("customer_id,points\n" + "\n".join(lines) + "\n").encode()

    async def chunks() -> Any:
        yield body

    stored = await jobs.store_body(database, tenant.merchant_id, chunks(), bytes_max=1 << 20)
    assert stored is not None
    import_id, _lease = stored
    async with database.read() as connection:
        row = await connection.execute(select(imports.c.status).where(imports.c.id == import_id))
        assert row.scalar_one() == "validating"

    async def lapse(connection: Any) -> None:
        await connection.execute(
            update(imports)
            .where(imports.c.id == import_id)
            .values(locked_until=utc_now() - timedelta(seconds=1))
        )

    await database.transaction(lapse)
    context = JobContext(database, app.state.settings, app.state.ledger_writer)
    figures = await jobs.resume_abandoned(context)
    assert figures["resumed"] == 1
    job = await wait_finished(tenant, str(import_id))
    assert job["status"] == "succeeded"
    assert job["rows_done"] == 50
    assert (await tenant.customer(f"{unique_id}-49"))["points_balance"] == 50
    assert await ledger_count(tenant) == 50
    # Nothing left to resume.
    assert (await jobs.resume_abandoned(context))["resumed"] == 0


async def test_an_upload_that_never_finished_is_discarded_not_run(
    app: Litestar, tenant: Tenant, unique_id: str
) -> None:
    """The process died while the body was still arriving (the client got no 202):
    the job is dropped, none of its rows applied."""
    database = tenant.database
    import_id, _lease = await jobs.create_job(
        database, tenant.merchant_id, source="api", status="validating"
    )

    async def half(connection: Any) -> None:
        from loyalty.imports import repository

        body = f"customer_id,points\n{unique_id},5\n".encode()
        await repository.add_chunk(connection, tenant.merchant_id, import_id, 0, body)
        await connection.execute(
            update(imports)
            .where(imports.c.id == import_id)
            .values(locked_until=utc_now() - timedelta(seconds=1))
        )

    await database.transaction(half)
    context = JobContext(database, app.state.settings, app.state.ledger_writer)
    figures = await jobs.resume_abandoned(context)
    assert figures["uploads_discarded"] == 1
    assert figures["resumed"] == 0
    assert (await tenant.get(f"{IMPORTS}/{import_id}")).status_code == 404
    assert await ledger_count(tenant) == 0


async def test_each_checkpoint_counts_only_the_rows_up_to_its_line(
    tenant: Tenant, unique_id: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A job resumed from a checkpoint counts every row once: the figures saved with a
    checkpoint are those of the rows up to its line, never the next chunk's."""
    from loyalty.imports import service

    monkeypatch.setattr(service, "CHUNK_ROWS", 4)
    await tenant.enrol(f"{unique_id}-holder", email=f"{unique_id}@example.com")
    lines = [
        f"{unique_id}-{n},{f'{unique_id}@example.com' if n % 3 == 0 else ''},{n + 1}"
        for n in range(1, 23)
    ]
    body = ("customer_id,email,points\n" + "\n".join(lines) + "\n").encode()
    seen: list[tuple[int, int, int]] = []

    async def checkpoint(point: service.Checkpoint) -> None:
        seen.append((point.line, point.summary.rows, point.summary.rows_failed))
        await asyncio.sleep(0)

    summary = await service.apply(
        tenant.database,
        tenant.merchant_id,
        [body],
        file_sha256="checkpoints",
        decimals=0,
        checkpoint=checkpoint,
    )
    assert summary.rows == 22
    assert summary.rows_failed == 7
    for line, rows, failed in seen:
        assert rows == line - 1
        assert failed == len([n for n in range(1, line) if n % 3 == 0])
