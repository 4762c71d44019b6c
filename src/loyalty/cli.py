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
from pathlib import Path
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
customers_app = typer.Typer(help="Customers.", no_args_is_help=True, rich_markup_mode=None)
users_app = typer.Typer(
    help="Staff users (the merchant's staff accounts).", no_args_is_help=True, rich_markup_mode=None
)
app.add_typer(merchants_app, name="merchants")
app.add_typer(keys_app, name="keys")
app.add_typer(customers_app, name="customers")
app.add_typer(users_app, name="users")

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
    """Run the API server (migrates the database first).

    SIGTERM or SIGINT stops it gracefully: it stops accepting connections, answers
    every request it accepted (at most SHUTDOWN_GRACE_SECONDS), drains the ledger
    queue and exits 0; a worker process still running SHUTDOWN_SECONDS_MAX after
    the signal is killed."""
    import uvicorn

    settings = _settings()
    _migrate(settings)
    config = uvicorn.Config(
        "loyalty.app:create_app",
        factory=True,
        host=host,
        port=port,
        workers=workers,
        loop="uvloop",
        http="httptools",
        access_log=False,
        log_level=settings.log_level,
        timeout_graceful_shutdown=SHUTDOWN_GRACE_SECONDS,
        # Idle keep-alive connections stay open longer than a load balancer's or an
        # HTTP client pool's idle timeout (often 60 s): a server closing one first
        # races a request sent on it, which the client sees as a reset.
        timeout_keep_alive=KEEP_ALIVE_SECONDS,
    )
    from loyalty.metrics_directory import multiprocess_metrics

    # Before any worker imports prometheus-client: their metrics are summed from a
    # directory fresh for this run, removed at exit (loyalty.metrics_directory).
    with multiprocess_metrics(workers):
        _run_server(config)


# Graceful shutdown (``loyalty serve``): requests in flight get this long after
# SIGTERM; then the application shuts down (ledger queue drained, database closed).
SHUTDOWN_GRACE_SECONDS = 10
# A ``serve --workers N`` process still alive this long after SIGTERM is killed.
KEEP_ALIVE_SECONDS = 75
SHUTDOWN_SECONDS_MAX = 30


def _listening_sockets(config: Any) -> list[Any]:
    """One listening socket per worker on the same port, with ``SO_REUSEPORT``: the
    kernel spreads new connections evenly over them by their addresses. On one
    shared socket, the worker that wakes first accepts every connection waiting,
    so a burst (a client's or a proxy's pool opening at once) lands mostly on one
    worker while the others idle (measured: 64 connections split 64/0, 60/4 or
    35/29 between two workers, adjust throughput 2,591, 3,035 and 3,808 req/s).
    Elsewhere than on Linux, one socket is shared as before."""
    import socket

    from uvicorn.config import STARTUP_FAILURE

    # Linux balances connections over a group of SO_REUSEPORT sockets; other systems
    # accept the option without balancing (one socket would take them all).
    if config.uds is not None or config.fd is not None or not sys.platform.startswith("linux"):
        return [config.bind_socket()]
    family = socket.AF_INET6 if ":" in config.host else socket.AF_INET
    sockets: list[socket.socket] = []
    try:
        # First a plain bind: it fails if anything listens on the port already
        # (another server would otherwise join the group and share its traffic),
        # and it picks the port when the configured one is 0.
        with socket.socket(family=family) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            probe.bind((config.host, config.port))
            port = probe.getsockname()[1]
        for _ in range(config.workers):
            sock = socket.socket(family=family)
            sockets.append(sock)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
            sock.bind((config.host, port))
            sock.set_inheritable(True)
    except OSError as error:
        for sock in sockets:
            sock.close()
        _error(f"cannot listen on {config.host}:{config.port}: {error}")
        sys.exit(STARTUP_FAILURE)
    return sockets


def _run_server(config: Any) -> None:
    """``uvicorn.run`` with three changes. Exit status 0 after a SIGTERM/SIGINT
    (uvicorn re-raises the signal once it has shut down). With several workers,
    each listens on its own socket (``_listening_sockets``), and a worker that
    dies is replaced on the same socket; the parent keeps every socket open, so
    connections reaching a dead worker's socket wait for its replacement rather
    than being refused. When it stops, the parent closes its copies of the
    sockets, so new connections are refused rather than left in a backlog and
    reset; its workers are waited for at most SHUTDOWN_SECONDS_MAX."""
    import time

    from uvicorn.config import STARTUP_FAILURE
    from uvicorn.server import Server
    from uvicorn.supervisors.multiprocess import Multiprocess, Process, logger

    class Supervisor(Multiprocess):
        def _sockets_of(self, index: int) -> list[Any]:
            return [self.sockets[index % len(self.sockets)]]

        def init_processes(self) -> None:
            for index in range(self.processes_num):
                process = Process(self.config, self._sockets_of(index))
                process.start()
                self.processes.append(process)

        def restart_all(self) -> None:
            # SIGHUP: each worker replaced, its replacement ready first (as uvicorn
            # does), on the worker's own socket.
            for index, old_process in enumerate(self.processes):
                if self.should_exit.is_set():
                    return
                new_process = Process(self.config, self._sockets_of(index))
                new_process.start()
                if not new_process.wait_until_ready(
                    self.config.timeout_worker_healthcheck, self.should_exit
                ):
                    new_process.kill()
                    new_process.join()
                    logger.error("New worker [%s] was not ready in time", new_process.pid)
                    return
                old_process.terminate()
                old_process.join()
                self.processes[index] = new_process

        def keep_subprocess_alive(self) -> None:
            if self.should_exit.is_set():
                return
            for index, process in enumerate(self.processes):
                if process.is_alive(timeout=self.config.timeout_worker_healthcheck):
                    continue
                process.kill()  # hung: killed; dead: no-op
                process.join()
                if process.exitcode == STARTUP_FAILURE:
                    logger.error("Worker [%s] failed to start; stopping", process.pid)
                    self.should_exit.set()
                    return
                if self.should_exit.is_set():
                    return
                logger.info("Worker [%s] died; starting another", process.pid)
                replacement = Process(self.config, self._sockets_of(index))
                replacement.start()
                self.processes[index] = replacement

        def terminate_all(self) -> None:
            for sock in self.sockets:
                sock.close()
            super().terminate_all()

        def join_all(self) -> None:
            deadline = time.monotonic() + SHUTDOWN_SECONDS_MAX
            for process in self.processes:
                process.process.join(max(0.0, deadline - time.monotonic()))
                if process.process.exitcode is None:
                    logger.error("Child process [%s] did not stop in time; killing it", process.pid)
                    process.kill()
                    process.process.join()

    if config.workers > 1:
        sockets = _listening_sockets(config)
        try:
            Supervisor(config, sockets=sockets).run()
        finally:
            for sock in sockets:
                sock.close()
        return
    config.load_app()
    server = Server(config=config)
    # The handlers uvicorn restores, then calls with the signal it stopped on.
    for signal_number in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signal_number, lambda _signal, _frame: None)
    server.run()
    if not server.started:
        raise typer.Exit(STARTUP_FAILURE)


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
    metrics_port: Annotated[
        int | None,
        typer.Option(
            min=0,
            max=65535,
            metavar="PORT",
            help="Serve this worker's Prometheus metrics on PORT (/metrics; "
            "LOYALTY_METRICS_TOKEN applies).",
        ),
    ] = None,
    metrics_host: Annotated[
        str, typer.Option(metavar="HOST", help="Interface of --metrics-port.")
    ] = "127.0.0.1",
) -> None:
    """Deliver webhooks and run scheduled jobs, each when due: release pending points,
    expire points (lots and inactivity), recheck tiers, reward birthdays, expire discount
    codes, purge idempotency records and events past their retention. Safe to run several
    at once."""
    import os

    from loyalty.metrics_directory import MULTIPROC_ENV

    # The worker's metrics are its own (never a serve run's directory).
    os.environ.pop(MULTIPROC_ENV, None)

    from loyalty import jobs
    from loyalty.db.engine import Database
    from loyalty.gc_tuning import tune_for_serving
    from loyalty.ledger.writer import LedgerWriter
    from loyalty.metrics import MetricsServer
    from loyalty.webhooks import backlog
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
        metrics_server = backlog_task = None
        backlog_stop = asyncio.Event()
        if metrics_port is not None:
            metrics_server = MetricsServer(metrics_host, metrics_port, settings.metrics_token)
            metrics_server.start()
            backlog_task = asyncio.create_task(backlog.refresh_forever(database, backlog_stop))
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
            if settings.gc_tuning:  # a long run (not --once)
                tune_for_serving()
            # SIGTERM or SIGINT: stop the jobs, let deliveries in flight finish.
            stopping = asyncio.Event()
            loop = asyncio.get_running_loop()
            for signal_number in (signal.SIGTERM, signal.SIGINT):
                loop.add_signal_handler(signal_number, stopping.set)
            jobs_task = scheduler.start(report)
            stop_task = asyncio.create_task(stopping.wait())
            await asyncio.wait({jobs_task, stop_task}, return_when=asyncio.FIRST_COMPLETED)
            stop_task.cancel()
            await scheduler.stop()
            return True
        finally:
            await deliverer.stop()
            await writer.stop()
            if backlog_task is not None:
                backlog_stop.set()
                await asyncio.gather(backlog_task, return_exceptions=True)
            if metrics_server is not None:
                metrics_server.stop()
            await database.dispose()

    if not asyncio.run(_main()):
        raise typer.Exit(1)


@customers_app.command("import")
def customers_import(
    file: Annotated[Path, typer.Argument(metavar="FILE", hidden=True)],
    merchant: Annotated[str, typer.Option(metavar="ID", help="Merchant id.")],
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Only validate the file; write nothing.")
    ] = False,
    as_json: JsonOption = False,
) -> None:
    """Import customers and balances from the CSV file FILE (validated whole first).

    Columns: customer_id (required), email, first_name, last_name, date_of_birth,
    status, points, description, apply_to_lifetime, expires_at, idempotency_key.
    Nothing is written when any row is invalid. Running the same file again moves
    no points twice. Exit status 0 only when every row applied.

    \b
    Example:
      loyalty customers import members.csv --merchant "$MERCHANT" --json
    """
    from loyalty.imports import cli as import_cli

    merchant_id = _merchant_uuid(merchant, as_json)
    if not file.is_file():
        _error(f"no such file: {file}")
        raise typer.Exit(code=2)
    settings = _settings()
    _migrate(settings)
    try:
        ok = asyncio.run(
            import_cli.run(settings, merchant_id, file, dry_run=dry_run, as_json=as_json)
        )
    except LoyaltyError as error:
        _fail(error, as_json)
    if not ok:
        raise typer.Exit(code=1)


@users_app.command("create")
def users_create(
    merchant: Annotated[str, typer.Option(metavar="ID", help="Merchant id.")],
    email: Annotated[str, typer.Option(metavar="EMAIL", help="The user's email (sign-in name).")],
    role: Annotated[
        str, typer.Option(metavar="ROLE", help="admin (everything) or support.")
    ] = "admin",
    password_stdin: Annotated[
        bool,
        typer.Option("--password-stdin", help="Read the password from standard input."),
    ] = False,
    as_json: JsonOption = False,
) -> None:
    """Create a staff user; the password (10 characters or more) is asked for.

    With --password-stdin it is read from standard input instead; it is never an
    argument.

    \b
    Examples:
      loyalty users create --merchant "$MERCHANT" --email owner@example.com
      echo "$PASSWORD" | loyalty users create --merchant "$MERCHANT" \\
          --email agent@example.com --role support --password-stdin --json
    """
    from loyalty.users import service as users_service

    merchant_id = _merchant_uuid(merchant, as_json)
    if password_stdin:
        password = sys.stdin.readline().rstrip("\r\n")
    else:
        password = typer.prompt("Password", hide_input=True, confirmation_prompt=True)

    async def work(connection: AsyncConnection) -> Any:
        return await users_service.create_user(
            connection, merchant_id=merchant_id, email=email, role=role, password=password
        )

    user = _run_write(work, as_json)
    if as_json:
        _print_json(user)
    else:
        _console().print(f"user {user.email} ({user.role}) created: {user.id}")


@users_app.command("list")
def users_list(
    merchant: Annotated[str, typer.Option(metavar="ID", help="Merchant id.")],
    as_json: JsonOption = False,
) -> None:
    """List a merchant's staff users."""
    from loyalty.users import service as users_service

    merchant_id = _merchant_uuid(merchant, as_json)

    async def work(connection: AsyncConnection) -> Any:
        return await users_service.list_users(connection, merchant_id)

    users = _run_write(work, as_json)
    if as_json:
        _print_json({"data": users})
        return
    from rich.table import Table

    table = Table("id", "email", "role", "created_at", "disabled_at")
    for user in users:
        table.add_row(
            str(user.id),
            user.email,
            user.role,
            user.created_at.isoformat(),
            user.disabled_at.isoformat() if user.disabled_at else "",
        )
    _console().print(table)


@users_app.command("disable")
def users_disable(
    email: Annotated[str, typer.Argument(metavar="EMAIL", hidden=True)],
    merchant: Annotated[str, typer.Option(metavar="ID", help="Merchant id.")],
    as_json: JsonOption = False,
) -> None:
    """Disable the staff user EMAIL: it can no longer sign in (its row stays)."""
    from loyalty.users import service as users_service

    merchant_id = _merchant_uuid(merchant, as_json)

    async def work(connection: AsyncConnection) -> Any:
        return await users_service.disable_user(connection, merchant_id, email)

    user = _run_write(work, as_json)
    if as_json:
        _print_json(user)
    else:
        _console().print(f"user {user.email} disabled")


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


# --- export: CSV files of customers and of the ledger ---------------------------

export_app = typer.Typer(
    help="Export customers or the ledger as CSV (streamed, in constant memory).",
    no_args_is_help=True,
    rich_markup_mode=None,
)
app.add_typer(export_app, name="export")

ExportMerchantOption = Annotated[str, typer.Option("--merchant", metavar="ID", help="Merchant id.")]
ExportOutputOption = Annotated[
    str | None,
    typer.Option(
        "--output",
        "-o",
        metavar="FILE",
        help="Write to FILE (replaced once the export is complete) instead of stdout.",
    ),
]


def _export(
    kind: str,
    merchant: str,
    output_name: str | None,
    since: str | None = None,
    until: str | None = None,
) -> None:
    """Stream one export to ``output_name`` (or stdout), with a progress bar on a terminal."""
    import os
    import tempfile
    import time
    from collections.abc import Iterator
    from pathlib import Path

    from loyalty.db.engine import Database
    from loyalty.exports import service as exports_service

    merchant_id = _merchant_uuid(merchant, as_json=False)
    try:
        within = exports_service.period(
            since, until, location="option", names=("--since", "--until")
        )
    except LoyaltyError as error:
        _fail(error, as_json=False)
        raise AssertionError("unreachable") from error
    output = None if output_name is None else Path(output_name)
    settings = _settings()
    _migrate(settings)
    show_progress = output is not None and sys.stderr.isatty()
    started = time.monotonic()

    class OutputError(Exception):
        """The output file could not be created or written."""

    @contextlib.contextmanager
    def writing() -> Iterator[None]:
        try:
            yield
        except BrokenPipeError:
            raise
        except OSError as error:  # e.g. no such directory, the disk is full
            raise OutputError(error.strerror or str(error)) from error

    async def _main() -> int:
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeElapsedColumn,
            TimeRemainingColumn,
        )

        database = Database(settings, pool_size=1)
        partial: str | None = None
        sink: Any = None
        try:
            await exports_service.check_merchant(database, merchant_id)
            with writing():
                if output is None:
                    sink = sys.stdout.buffer
                elif output.exists() and not output.is_file():  # a device or a pipe
                    sink = output.open("wb")
                else:
                    # Written beside FILE, which it replaces when complete: never half a file.
                    descriptor, partial = tempfile.mkstemp(
                        dir=output.parent, prefix=f".{output.name}.", suffix=".partial"
                    )
                    sink = os.fdopen(descriptor, "wb")
            rows = 0
            progress = Progress(
                TextColumn("{task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                TextColumn("rows"),
                TimeElapsedColumn(),
                TimeRemainingColumn(),
                console=_console(stderr=True),
                disable=not show_progress,
            )
            with progress:
                total = None
                if show_progress:
                    if kind == "customers":
                        total = await exports_service.count_customers(database, merchant_id)
                    else:
                        total = await exports_service.count_transactions(
                            database, merchant_id, within
                        )
                task = progress.add_task(f"exporting {kind}", total=total)

                def on_rows(count: int) -> None:
                    nonlocal rows
                    rows += count
                    progress.advance(task, count)

                if kind == "customers":
                    chunks = exports_service.export_customers(database, merchant_id, on_rows)
                else:
                    chunks = exports_service.export_transactions(
                        database, merchant_id, within, on_rows
                    )
                # Closed on any exit, so that its read transaction ends before the engine.
                async with contextlib.aclosing(chunks):
                    async for chunk in chunks:
                        with writing():
                            sink.write(chunk)
            with writing():
                sink.flush()
                if sink is not sys.stdout.buffer:
                    sink.close()
                if partial is not None and output is not None:
                    os.replace(partial, output)
                    partial = None
            return rows
        finally:
            if sink is not None and sink is not sys.stdout.buffer:
                with contextlib.suppress(OSError):
                    sink.close()
            if partial is not None:
                with contextlib.suppress(OSError):
                    os.unlink(partial)
            await database.dispose()

    try:
        rows = asyncio.run(_main())
    except LoyaltyError as error:
        _fail(error, as_json=False)
        raise AssertionError("unreachable") from error
    except BrokenPipeError:
        # The reader went away (e.g. `| head`): stop quietly.
        with contextlib.suppress(OSError):
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        raise typer.Exit(code=1) from None
    except OutputError as error:
        _error(f"cannot write {output}: {error}")
        raise typer.Exit(code=1) from error
    if output is not None:
        seconds = time.monotonic() - started
        _console(stderr=True).print(f"exported {rows:,} {kind} to {output} in {seconds:.1f} s")


@export_app.command("customers")
def export_customers(merchant: ExportMerchantOption, output: ExportOutputOption = None) -> None:
    """Export every customer with every balance as CSV.

    One row per customer, oldest first: customer_id (the platform id), email, first_name,
    last_name, date_of_birth, status, points_balance, pending_points, lifetime_points,
    points_spent, points_expired, store_credit_balance, tier, total_spent, created_at.

    \b
    Examples:
      loyalty export customers --merchant "$MERCHANT" --output customers.csv
      loyalty export customers --merchant "$MERCHANT" | gzip > customers.csv.gz
    """
    _export("customers", merchant, output)


@export_app.command("transactions")
def export_transactions(
    merchant: ExportMerchantOption,
    since: Annotated[
        str | None,
        typer.Option(
            metavar="DATE",
            help="Entries created at or after this: YYYY-MM-DD (from the start of that day, "
            "UTC) or an RFC 3339 timestamp.",
        ),
    ] = None,
    until: Annotated[
        str | None,
        typer.Option(
            metavar="DATE",
            help="Entries created before this: YYYY-MM-DD (until the end of that day, UTC) "
            "or an RFC 3339 timestamp.",
        ),
    ] = None,
    output: ExportOutputOption = None,
) -> None:
    """Export the ledger's entries as CSV.

    One row per entry, oldest first: transaction_id, customer_id (the platform id), points,
    type, kind, description, internal_note, apply_to_lifetime, points_balance (after the
    entry), sequence, expires_at, created_at, actor (empty until entries record who made
    them).

    \b
    Examples:
      loyalty export transactions --merchant "$MERCHANT" --since 2026-01-01 \\
          --until 2026-01-31 --output january.csv
    """
    _export("transactions", merchant, output, since, until)


def main() -> None:
    app()
