"""Importing customers and balances from a CSV file (IMPORT.md).

The same code runs for the CLI, the API's jobs and the admin page:

1. ``validate`` reads the whole file once (streamed): every cell by the API's
   rules. Any invalid row: nothing is written, the first ``ERRORS_SHOWN``
   errors and their count are the answer.
2. ``apply`` reads it again, ``CHUNK_ROWS`` rows at a time. Each chunk's
   customers are enrolled or updated in one transaction (in bulk), then its
   points movements go to a ledger writer of their own, in large batches, each
   with the row's idempotency key (its own, or one derived from the file's
   SHA-256 and the row's line): running the same file again, or again after a
   crash, moves nothing twice. The movements of one chunk are in the writer
   while the next chunk's customers are written.

A row applies in file order: a customer id twice in one file applies both
rows, in order, each with its own key. A debit that would overdraw fails
alone (``insufficient_points``), as does a row whose email another customer
holds (``customer_email_taken``); the rest goes on.
"""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import uuid
from collections.abc import Awaitable, Callable, Iterable, Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import msgspec
from sqlalchemy.ext.asyncio import AsyncConnection

from loyalty.customers.refs import CustomerRef
from loyalty.customers.schemas import Customer, TierRef
from loyalty.customers.service import to_customer
from loyalty.dashboard import rollups
from loyalty.db.engine import Database
from loyalty.db.types import utc_now
from loyalty.errors import ServiceUnavailableError
from loyalty.events import repository as events
from loyalty.ids import new_id
from loyalty.imports import repository
from loyalty.imports.csvfile import CellError, FileError, ImportRow, read_rows, row_key
from loyalty.ledger.engine.protocol import Movement, Outcome
from loyalty.ledger.operations.adjust import Adjust
from loyalty.ledger.writer import LedgerWriter
from loyalty.merchants import service as merchants_service
from loyalty.metrics import import_rows
from loyalty.points import format_points

ERRORS_SHOWN = 100
CHUNK_ROWS = 2000
READ_BYTES = 1 << 20
# The import's own ledger writer: large batches (one transaction each).
WRITER_BATCH_SIZE = 2000

_decoder = msgspec.json.Decoder()


@dataclasses.dataclass(slots=True)
class Validation:
    rows: int = 0
    errors: list[dict[str, object]] = dataclasses.field(default_factory=list)
    errors_total: int = 0
    file_sha256: str = ""
    file_bytes: int = 0

    @property
    def valid(self) -> bool:
        return self.errors_total == 0

    def add(self, error: CellError | FileError) -> None:
        self.errors_total += 1
        if len(self.errors) < ERRORS_SHOWN:
            self.errors.append(
                {"line": error.line, "column": error.column, "message": error.message}
            )


@dataclasses.dataclass(slots=True)
class Summary:
    """What an import did (the CLI's ``--json`` object, the job's figures)."""

    rows: int = 0
    customers_created: int = 0
    customers_updated: int = 0
    points_moved_minor: int = 0
    rows_already_applied: int = 0
    rows_failed: int = 0
    errors: list[dict[str, object]] = dataclasses.field(default_factory=list)
    errors_total: int = 0
    seconds: float = 0.0

    def fail(self, line: int, column: str | None, code: str, message: str) -> None:
        self.rows_failed += 1
        self.errors_total += 1
        if len(self.errors) < ERRORS_SHOWN:
            self.errors.append({"line": line, "column": column, "code": code, "message": message})

    def to_json(self) -> dict[str, object]:
        return {
            "rows": self.rows,
            "customers_created": self.customers_created,
            "customers_updated": self.customers_updated,
            "points_moved": format_points(self.points_moved_minor),
            "rows_already_applied": self.rows_already_applied,
            "rows_failed": self.rows_failed,
            "errors": self.errors,
            "seconds": round(self.seconds, 3),
        }


def file_chunks(path: Path) -> Iterator[bytes]:
    with path.open("rb") as file:
        while chunk := file.read(READ_BYTES):
            yield chunk


def _hashing(chunks: Iterable[bytes], validation: Validation) -> Iterator[bytes]:
    digest = hashlib.sha256()
    for chunk in chunks:
        digest.update(chunk)
        validation.file_bytes += len(chunk)
        yield chunk
    validation.file_sha256 = digest.hexdigest()


def validate(
    chunks: Iterable[bytes],
    *,
    decimals: int,
    now: datetime,
    progress: Callable[[int], None] | None = None,
) -> Validation:
    """Check the whole file (synchronous: run it in a thread from async code)."""
    validation = Validation()
    hashed = _hashing(chunks, validation)
    try:
        for row in read_rows(hashed, decimals=decimals, now=now):
            validation.rows += 1
            if isinstance(row, list):
                for error in row:
                    validation.add(error)
            if progress is not None and validation.rows % CHUNK_ROWS == 0:
                progress(validation.rows)
    except FileError as error:
        validation.add(error)
        for _ in hashed:  # the file's digest covers all of it
            pass
    return validation


@dataclasses.dataclass(slots=True)
class _Customer:
    """A customer as the chunk leaves it."""

    id: uuid.UUID
    external_id: str
    profile: dict[str, Any]
    created: bool
    changed: bool = False


_PROFILE_DEFAULTS: dict[str, Any] = {
    "email": None,
    "first_name": None,
    "last_name": None,
    "date_of_birth": None,
    "status": "active",
}


def _row_profile(row: ImportRow) -> dict[str, Any]:
    values = {
        "email": row.email,
        "first_name": row.first_name,
        "last_name": row.last_name,
        "date_of_birth": row.date_of_birth,
        "status": row.status,
    }
    return {name: value for name, value in values.items() if value is not None}


def _created_view(customer: _Customer, tier: Any | None, now: datetime) -> Customer:
    """A new customer as the API shows it: zero balances, the entry tier."""
    zero = format_points(0)
    profile = customer.profile
    return Customer(
        id=customer.id,
        customer_id=customer.external_id,
        email=profile["email"],
        first_name=profile["first_name"],
        last_name=profile["last_name"],
        date_of_birth=profile["date_of_birth"],
        status=profile["status"],
        status_reason=None,
        points_balance=zero,
        pending_points=zero,
        lifetime_points=zero,
        points_spent=zero,
        points_expired=zero,
        store_credit_balance=zero,
        expiring_points=zero,
        points_expire_at=None,
        tier=None if tier is None else TierRef(id=tier.id, name=tier.name),
        tier_expires_at=None,
        next_tier=None,
        amount_to_next_tier=None,
        rewarded_actions=[],
        referred_completed=0,
        total_spent=zero,
        created_at=now,
        updated_at=now,
    )


async def _write_customers(
    connection: AsyncConnection,
    merchant_id: uuid.UUID,
    rows: list[ImportRow],
    tier: Any | None,
    summary: Summary,
) -> set[int]:
    """Enrol or update the chunk's customers in file order; the lines that failed."""
    now = utc_now()
    external_ids = {row.customer_id for row in rows}
    existing = await repository.find_customers(connection, merchant_id, external_ids)
    emails = {row.email for row in rows if row.email is not None}
    holders = await repository.email_holders(connection, merchant_id, emails)
    state: dict[str, _Customer] = {}
    for external_id, found in existing.items():
        state[external_id] = _Customer(
            id=found.id,
            external_id=external_id,
            profile={name: getattr(found, name) for name in _PROFILE_DEFAULTS},
            created=False,
        )
    failed: set[int] = set()
    for row in rows:
        if row.email is not None:
            holder = holders.get(row.email, row.customer_id)
            if holder != row.customer_id:
                failed.add(row.line)
                summary.fail(
                    row.line,
                    "email",
                    "customer_email_taken",
                    "Another customer of this programme already has this email.",
                )
                continue
        customer = state.get(row.customer_id)
        if customer is None:
            customer = _Customer(
                id=new_id(),
                external_id=row.customer_id,
                profile=dict(_PROFILE_DEFAULTS),
                created=True,
            )
            state[row.customer_id] = customer
        profile = _row_profile(row)
        if (
            not customer.created
            and row.points_minor == 0
            and all(customer.profile[name] == value for name, value in profile.items())
        ):
            summary.rows_already_applied += 1  # nothing to change: applied before
        for name, value in profile.items():
            if customer.profile[name] != value:
                if name == "email" and customer.profile["email"] is not None:
                    holders.pop(customer.profile["email"], None)
                customer.profile[name] = value
                customer.changed = True
        if row.email is not None:
            holders[row.email] = row.customer_id
    created = [c for c in state.values() if c.created]
    inserted = await repository.insert_customers(
        connection,
        merchant_id,
        [{"id": c.id, "external_id": c.external_id, **c.profile} for c in created],
        None if tier is None else tier.id,
        now,
    )
    await rollups.members_enrolled(connection, merchant_id, len(inserted), now)
    records: list[tuple[str, uuid.UUID | None, dict[str, Any], str | None]] = []
    updates: list[tuple[uuid.UUID, dict[str, Any]]] = []
    for customer in created:
        if customer.external_id in inserted:
            summary.customers_created += 1
            view = _created_view(customer, tier, now)
            records.append(
                (
                    "customer.created",
                    customer.id,
                    {"customer": msgspec.to_builtins(view)},
                    customer.external_id,
                )
            )
    raced = [c for c in created if c.external_id not in inserted]
    if raced:
        # Enrolled by someone else meanwhile: an update of that customer.
        found = await repository.find_customers(
            connection, merchant_id, [c.external_id for c in raced]
        )
        for customer in raced:
            row = found[customer.external_id]
            profile = {name: getattr(row, name) for name in _PROFILE_DEFAULTS}
            for name, value in customer.profile.items():
                if value is not None and value != _PROFILE_DEFAULTS[name]:
                    profile[name] = value
            updates.append((row.id, profile))
    for customer in state.values():
        if not customer.created and customer.changed:
            updates.append((customer.id, customer.profile))
    if updates:
        await repository.update_profiles(connection, merchant_id, updates, now)
        summary.customers_updated += len(updates)
        for row in await repository.customers_with_balances(
            connection, merchant_id, [customer_id for customer_id, _ in updates]
        ):
            view = to_customer(row)
            records.append(
                (
                    "customer.updated",
                    row.id,
                    {"customer": msgspec.to_builtins(view)},
                    row.external_id,
                )
            )
    await events.record_many(connection, merchant_id=merchant_id, records=records, now=now)
    return failed


def _movement(merchant_id: uuid.UUID, file_sha256: str, row: ImportRow) -> Movement:
    adjust = Adjust(
        customer=CustomerRef(customer_id=row.customer_id),
        points_minor=row.points_minor,
        kind="adjustment",
        description=row.description,
        apply_to_lifetime=row.apply_to_lifetime,
        expires_at=row.expires_at,
    )
    return Movement(merchant_id, adjust, row_key(file_sha256, row), row.fingerprint())


def _record_outcome(summary: Summary, row: ImportRow, outcome: Outcome) -> None:
    if outcome.status_code < 300:
        if outcome.replayed:
            summary.rows_already_applied += 1
        else:
            summary.points_moved_minor += row.points_minor
        return
    body = _decoder.decode(outcome.body)
    error = body.get("error", body) if isinstance(body, dict) else {}
    if outcome.status_code == ServiceUnavailableError.status_code:
        # Not the row's fault: stop; the import resumes (or is run again) later.
        raise ServiceUnavailableError(str(error.get("message", "The database is unavailable.")))
    code = str(error.get("code", "error"))
    message = str(error.get("message", "The movement was refused."))
    column = "idempotency_key" if code.startswith("idempotency") else "points"
    summary.fail(row.line, column, code, message)


@dataclasses.dataclass(slots=True)
class Checkpoint:
    """Where a job stands: rows up to ``line`` are applied."""

    line: int
    summary: Summary


async def apply(
    database: Database,
    merchant_id: uuid.UUID,
    chunks: Iterable[bytes],
    *,
    file_sha256: str,
    decimals: int,
    after_line: int = 1,
    summary: Summary | None = None,
    checkpoint: Callable[[Checkpoint], Awaitable[None]] | None = None,
) -> Summary:
    """Apply every row after ``after_line`` (the file was validated)."""
    summary = summary or Summary()
    writer = LedgerWriter(
        database,
        batch_size_max=WRITER_BATCH_SIZE,
        batch_wait_ms_max=0.0,
        batches_in_flight_max=2,
    )
    await writer.start()
    async with database.read() as connection:
        tier = await repository.entry_tier(connection, merchant_id)
    pending: asyncio.Task[None] | None = None
    # The figures already counted in loyalty_import_rows_total (a resumed job's earlier
    # rows were counted by the run that applied them).
    counted = [summary.rows, summary.rows_already_applied, summary.rows_failed]

    def count_rows() -> None:
        rows, already, failed = summary.rows, summary.rows_already_applied, summary.rows_failed
        new_already, new_failed = already - counted[1], failed - counted[2]
        import_rows(rows - counted[0] - new_already - new_failed, new_already, new_failed)
        counted[:] = [rows, already, failed]

    async def movements(rows: list[ImportRow], last_line: int) -> None:
        moving = [row for row in rows if row.points_minor != 0]
        outcomes = await writer.submit_many(
            [_movement(merchant_id, file_sha256, row) for row in moving]
        )
        for row, outcome in zip(moving, outcomes, strict=True):
            _record_outcome(summary, row, outcome)
        summary.rows += len(rows)
        count_rows()
        if checkpoint is not None:
            await checkpoint(Checkpoint(last_line, summary))

    try:
        for batch in _batches(read_rows(chunks, decimals=decimals, now=utc_now()), after_line):
            # The chunk's own figures join the job's once the previous chunk's
            # checkpoint is written (a checkpoint counts only rows up to its line).
            chunk = Summary()
            rows: list[ImportRow] = []
            for item in batch:
                if isinstance(item, list):  # a row that no longer passes (e.g. time went by)
                    first = item[0]
                    chunk.fail(first.line, first.column, first.code, first.message)
                    chunk.rows += 1
                else:
                    rows.append(item)

            async def work(
                connection: AsyncConnection, rows: list[ImportRow] = rows
            ) -> tuple[set[int], Summary]:
                # Counted apart: a transaction retried counts once.
                counts = Summary()
                failed = await _write_customers(connection, merchant_id, rows, tier, counts)
                return failed, counts

            failed, counts = await database.transaction(work)
            _merge(chunk, counts)
            chunk.rows += len(failed)
            applied = [row for row in rows if row.line not in failed]
            last_line = _last_line(batch)
            if pending is not None:
                await pending
            _merge(summary, chunk)
            pending = asyncio.create_task(movements(applied, last_line))
        if pending is not None:
            await pending
            pending = None
    finally:
        if pending is not None and not pending.done():
            pending.cancel()
        await writer.stop()
    return summary


def _merge(summary: Summary, counts: Summary) -> None:
    summary.rows += counts.rows
    summary.customers_created += counts.customers_created
    summary.customers_updated += counts.customers_updated
    summary.rows_already_applied += counts.rows_already_applied
    summary.rows_failed += counts.rows_failed
    summary.errors_total += counts.errors_total
    summary.errors.extend(counts.errors[: max(0, ERRORS_SHOWN - len(summary.errors))])


def _last_line(batch: list[ImportRow | list[CellError]]) -> int:
    item = batch[-1]
    return item[0].line if isinstance(item, list) else item.line


def _batches(
    rows: Iterator[ImportRow | list[CellError]], after_line: int
) -> Iterator[list[ImportRow | list[CellError]]]:
    batch: list[ImportRow | list[CellError]] = []
    for row in rows:
        line = row[0].line if isinstance(row, list) else row.line
        if line <= after_line:
            continue
        batch.append(row)
        if len(batch) >= CHUNK_ROWS:
            yield batch
            batch = []
    if batch:
        yield batch


async def merchant_decimals(database: Database, merchant_id: uuid.UUID) -> int:
    """The programme's decimals (``merchant_not_found`` for an unknown merchant)."""
    async with database.read() as connection:
        await merchants_service.get_merchant(connection, merchant_id)
        settings = await merchants_service.get_program_settings(connection, merchant_id)
    return settings.points_decimals
