"""``loyalty customers import``: validate, then apply, with a progress bar on stderr."""

from __future__ import annotations

import asyncio
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import msgspec
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from loyalty.db.engine import Database
from loyalty.db.types import utc_now
from loyalty.imports import jobs, service
from loyalty.imports.service import Summary, Validation
from loyalty.settings import Settings


def _progress(console: Console) -> Progress:
    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[rate]} rows/s"),
        TimeElapsedColumn(),
        TextColumn("left"),
        TimeRemainingColumn(),
        console=console,
        transient=False,
        disable=not console.is_terminal,
    )


def _print_json(value: Any) -> None:
    sys.stdout.write(msgspec.json.encode(value).decode() + "\n")


def _report(summary: Summary, *, as_json: bool, errors_total: int) -> None:
    summary.errors.sort(key=lambda error: int(str(error["line"])))
    if as_json:
        _print_json({**summary.to_json(), "errors_total": errors_total})
        return
    console = Console()
    figures = summary.to_json()
    for name in (
        "rows",
        "customers_created",
        "customers_updated",
        "points_moved",
        "rows_already_applied",
        "rows_failed",
        "seconds",
    ):
        console.print(f"{name}: {figures[name]}")
    _print_errors(console, summary.errors, errors_total)


def _print_errors(console: Console, errors: list[dict[str, object]], total: int) -> None:
    for error in errors:
        column = f", column {error['column']}" if error.get("column") else ""
        code = f" [{error['code']}]" if error.get("code") else ""
        console.print(
            f"line {error['line']}{column}:{code} {error['message']}", markup=False, soft_wrap=True
        )
    if total > len(errors):
        console.print(f"... and {total - len(errors)} more error(s)")


def _counted(chunks: Iterator[bytes], progress: Progress, task: Any) -> Iterator[bytes]:
    for chunk in chunks:
        progress.update(task, advance=len(chunk))
        yield chunk


async def run(
    settings: Settings, merchant_id: uuid.UUID, path: Path, *, dry_run: bool, as_json: bool
) -> bool:
    """Validate and (unless ``dry_run``) apply; True when every row applied."""
    from loyalty.logs import configure_logging

    configure_logging(settings.log_level)
    started = time.perf_counter()
    errors_console = Console(stderr=True)
    database = Database(settings, pool_size=4)
    await database.start()
    try:
        decimals = await service.merchant_decimals(database, merchant_id)
        size = (await asyncio.to_thread(path.stat)).st_size
        with _progress(errors_console) as progress:
            task = progress.add_task("validating", total=size, rate="-")
            validation = service.validate(
                _counted(service.file_chunks(path), progress, task),
                decimals=decimals,
                now=utc_now(),
            )
        if not validation.valid or dry_run:
            return _validated(validation, started, as_json=as_json)
        import_id, lease = await jobs.create_job(
            database,
            merchant_id,
            source="cli",
            status="running",
            file_sha256=validation.file_sha256,
            file_bytes=validation.file_bytes,
        )
        await lease.update({"rows_total": validation.rows})
        with _progress(errors_console) as progress:
            task = progress.add_task("importing", total=validation.rows, rate="-")

            def shown(summary: Summary) -> None:
                elapsed = max(time.perf_counter() - started, 1e-9)
                progress.update(task, completed=summary.rows, rate=f"{summary.rows / elapsed:,.0f}")

            async with lease.held():
                summary = await jobs.apply_with_checkpoints(
                    database,
                    lease,
                    path,
                    file_sha256=validation.file_sha256,
                    decimals=decimals,
                    after_line=1,
                    summary=Summary(),
                    progress=shown,
                )
        summary.seconds = time.perf_counter() - started
        if not as_json:
            errors_console.print(f"import {import_id} finished")
        _report(summary, as_json=as_json, errors_total=summary.errors_total)
        return summary.rows_failed == 0
    finally:
        await database.dispose()


def _validated(validation: Validation, started: float, *, as_json: bool) -> bool:
    """The answer without applying: an invalid file, or a dry run."""
    summary = Summary(rows=validation.rows, errors=list(validation.errors))
    summary.seconds = time.perf_counter() - started
    if as_json:
        _report(summary, as_json=True, errors_total=validation.errors_total)
        return validation.valid
    console = Console()
    if validation.valid:
        console.print(f"the file is valid: {validation.rows} row(s); nothing written (dry run)")
        return True
    console.print(
        f"the file is invalid: {validation.errors_total} error(s); nothing was written",
        markup=False,
    )
    _print_errors(console, validation.errors, validation.errors_total)
    return False
