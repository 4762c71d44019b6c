"""What the imports API shows."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

import msgspec


class ImportProblem(msgspec.Struct, frozen=True):
    """One problem: its line in the file (the header is line 1), its column and why;
    ``code`` for a row refused while applying (e.g. ``insufficient_points``)."""

    line: int
    column: str | None
    message: str
    code: str | None = None


class ImportJob(msgspec.Struct, frozen=True):
    """An import's progress and figures. ``status``: ``validating``, ``running``,
    ``succeeded`` (rows may still have failed alone: ``rows_failed``) or ``failed``
    (an invalid file: nothing was written, ``errors`` says why)."""

    id: uuid.UUID
    status: str
    rows_total: int
    rows_done: int
    rows_failed: int
    rows_already_applied: int
    customers_created: int
    customers_updated: int
    points_moved: int | float
    errors: list[ImportProblem]
    errors_total: int
    created_at: datetime
    finished_at: datetime | None


class ImportJobEnvelope(msgspec.Struct, frozen=True):
    data: ImportJob


def to_job(row: Any, errors: list[dict[str, Any]], points_moved: int | float) -> ImportJob:
    return ImportJob(
        id=row.id,
        status=row.status,
        rows_total=row.rows_total,
        rows_done=row.rows_done,
        rows_failed=row.rows_failed,
        rows_already_applied=row.rows_already_applied,
        customers_created=row.customers_created,
        customers_updated=row.customers_updated,
        points_moved=points_moved,
        errors=[
            ImportProblem(
                line=error["line"],
                column=error.get("column"),
                message=error["message"],
                code=error.get("code"),
            )
            for error in errors
        ],
        errors_total=row.errors_total,
        created_at=row.created_at,
        finished_at=row.finished_at,
    )
