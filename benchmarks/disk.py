"""The disk's flush latency while a workload runs, beside its throughput.

Every acknowledged points movement waits for Postgres to flush its commit to
disk (``fdatasync`` of the WAL), and on a shared virtual disk a flush now and
then takes a hundred milliseconds or more, whatever the database does: every
movement in flight then waits that long. ``DiskProbe`` writes 8 KiB and
flushes it every ``interval`` seconds in a directory (a thread, alongside the
workload) and reports how many flushes were slow, so that a run's p99 can be
read against the disk it ran on. The probe's own load is small next to the
database's (40 flushes a second against hundreds).
"""

from __future__ import annotations

import os
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

STALL_MS = 20.0
BLOCK = b"\0" * 8192
BLOCKS_IN_FILE = 64


@dataclass(frozen=True)
class DiskSummary:
    flushes: int
    p99_ms: float
    max_ms: float
    # Flushes slower than STALL_MS, and their total time.
    stalls: int
    stalled_ms: float

    def describe(self) -> str:
        if not self.flushes:
            return "no flush measured"
        return (
            f"{self.stalls} flushes > {STALL_MS:.0f} ms ({self.stalled_ms:.0f} ms in all), "
            f"p99 {self.p99_ms:.1f} ms, max {self.max_ms:.1f} ms, of {self.flushes}"
        )


def summarize(latencies_ms: list[float]) -> DiskSummary:
    if not latencies_ms:
        return DiskSummary(0, float("nan"), float("nan"), 0, 0.0)
    ordered = sorted(latencies_ms)
    slow = [value for value in ordered if value > STALL_MS]
    return DiskSummary(
        flushes=len(ordered),
        p99_ms=ordered[min(len(ordered) - 1, round(0.99 * (len(ordered) - 1)))],
        max_ms=ordered[-1],
        stalls=len(slow),
        stalled_ms=sum(slow),
    )


class DiskProbe:
    """``with DiskProbe(directory) as probe: …``, then ``probe.summary()``."""

    def __init__(self, directory: Path, interval: float = 0.025) -> None:
        self.path = directory / f"disk-probe-{os.getpid()}-{id(self)}.dat"
        self.interval = interval
        self.latencies_ms: list[float] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="disk-probe", daemon=True)

    def __enter__(self) -> DiskProbe:
        self._thread.start()
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self._stop.set()
        self._thread.join()
        self.path.unlink(missing_ok=True)

    def summary(self) -> DiskSummary:
        return summarize(self.latencies_ms)

    def _run(self) -> None:
        descriptor = os.open(self.path, os.O_WRONLY | os.O_CREAT, 0o600)
        try:
            block = 0
            while not self._stop.is_set():
                started = time.perf_counter()
                os.pwrite(descriptor, BLOCK, block * len(BLOCK))
                os.fdatasync(descriptor)
                self.latencies_ms.append((time.perf_counter() - started) * 1000)
                block = (block + 1) % BLOCKS_IN_FILE
                self._stop.wait(self.interval)
        finally:
            os.close(descriptor)
