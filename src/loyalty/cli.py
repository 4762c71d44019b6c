"""The ``loyalty`` command line: serve, migrate, merchants, API keys, worker.

Each command imports what it uses when it runs: ``loyalty --help`` and every
``--help`` load no database driver, SQLAlchemy or web framework, and a command
on a database already migrated skips Alembic (``db.migrate``).
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import sys
import uuid
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Annotated, Any, TypeVar

import msgspec
import typer

from loyalty.errors import LoyaltyError
from loyalty.settings import Settings

if TYPE_CHECKING:  # imported by the commands that use them, when they run
    from rich.console import Console
    from sqlalchemy.ext.asyncio import AsyncConnection

    from loyalty import jobs

T = TypeVar("T")

# Plain help (click's): no stray type markers, no rich import for --help.
app = typer.Typer(
    help="Loyalty-points platform: API server, worker and administration.",
    no_args_is_help=True,
    add_completion=False,
    rich_markup_mode=None,
)
merchants_app = typer.Typer(
    help="Merchants (tenants).", no_args_is_help=True, rich_markup_mode=None
)
keys_app = typer.Typer(help="API keys.", no_args_is_help=True, rich_markup_mode=None)
app.add_typer(merchants_app, name="merchants")
app.add_typer(keys_app, name="keys")

JsonOption = Annotated[bool, typer.Option("--json", help="Print one JSON object.")]


def _console(stderr: bool = False) -> Console:
    from rich.console import Console

    return Console(stderr=stderr)


def _error(message: str) -> None:
    _console(stderr=True).print(f"[red]error[/red] {message}")


def _print_json(value: Any) -> None:
    sys.stdout.write(msgspec.json.encode(value).decode() + "\n")


def _fail(error: LoyaltyError, as_json: bool) -> None:
    if as_json:
        _print_json(error.to_body())
    else:
        _error(f"{error.code}: {error.message}")
    raise typer.Exit(code=1)


def _settings() -> Settings:
    try:
        return Settings.from_env()
    except ValueError as error:
        _error(str(error))
        raise typer.Exit(code=2) from error


def _migrate(settings: Settings) -> None:
    from loyalty.db.engine import DatabaseURLError
    from loyalty.db.migrate import upgrade_to_head

    try:
        upgrade_to_head(settings.database_url)
    except DatabaseURLError as error:
        _error(str(error))
        raise typer.Exit(code=2) from error


def _run_write(work: Callable[[AsyncConnection], Awaitable[T]], as_json: bool) -> T:
    """Migrate if needed, then run ``work`` in one transaction."""
    from loyalty.db.engine import Database

    settings = _settings()
    _migrate(settings)

    async def _main() -> T:
        database = Database(settings, pool_size=1)
        try:
            return await database.transaction(work)
        finally:
            await database.dispose()

    try:
        return asyncio.run(_main())
    except LoyaltyError as error:
        _fail(error, as_json)
        raise AssertionError("unreachable") from error


def _merchant_uuid(value: str, as_json: bool) -> uuid.UUID:
    from loyalty.merchants import service as merchants_service

    try:
        return uuid.UUID(value)
    except ValueError:
        _fail(merchants_service.MerchantNotFoundError(f"No merchant {value!r}."), as_json)
        raise AssertionError("unreachable") from None


@app.command()
def serve(
    host: Annotated[
        str, typer.Option(metavar="HOST", help="Interface to listen on.")
    ] = "127.0.0.1",
    port: Annotated[int, typer.Option(metavar="PORT", help="TCP port.")] = 8000,
    workers: Annotated[int, typer.Option(min=1, max=64, metavar="N", help="Worker processes.")] = 1,
) -> None:
    """Run the API server (migrates the database first)."""
    import uvicorn

    settings = _settings()
    _migrate(settings)
    uvicorn.run(
        "loyalty.app:create_app",
        factory=True,
        host=host,
        port=port,
        workers=workers,
        loop="uvloop",
        http="httptools",
        access_log=False,
        log_level=settings.log_level,
        timeout_graceful_shutdown=10,
    )


@app.command()
def migrate() -> None:
    """Apply database migrations (the same on SQLite and Postgres)."""
    settings = _settings()
    _migrate(settings)
    _console().print("database is up to date")


@app.command()
def worker(
    once: Annotated[bool, typer.Option("--once", help="Run every due job once and exit.")] = False,
    interval_seconds: Annotated[
        float | None,
        typer.Option(
            min=1.0,
            metavar="SECONDS",
            help="Pause between passes, and how often jobs without their own period run "
            "(default: LOYALTY_SCHEDULER_INTERVAL_SECONDS, 60).",
        ),
    ] = None,
) -> None:
    """Deliver webhooks and run scheduled jobs, each when due: release pending points,
    expire points (lots and inactivity), recheck tiers, reward birthdays, expire discount
    codes, purge idempotency records and events past their retention. Safe to run several
    at once."""
    from loyalty import jobs
    from loyalty.db.engine import Database
    from loyalty.ledger.writer import LedgerWriter
    from loyalty.webhooks.delivery import Deliverer

    settings = _settings()
    _migrate(settings)
    console = _console()

    def report(run: jobs.JobsRun) -> None:
        for line in run.summaries():
            console.print(line)

    async def _main() -> bool:
        database = Database(settings, pool_size=4)
        await database.start()
        writer = LedgerWriter(database)
        await writer.start()
        scheduler = jobs.Scheduler(
            database, settings, writer, interval_seconds or settings.scheduler_interval_seconds
        )
        deliverer = Deliverer(database, settings)
        try:
            if once:
                run = await scheduler.run_due()
                report(run)
                console.print(f"made {await deliverer.run_once()} webhook delivery attempt(s)")
                return not run.failures
            deliverer.start()
            # SIGTERM or SIGINT: stop the jobs, let deliveries in flight finish.
            stopping = asyncio.Event()
            loop = asyncio.get_running_loop()
            for signal_number in (signal.SIGTERM, signal.SIGINT):
                loop.add_signal_handler(signal_number, stopping.set)
            jobs_task = asyncio.create_task(scheduler.run_forever(report))
            stop_task = asyncio.create_task(stopping.wait())
            await asyncio.wait({jobs_task, stop_task}, return_when=asyncio.FIRST_COMPLETED)
            for task in (jobs_task, stop_task):
                task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await jobs_task
            return True
        finally:
            await deliverer.stop()
            await writer.stop()
            await database.dispose()

    if not asyncio.run(_main()):
        raise typer.Exit(1)


@merchants_app.command("create")
def merchants_create(
    name: Annotated[str, typer.Argument(metavar="NAME", hidden=True)],
    as_json: JsonOption = False,
) -> None:
    """Create a merchant (a tenant: one shop's programme) named NAME.

    \b
    Example:
      loyalty merchants create "Yuko Shop" --json
      MERCHANT=$(loyalty merchants create "Yuko Shop" --json | jq -r .id)
    """
    from loyalty.merchants import service as merchants_service

    async def work(connection: AsyncConnection) -> Any:
        return await merchants_service.create_merchant(connection, name)

    merchant = _run_write(work, as_json)
    if as_json:
        _print_json(merchant)
    else:
        _console().print(f"merchant [bold]{merchant.name}[/bold] created: {merchant.id}")


@merchants_app.command("list")
def merchants_list(as_json: JsonOption = False) -> None:
    """List merchants."""
    from loyalty.merchants import repository as merchants_repository

    async def work(connection: AsyncConnection) -> Any:
        return await merchants_repository.list_merchants(connection)

    merchants = _run_write(work, as_json)
    if as_json:
        _print_json({"data": merchants})
        return
    from rich.table import Table

    table = Table("id", "name", "created_at")
    for merchant in merchants:
        table.add_row(str(merchant.id), merchant.name, merchant.created_at.isoformat())
    _console().print(table)


@keys_app.command("create")
def keys_create(
    merchant: Annotated[str, typer.Option(metavar="ID", help="Merchant id.")],
    scopes: Annotated[
        str, typer.Option(metavar="SCOPES", help="Comma-separated scopes, or 'all'.")
    ],
    name: Annotated[
        str | None, typer.Option(metavar="NAME", help="A name to recognise the key by.")
    ] = None,
    rate_limit: Annotated[
        str | None,
        typer.Option(metavar="LIMIT", help="Per-key limit, e.g. 100/minute (second|minute|hour)."),
    ] = None,
    as_json: JsonOption = False,
) -> None:
    """Create an API key. The token is printed once and never stored.

    \b
    Examples:
      loyalty keys create --merchant "$MERCHANT" --scopes all --json
      loyalty keys create --merchant "$MERCHANT" --name widget \\
          --scopes customers:read,rewards:read --rate-limit 600/minute
    """
    from loyalty.auth import service as auth_service

    merchant_id = _merchant_uuid(merchant, as_json)

    async def work(connection: AsyncConnection) -> Any:
        return await auth_service.create_key(
            connection, merchant_id=merchant_id, scopes=scopes, name=name, rate_limit=rate_limit
        )

    key = _run_write(work, as_json)
    if as_json:
        _print_json(key)
    else:
        console = _console()
        console.print(f"key {key.prefix} created with scopes {', '.join(key.scopes)}")
        console.print("token (shown once, store it now):")
        console.print(key.token, soft_wrap=True)


@keys_app.command("list")
def keys_list(
    merchant: Annotated[str, typer.Option(metavar="ID", help="Merchant id.")],
    as_json: JsonOption = False,
) -> None:
    """List a merchant's API keys by prefix (tokens are never shown again)."""
    from loyalty.auth import service as auth_service

    merchant_id = _merchant_uuid(merchant, as_json)

    async def work(connection: AsyncConnection) -> Any:
        return await auth_service.list_keys(connection, merchant_id)

    keys = _run_write(work, as_json)
    if as_json:
        _print_json({"data": keys})
        return
    from rich.table import Table

    table = Table("id", "prefix", "name", "scopes", "rate_limit", "revoked_at")
    for key in keys:
        table.add_row(
            str(key.id),
            key.prefix,
            key.name,
            ",".join(key.scopes),
            key.rate_limit or "default",
            key.revoked_at.isoformat() if key.revoked_at else "",
        )
    _console().print(table)


@keys_app.command("revoke")
def keys_revoke(
    id_or_prefix: Annotated[str, typer.Argument(metavar="ID_OR_PREFIX", hidden=True)],
    as_json: JsonOption = False,
) -> None:
    """Revoke the key ID_OR_PREFIX (its id, or its lk_... prefix); it stops working at once."""
    from loyalty.auth import service as auth_service

    async def work(connection: AsyncConnection) -> Any:
        return await auth_service.revoke_key(connection, id_or_prefix)

    key = _run_write(work, as_json)
    if as_json:
        _print_json(key)
    else:
        _console().print(f"key {key.prefix} revoked")


def main() -> None:
    app()
