"""Scheduled jobs: every domain's declared jobs, and the loop that runs each when due.

Each domain declares its jobs (``loyalty.scheduling.Job``: name, ``every``,
``run``) next to its code; ``JOBS`` collects them. The ``Scheduler`` makes a
pass every ``interval_seconds`` (``LOYALTY_SCHEDULER_INTERVAL_SECONDS``) and
runs, in ``JOBS`` order, each job whose ``every`` has passed since it last
ran (a job without ``every`` runs on every pass); a job that fails is logged
and tried again on the next pass. ``loyalty worker`` runs the loop in its own
process; on the embedded default (SQLite) ``loyalty serve`` also runs it
in-process, so a one-process shop needs nothing else. Every job is idempotent
and claims its rows (``FOR UPDATE SKIP LOCKED`` on Postgres, the write lock
on SQLite), so several loops at once never do a piece of work twice.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

import structlog

from loyalty.actors import SYSTEM, acting_as
from loyalty.db.engine import Database
from loyalty.events import jobs as events_jobs
from loyalty.idempotency import jobs as idempotency_jobs
from loyalty.imports import jobs as imports_jobs
from loyalty.ledger.maintenance import run_maintenance
from loyalty.ledger.writer import LedgerWriter
from loyalty.metrics import job_ran
from loyalty.rewards import jobs as rewards_jobs
from loyalty.scheduling import Job, JobContext
from loyalty.settings import Settings

log = structlog.get_logger(__name__)


async def maintain_points(context: JobContext) -> Mapping[str, float]:
    """The ledger's points work: release due holds, expire points (lots and
    inactivity), recheck tiers, reward birthdays, through the writer."""
    run = await run_maintenance(context.database, context.writer)
    return {
        "customers": run.customers,
        "points_expired": run.points_expired,
        "pending_released": run.pending_released,
        "birthdays_rewarded": run.birthdays_rewarded,
    }


# The ledger's job, declared here beside the list (its work is the ledger's
# public run_maintenance).
LEDGER_JOBS = (
    Job(
        "points_maintenance",
        None,
        maintain_points,
        summary=(
            "released {pending_released} pending credit(s), expired {points_expired:g} "
            "point(s), looked at {customers} customer(s)"
        ),
    ),
)

JOBS: tuple[Job, ...] = (
    *LEDGER_JOBS,
    *rewards_jobs.JOBS,
    *idempotency_jobs.JOBS,
    *events_jobs.JOBS,
    *imports_jobs.JOBS,
)


@dataclass(frozen=True, slots=True)
class JobsRun:
    """One pass of the scheduler: the counts of each job that ran, in order, and the
    jobs that failed."""

    done: tuple[tuple[Job, Mapping[str, float]], ...] = ()
    failures: Mapping[str, Exception] = field(default_factory=dict)

    def ran(self) -> list[str]:
        return [job.name for job, _ in self.done]

    def summaries(self) -> list[str]:
        return [job.summary.format_map(counts) for job, counts in self.done if job.summary]


class Scheduler:
    """Runs each job when due, a pass every ``interval_seconds``, until stopped.

    ``interval_seconds`` is both the pause between passes and the ``every`` of
    jobs that declare none. ``clock`` (monotonic seconds) is injectable for tests."""

    def __init__(
        self,
        database: Database,
        settings: Settings,
        writer: LedgerWriter,
        interval_seconds: float,
        *,
        jobs: Sequence[Job] = JOBS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.context = JobContext(database, settings, writer)
        self.interval_seconds = interval_seconds
        self.jobs = tuple(jobs)
        self.clock = clock
        self.runs = 0
        self._last_started: dict[str, float] = {}
        self._task: asyncio.Task[None] | None = None
        self._stopping = False
        self._wake = asyncio.Event()

    def is_due(self, job: Job, now: float) -> bool:
        last = self._last_started.get(job.name)
        if last is None:
            return True
        every = self.interval_seconds if job.every is None else job.every.total_seconds()
        return now - last >= every

    async def run_due(self) -> JobsRun:
        """One pass: run every due job once, in order."""
        done: list[tuple[Job, Mapping[str, float]]] = []
        failures: dict[str, Exception] = {}
        for job in self.jobs:
            started = self.clock()
            if self._stopping:
                break
            if not self.is_due(job, started):
                continue
            try:
                with acting_as(SYSTEM):
                    counts = await job.run(self.context)
            except Exception as error:  # logged; the job is due again on the next pass
                if _cancelled():
                    # Stopped mid-job, and the cancellation surfaced as another error
                    # (a driver's clean-up failing): a stop, not a failure to retry.
                    raise asyncio.CancelledError from error
                log.exception("job_failed", job=job.name)
                failures[job.name] = error
                job_ran(job.name, ok=False)
                continue
            job_ran(job.name, ok=True)
            self._last_started[job.name] = started
            log.info("job_run", job=job.name, **counts)
            done.append((job, counts))
        self.runs += 1
        return JobsRun(tuple(done), failures)

    async def run_forever(self, report: Callable[[JobsRun], None] | None = None) -> None:
        """A pass, then a pause of ``interval_seconds``, until ``stop``."""
        while not self._stopping:
            run = await self.run_due()
            if report is not None:
                report(run)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self.interval_seconds)

    def start(self, report: Callable[[JobsRun], None] | None = None) -> asyncio.Task[None]:
        """Run the loop in a task (the one already running, if started)."""
        if self._task is None:
            self._stopping = False
            self._wake.clear()
            self._task = asyncio.create_task(self.run_forever(report), name="scheduler")
        return self._task

    async def stop(self) -> None:
        """Stop the loop: the job running is cancelled (its work is claimed in
        transactions, so what it had not committed is done by the next pass). The
        loop also stops between jobs, so a job that turns its cancellation into
        another error and carries on cannot keep it running."""
        self._stopping = True
        self._wake.set()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None


def _cancelled() -> bool:
    """Whether the running task has been asked to stop (``Task.cancel``)."""
    task = asyncio.current_task()
    return task is not None and task.cancelling() > 0


async def run_due_jobs(database: Database, settings: Settings, writer: LedgerWriter) -> JobsRun:
    """Run every job once (all are due on a first pass), as ``loyalty worker --once``
    does; the first failure is raised after the others have run."""
    run = await Scheduler(database, settings, writer, settings.scheduler_interval_seconds).run_due()
    if run.failures:
        raise next(iter(run.failures.values()))
    return run


def scheduler_enabled(settings: Settings, database: Database) -> bool:
    """``auto`` runs the jobs in the API process on SQLite only."""
    if settings.scheduler == "auto":
        return database.is_sqlite
    return settings.scheduler == "on"
