"""Import jobs: an import's row in ``imports`` follows it from start to end.

An API import stores its body in the database (``import_chunks``) before it
answers 202, then runs in the process that received it, which holds the job
(``locked_until``, renewed every ``HEARTBEAT``). If that process dies, the
lease lapses and the ``imports_resume`` job of any process (``loyalty worker``,
or ``loyalty serve`` running the scheduler) takes the job over and finishes it
from its last checkpoint: rows after the checkpoint may have been applied
already, and their idempotency keys make them apply once.

A CLI import records its row too (its progress and figures); the file is the
operator's, so a CLI import whose process died is marked failed ("run the
same command again"), and running it again applies every row exactly once.
"""

from __future__ import annotations

import asyncio
import contextlib
import tempfile
import uuid
from collections.abc import AsyncIterator, Callable, Mapping
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import msgspec
import structlog
from sqlalchemy.ext.asyncio import AsyncConnection

from loyalty.actors import acting_as, import_actor
from loyalty.db.engine import Database
from loyalty.db.types import utc_now
from loyalty.errors import LoyaltyError, NotFoundError
from loyalty.imports import repository, service
from loyalty.imports.schemas import ImportJob, to_job
from loyalty.imports.service import Checkpoint, Summary, Validation
from loyalty.points import format_points
from loyalty.scheduling import Job, JobContext

log = structlog.get_logger(__name__)

LEASE = timedelta(seconds=60)
HEARTBEAT_SECONDS = 15.0
ABANDONED_CLI_MESSAGE = (
    "The process running this import stopped before the end; run the same command "
    "again: rows already applied are not applied twice."
)

STOPPED_MESSAGE = (
    "The import stopped on an unexpected error. Rows applied so far stay applied; "
    "import the same file again to apply the rest (no row is applied twice)."
)

_decoder = msgspec.json.Decoder()


class LeaseLostError(Exception):
    """Another process took the job over (this one stalled past its lease)."""


class Lease:
    """This process's hold on a job: renewed in the background, checked on every write."""

    def __init__(
        self, database: Database, merchant_id: uuid.UUID, import_id: uuid.UUID, until: datetime
    ) -> None:
        self.database = database
        self.merchant_id = merchant_id
        self.import_id = import_id
        self.until = until
        self._lock = asyncio.Lock()
        self._task: asyncio.Task[None] | None = None

    async def update(self, values: dict[str, Any], *, renew: bool = True) -> None:
        async with self._lock:
            until = utc_now() + LEASE if renew else None
            current = self.until

            async def work(connection: AsyncConnection) -> bool:
                return await repository.update_import(
                    connection,
                    self.merchant_id,
                    self.import_id,
                    lease=current,
                    values={**values, "locked_until": until, "updated_at": utc_now()},
                )

            if not await self.database.transaction(work):
                raise LeaseLostError(str(self.import_id))
            if until is not None:
                self.until = until

    async def _beat(self) -> None:
        while True:
            await asyncio.sleep(HEARTBEAT_SECONDS)
            await self.update({})

    @contextlib.asynccontextmanager
    async def held(self) -> AsyncIterator[Lease]:
        self._task = asyncio.create_task(self._beat())
        try:
            yield self
        finally:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, LeaseLostError):
                await self._task


def _summary_of(row: Any) -> Summary:
    errors = _decoder.decode(row.errors)
    return Summary(
        rows=row.rows_done,
        customers_created=row.customers_created,
        customers_updated=row.customers_updated,
        points_moved_minor=row.points_moved_minor,
        rows_already_applied=row.rows_already_applied,
        rows_failed=row.rows_failed,
        errors=list(errors),
        errors_total=row.errors_total,
    )


def _progress_values(summary: Summary) -> dict[str, Any]:
    return {
        "rows_done": summary.rows,
        "rows_failed": summary.rows_failed,
        "rows_already_applied": summary.rows_already_applied,
        "customers_created": summary.customers_created,
        "customers_updated": summary.customers_updated,
        "points_moved_minor": summary.points_moved_minor,
        "errors": sorted(summary.errors, key=lambda error: int(str(error["line"]))),
        "errors_total": summary.errors_total,
    }


async def create_job(
    database: Database,
    merchant_id: uuid.UUID,
    *,
    source: str,
    status: str,
    file_sha256: str = "",
    file_bytes: int = 0,
) -> tuple[uuid.UUID, Lease]:
    from loyalty.ids import new_id

    import_id = new_id()
    now = utc_now()
    until = now + LEASE

    async def work(connection: AsyncConnection) -> None:
        await repository.insert_import(
            connection,
            merchant_id=merchant_id,
            import_id=import_id,
            source=source,
            status=status,
            file_sha256=file_sha256,
            file_bytes=file_bytes,
            locked_until=until,
            now=now,
        )

    await database.transaction(work)
    return import_id, Lease(database, merchant_id, import_id, until)


async def apply_with_checkpoints(
    database: Database,
    lease: Lease,
    path: Path,
    *,
    file_sha256: str,
    decimals: int,
    after_line: int,
    summary: Summary,
    progress: Callable[[Summary], None] | None = None,
) -> Summary:
    """Apply the rows after ``after_line``, recording progress after each chunk; then
    mark the job succeeded."""

    async def checkpoint(point: Checkpoint) -> None:
        await lease.update({**_progress_values(point.summary), "checkpoint_line": point.line})
        if progress is not None:
            progress(point.summary)

    with acting_as(import_actor(lease.import_id)):
        summary = await service.apply(
            database,
            lease.merchant_id,
            service.file_chunks(path),
            file_sha256=file_sha256,
            decimals=decimals,
            after_line=after_line,
            summary=summary,
            checkpoint=checkpoint,
        )
    await lease.update(
        {**_progress_values(summary), "status": "succeeded", "finished_at": utc_now()},
        renew=False,
    )
    return summary


async def fail_invalid(lease: Lease, validation: Validation) -> None:
    await lease.update(
        {
            "status": "failed",
            "rows_total": validation.rows,
            "errors": validation.errors,
            "errors_total": validation.errors_total,
            "file_sha256": validation.file_sha256,
            "file_bytes": validation.file_bytes,
            "finished_at": utc_now(),
        },
        renew=False,
    )


# API jobs ----------------------------------------------------------------------------


async def store_body(
    database: Database,
    merchant_id: uuid.UUID,
    body: AsyncIterator[bytes],
    *,
    bytes_max: int,
) -> tuple[uuid.UUID, Lease] | None:
    """Store a request body as a new job's chunks; None (and nothing kept) when the body
    is larger than ``bytes_max``."""
    import hashlib

    import_id, lease = await create_job(database, merchant_id, source="api", status="validating")
    digest = hashlib.sha256()
    size = 0
    number = 0
    buffer = bytearray()

    async def flush(data: bytes, number: int) -> None:
        async def work(connection: AsyncConnection) -> None:
            await repository.add_chunk(connection, merchant_id, import_id, number, data)

        await database.transaction(work)

    try:
        async for part in body:
            size += len(part)
            if size > bytes_max:
                await discard(database, merchant_id, import_id)
                return None
            digest.update(part)
            buffer += part
            if len(buffer) >= service.READ_BYTES:
                await flush(bytes(buffer), number)
                number += 1
                buffer.clear()
        if buffer:
            await flush(bytes(buffer), number)
    except BaseException:
        await asyncio.shield(discard(database, merchant_id, import_id))
        raise
    await lease.update({"file_sha256": digest.hexdigest(), "file_bytes": size})
    return import_id, lease


async def discard(database: Database, merchant_id: uuid.UUID, import_id: uuid.UUID) -> None:
    """Forget a job and its stored body (an upload refused or broken off)."""

    async def work(connection: AsyncConnection) -> None:
        await repository.delete_chunks(connection, merchant_id, import_id)
        await repository.delete_import(connection, merchant_id, import_id)

    await database.transaction(work)


async def _download(
    database: Database, merchant_id: uuid.UUID, import_id: uuid.UUID, path: Path
) -> None:
    number = 0
    with path.open("wb") as file:
        while True:
            async with database.read() as connection:
                data = await repository.read_chunk(connection, merchant_id, import_id, number)
            if data is None:
                return
            file.write(data)
            number += 1


async def run_api_job(database: Database, lease: Lease) -> None:
    """Validate (if not done) and apply a stored import, holding its lease."""
    merchant_id, import_id = lease.merchant_id, lease.import_id
    async with lease.held():
        async with database.read() as connection:
            row = await repository.get_import(connection, merchant_id, import_id)
        if row is None or row.status not in ("validating", "running"):
            return
        decimals = await service.merchant_decimals(database, merchant_id)
        with tempfile.TemporaryDirectory(prefix="loyalty-import-") as directory:
            path = Path(directory) / "import.csv"
            await _download(database, merchant_id, import_id, path)
            if row.status == "validating":
                validation = await asyncio.to_thread(
                    service.validate,
                    service.file_chunks(path),
                    decimals=decimals,
                    now=utc_now(),
                )
                if not validation.valid:
                    await fail_invalid(lease, validation)
                    await _drop_chunks(database, merchant_id, import_id)
                    return
                await lease.update({"status": "running", "rows_total": validation.rows})
                summary = Summary()
                after_line = 1
            else:
                summary = _summary_of(row)
                after_line = row.checkpoint_line
            await apply_with_checkpoints(
                database,
                lease,
                path,
                file_sha256=row.file_sha256,
                decimals=decimals,
                after_line=after_line,
                summary=summary,
            )
    await _drop_chunks(database, merchant_id, import_id)


async def _drop_chunks(database: Database, merchant_id: uuid.UUID, import_id: uuid.UUID) -> None:
    async def work(connection: AsyncConnection) -> None:
        await repository.delete_chunks(connection, merchant_id, import_id)

    await database.transaction(work)


async def run_logged(database: Database, lease: Lease) -> None:
    """Run an API job; the database unreachable leaves it to be resumed (its lease
    lapses), any other error ends it as failed (rows applied so far stay applied,
    and posting the same file again applies the rest, none twice)."""
    from loyalty.db.engine import is_unavailable
    from loyalty.errors import ServiceUnavailableError

    try:
        await run_api_job(database, lease)
    except LeaseLostError:
        log.warning("import_taken_over", import_id=str(lease.import_id))
    except Exception as error:
        if is_unavailable(error) or isinstance(error, ServiceUnavailableError):
            log.warning("import_interrupted", import_id=str(lease.import_id), error=str(error))
            return
        log.exception("import_failed", import_id=str(lease.import_id))
        with contextlib.suppress(Exception):
            await lease.update(
                {
                    "status": "failed",
                    "errors": [{"line": 1, "column": None, "message": STOPPED_MESSAGE}],
                    "errors_total": 1,
                    "finished_at": utc_now(),
                },
                renew=False,
            )


# The scheduler's job ------------------------------------------------------------------


async def resume_abandoned(context: JobContext) -> Mapping[str, float]:
    """Finish every API import whose process died; mark dead CLI imports failed."""
    resumed = 0
    failed = 0
    discarded = 0
    while True:
        now = utc_now()
        until = now + LEASE

        async def claim(
            connection: AsyncConnection, now: datetime = now, until: datetime = until
        ) -> Any:
            return await repository.claim_abandoned(connection, now, until)

        row = await context.database.transaction(claim)
        if row is None:
            break
        lease = Lease(context.database, row.merchant_id, row.id, until)
        if row.source == "api" and not row.file_sha256:
            # Its upload never finished (the client got no 202): nothing to run.
            await discard(context.database, row.merchant_id, row.id)
            discarded += 1
            continue
        if row.source != "api":
            await lease.update(
                {
                    "status": "failed",
                    "errors": [{"line": 1, "column": None, "message": ABANDONED_CLI_MESSAGE}],
                    "errors_total": 1,
                    "finished_at": utc_now(),
                },
                renew=False,
            )
            failed += 1
            continue
        await run_logged(context.database, lease)
        resumed += 1
    return {"resumed": resumed, "abandoned_cli": failed, "uploads_discarded": discarded}


JOBS = (
    Job(
        "imports_resume",
        None,
        resume_abandoned,
        summary=(
            "resumed {resumed} import(s), closed {abandoned_cli} abandoned CLI import(s), "
            "discarded {uploads_discarded} unfinished upload(s)"
        ),
    ),
)


# The API's view ------------------------------------------------------------------------


class ImportNotFoundError(NotFoundError):
    code = "import_not_found"


class PayloadTooLargeError(LoyaltyError):
    status_code = 413
    code = "payload_too_large"
    replayable = False


class UnsupportedMediaTypeError(LoyaltyError):
    status_code = 415
    code = "unsupported_media_type"
    replayable = False


def parse_id(value: str) -> uuid.UUID | str:
    """An import id as given in a path: a UUID, or left as text (then unknown)."""
    try:
        return uuid.UUID(value)
    except ValueError:
        return value


async def get_job(
    database: Database, merchant_id: uuid.UUID, import_id: uuid.UUID | str
) -> ImportJob:
    row = None
    if isinstance(import_id, uuid.UUID):
        async with database.read() as connection:
            row = await repository.get_import(connection, merchant_id, import_id)
    if row is None:
        raise ImportNotFoundError(f"No import {import_id}.", {"id": str(import_id)})
    return to_job(row, _decoder.decode(row.errors), format_points(row.points_moved_minor))


# Tasks running API imports in this process (kept so that they are not collected).
_running: set[asyncio.Task[None]] = set()


async def start_api_import(
    database: Database,
    merchant_id: uuid.UUID,
    body: AsyncIterator[bytes],
    *,
    content_type: str,
    content_length: int | None,
    bytes_max: int,
) -> ImportJob:
    """Store the CSV body, start the job in this process and answer its first view."""
    media_type = content_type.partition(";")[0].strip().lower()
    if media_type not in ("text/csv", "application/csv"):
        raise UnsupportedMediaTypeError(
            "Send the CSV file as the body with 'Content-Type: text/csv'.",
            {"content_type": content_type or None},
        )
    too_large = PayloadTooLargeError(
        f"The file is larger than {bytes_max} bytes (LOYALTY_IMPORT_BYTES_MAX).",
        {"bytes_max": bytes_max},
    )
    if content_length is not None and content_length > bytes_max:
        raise too_large
    await service.merchant_decimals(database, merchant_id)
    stored = await store_body(database, merchant_id, body, bytes_max=bytes_max)
    if stored is None:
        raise too_large
    import_id, lease = stored
    job = await get_job(database, merchant_id, import_id)
    task = asyncio.create_task(run_logged(database, lease), name=f"import-{import_id}")
    _running.add(task)
    task.add_done_callback(_running.discard)
    return job
