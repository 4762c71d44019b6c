"""Import & export (admin only): upload a CSV, read its validation report, start the
import and watch it; download the customers and transactions exports.

The import is the API's (``POST /api/v1/imports``, IMPORT.md) in two steps:

1. **Upload**: the file is checked whole with the dry-run validator
   (``imports.service.validate``). An invalid file shows its report (line, column,
   message) and nothing is kept. A valid one is stored as an API job's body
   (``jobs.store_body``: chunks in the database, so any process can run it) and
   left *awaiting its start*: its lease is ``AWAITING_START``, a moment that never
   comes, so no process resumes it (``imports_resume`` takes only lapsed leases).
2. **Start**: the job is claimed (its lease swapped for a real one, once: a double
   click starts it once) and run in the background as the API runs it
   (``jobs.run_logged``: validated again, applied in batches with the actor
   ``import:<id>``, resumed by another process if this one dies).

An upload not started within ``UPLOAD_KEPT`` expires: it can no longer be started,
and the next upload of the merchant discards it (with its stored body).

The job page shows its progress and figures; while the job runs, htmx reloads the
figures every second from ``/admin/data/imports/{id}/progress`` (without scripts,
the page has a Refresh link).
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import IO, Any

import msgspec
from litestar import Response, get, post
from litestar.datastructures import UploadFile
from litestar.params import FromPath
from litestar.response import Stream
from sqlalchemy.ext.asyncio import AsyncConnection

from loyalty.admin.web import (
    AdminRequest,
    Form,
    current_user,
    database,
    form_from_error,
    redirect,
    render,
)
from loyalty.db.engine import Database
from loyalty.db.types import utc_now
from loyalty.errors import ValidationFailedError
from loyalty.exports import service as exports_service
from loyalty.imports import jobs, repository, service
from loyalty.imports.schemas import ImportJob, ImportProblem, to_job
from loyalty.points import format_points

# An upload checked and awaiting its start holds this lease: no process resumes it.
AWAITING_START = datetime(9999, 1, 1, tzinfo=UTC)
# How long an upload may wait for its start; the next upload discards it a little later
# (so that a start at the last moment never races the clean-up).
UPLOAD_KEPT = timedelta(hours=1)
UPLOAD_DISCARD_GRACE = timedelta(minutes=10)
RECENT_IMPORTS = 20
FINISHED = frozenset({"succeeded", "failed"})
EXPORT_FIELDS = ("since", "until")

_decoder = msgspec.json.Decoder()
# Imports running in this process (kept so that their tasks are not collected).
_running: set[asyncio.Task[None]] = set()


@dataclass(frozen=True, slots=True)
class ImportView:
    """An import as the pages show it: the API's view and where it stands."""

    job: ImportJob
    started_at: datetime | None
    awaiting_start: bool
    expires_at: datetime | None

    @property
    def finished(self) -> bool:
        return self.job.status in FINISHED

    @property
    def expired(self) -> bool:
        return self.expires_at is not None and self.expires_at <= utc_now()

    @property
    def percent(self) -> int:
        total = self.job.rows_total
        return 100 if self.finished else (100 * self.job.rows_done // total if total else 0)

    @property
    def seconds(self) -> float | None:
        if self.job.finished_at is None or self.started_at is None:
            return None
        return max((self.job.finished_at - self.started_at).total_seconds(), 0.0)


def _view(row: Any) -> ImportView:
    awaiting = row.status == "validating" and row.locked_until == AWAITING_START
    return ImportView(
        job=to_job(row, _decoder.decode(row.errors), format_points(row.points_moved_minor)),
        started_at=None if awaiting else row.started_at,
        awaiting_start=awaiting,
        expires_at=row.created_at + UPLOAD_KEPT if awaiting else None,
    )


async def _import(request: AdminRequest, import_id: uuid.UUID) -> ImportView:
    """The signed-in merchant's import (another merchant's: the 404 page)."""
    merchant_id = current_user(request).merchant_id
    async with database(request).read() as connection:
        row = await repository.get_import(connection, merchant_id, import_id)
    if row is None:
        raise jobs.ImportNotFoundError(f"No import {import_id}.", {"id": str(import_id)})
    return _view(row)


def _job_path(import_id: uuid.UUID) -> str:
    return f"/admin/data/imports/{import_id}"


# --- the data page ------------------------------------------------------------------


async def _recent_imports(db: Database, merchant_id: uuid.UUID) -> list[ImportView]:
    async with db.read() as connection:
        rows = await repository.list_imports(connection, merchant_id, limit=RECENT_IMPORTS)
    return [_view(row) for row in rows]


async def _discard_stale_uploads(db: Database, merchant_id: uuid.UUID) -> None:
    """Forget the uploads left waiting past their time (and their stored bodies)."""
    stale = utc_now() - UPLOAD_KEPT - UPLOAD_DISCARD_GRACE
    for view in await _recent_imports(db, merchant_id):
        if view.awaiting_start and view.job.created_at <= stale:
            await jobs.discard(db, merchant_id, view.job.id)


async def _data_page(
    request: AdminRequest,
    *,
    upload_form: Form | None = None,
    report: service.Validation | None = None,
    file_name: str | None = None,
    export_form: Form | None = None,
    status_code: int = 200,
) -> Response[str]:
    staff = current_user(request)
    return render(
        request,
        "data/index.html",
        status_code=status_code,
        imports=await _recent_imports(database(request), staff.merchant_id),
        upload_form=upload_form or Form(),
        report=report,
        report_problems=[] if report is None else _problems(report.errors),
        file_name=file_name,
        export_form=export_form or Form(),
        size_max=_size(_bytes_max(request)),
        columns=IMPORT_COLUMNS,
    )


def _problems(errors: list[dict[str, object]]) -> list[ImportProblem]:
    """The validator's errors as the API shows them (``{line, column, message}``)."""
    return [msgspec.convert(error, ImportProblem) for error in errors]


IMPORT_COLUMNS = (
    ("customer_id", "required: the platform id (new customers are enrolled)"),
    ("email, first_name, last_name", "the profile; an empty cell leaves it as is"),
    ("date_of_birth", "YYYY-MM-DD"),
    ("status", "active, inactive, excluded or excluded_by_customer"),
    ("points", "points moved as a manual adjustment (negative debits)"),
    ("description", "the movement's customer-facing text"),
    ("apply_to_lifetime", "true or false"),
    ("expires_at", "when these points expire (YYYY-MM-DD or RFC 3339)"),
    ("idempotency_key", "the row's key (default: from the file and the line)"),
)


def _bytes_max(request: AdminRequest) -> int:
    bytes_max: int = request.app.state.settings.import_bytes_max
    return bytes_max


def _size(size: int) -> str:
    """``104857600`` → ``100 MiB``."""
    for unit, scale in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if size >= scale:
            value = size / scale
            return f"{value:.0f} {unit}" if value == int(value) else f"{value:.1f} {unit}"
    return f"{size} bytes"


@get("/data")
async def data_page(request: AdminRequest) -> Response[str]:
    return await _data_page(request)


# --- upload: the validation report ------------------------------------------------------


def _file_chunks(file: IO[bytes]) -> Iterator[bytes]:
    file.seek(0)
    while chunk := file.read(service.READ_BYTES):
        yield chunk


async def _stored_chunks(file: IO[bytes]) -> AsyncIterator[bytes]:
    file.seek(0)
    while chunk := await asyncio.to_thread(file.read, service.READ_BYTES):
        yield chunk


def _file_size(file: IO[bytes]) -> int:
    file.seek(0, 2)
    size = file.tell()
    file.seek(0)
    return size


def _upload_error(message: str) -> Form:
    return Form(errors={"file": message})


@post("/data/imports", request_max_body_size=None)
async def upload_import(request: AdminRequest) -> Response[Any]:
    """Check the uploaded file whole; a valid one awaits its start, stored.

    The limit is the API's (``import_bytes_max``), said next to the file input: the
    framework's body limit is lifted here because the form is parsed (the file
    spooled to disk past 1 MiB, memory stays bounded) before the handler runs, by the
    router's CSRF check, for signed-in staff only."""
    staff = current_user(request)
    db = database(request)
    bytes_max = _bytes_max(request)
    upload = (await request.form()).get("file")
    if not isinstance(upload, UploadFile) or not upload.filename:
        form = _upload_error("Choose the CSV file to import.")
        return await _data_page(request, upload_form=form, status_code=422)
    try:
        size = await asyncio.to_thread(_file_size, upload.file)
        if size == 0:
            form = _upload_error("This file is empty.")
            return await _data_page(request, upload_form=form, status_code=422)
        if size > bytes_max:
            form = _upload_error(f"The file is larger than {_size(bytes_max)}, the import limit.")
            return await _data_page(request, upload_form=form, status_code=413)
        await _discard_stale_uploads(db, staff.merchant_id)
        decimals = await service.merchant_decimals(db, staff.merchant_id)
        validation = await asyncio.to_thread(
            service.validate, _file_chunks(upload.file), decimals=decimals, now=utc_now()
        )
        if not validation.valid:
            return await _data_page(
                request, report=validation, file_name=upload.filename, status_code=422
            )
        stored = await jobs.store_body(
            db, staff.merchant_id, _stored_chunks(upload.file), bytes_max=bytes_max
        )
    finally:
        await upload.close()
    if stored is None:  # the file cannot grow, but the limit is the store's to say too
        form = _upload_error(f"The file is larger than {_size(bytes_max)}, the import limit.")
        return await _data_page(request, upload_form=form, status_code=413)
    import_id, lease = stored
    await _await_start(db, lease, validation.rows)
    return redirect(
        request,
        _job_path(import_id),
        notice=f"{upload.filename} is valid: {validation.rows:,} row(s) ready to import.",
    )


async def _await_start(db: Database, lease: jobs.Lease, rows: int) -> None:
    """Leave the stored job for its start: a lease that never lapses, its row count."""

    async def work(connection: AsyncConnection) -> bool:
        return await repository.update_import(
            connection,
            lease.merchant_id,
            lease.import_id,
            lease=lease.until,
            values={"locked_until": AWAITING_START, "rows_total": rows, "updated_at": utc_now()},
        )

    if not await db.transaction(work):
        raise jobs.LeaseLostError(str(lease.import_id))


# --- one import: start, discard, progress -------------------------------------------


@get("/data/imports/{import_id:uuid}")
async def import_page(request: AdminRequest, import_id: FromPath[uuid.UUID]) -> Response[str]:
    view = await _import(request, import_id)
    return render(request, "data/import.html", view=view, job=view.job)


@get("/data/imports/{import_id:uuid}/progress")
async def import_progress(request: AdminRequest, import_id: FromPath[uuid.UUID]) -> Response[str]:
    """The progress panel alone (htmx swaps it in every second while the job runs)."""
    view = await _import(request, import_id)
    return render(request, "data/_progress.html", view=view, job=view.job)


@post("/data/imports/{import_id:uuid}/start")
async def start_import(request: AdminRequest, import_id: FromPath[uuid.UUID]) -> Response[Any]:
    staff = current_user(request)
    db = database(request)
    view = await _import(request, import_id)
    if not view.awaiting_start:  # started already (a second click, another tab)
        return redirect(request, _job_path(import_id))
    if view.expired:
        await jobs.discard(db, staff.merchant_id, import_id)
        return redirect(
            request,
            "/admin/data",
            notice="That upload waited more than an hour and expired: upload the file again.",
        )
    now = utc_now()
    until = now + jobs.LEASE

    async def claim(connection: AsyncConnection) -> bool:
        return await repository.update_import(
            connection,
            staff.merchant_id,
            import_id,
            lease=AWAITING_START,
            values={"locked_until": until, "started_at": now, "updated_at": now},
        )

    if await db.transaction(claim):
        lease = jobs.Lease(db, staff.merchant_id, import_id, until)
        task = asyncio.create_task(jobs.run_logged(db, lease), name=f"import-{import_id}")
        _running.add(task)
        task.add_done_callback(_running.discard)
    return redirect(request, _job_path(import_id), notice="Import started.")


@post("/data/imports/{import_id:uuid}/discard")
async def discard_import(request: AdminRequest, import_id: FromPath[uuid.UUID]) -> Response[Any]:
    staff = current_user(request)
    view = await _import(request, import_id)
    if not view.awaiting_start:
        return redirect(request, _job_path(import_id))
    await jobs.discard(database(request), staff.merchant_id, import_id)
    return redirect(request, "/admin/data", notice="Upload discarded: nothing was imported.")


# --- exports -----------------------------------------------------------------------------


def _download(content: AsyncIterator[bytes], kind: str) -> Stream:
    return Stream(
        content,
        media_type=exports_service.CSV_MEDIA_TYPE,
        headers={
            "Content-Disposition": (
                f"attachment; filename={exports_service.file_name(kind, utc_now())}"
            ),
            "Cache-Control": "no-store",
        },
    )


@get("/data/exports/customers.csv")
async def export_customers(request: AdminRequest) -> Stream:
    staff = current_user(request)
    await exports_service.check_merchant(database(request), staff.merchant_id)
    return _download(
        exports_service.export_customers(database(request), staff.merchant_id), "customers"
    )


@get("/data/exports/transactions.csv")
async def export_transactions(request: AdminRequest) -> Response[Any]:
    staff = current_user(request)
    values = {name: request.query_params.get(name, "").strip() for name in EXPORT_FIELDS}
    try:
        within = exports_service.period(values["since"] or None, values["until"] or None)
    except ValidationFailedError as error:
        form = form_from_error(error, values, fields=EXPORT_FIELDS)
        return await _data_page(request, export_form=form, status_code=422)
    await exports_service.check_merchant(database(request), staff.merchant_id)
    return _download(
        exports_service.export_transactions(database(request), staff.merchant_id, within),
        "transactions",
    )


ROUTES = [
    data_page,
    upload_import,
    import_page,
    import_progress,
    start_import,
    discard_import,
    export_customers,
    export_transactions,
]
