"""The machine while a workload runs: the disk's flush latency, the CPU time
the hypervisor took (steal) and the CPU time left unused (idle), beside the
workload's throughput.

Every acknowledged points movement waits for Postgres to flush its commit to
disk (``fdatasync`` of the WAL), and on a shared virtual disk a flush now and
then takes a hundred milliseconds or more, whatever the database does: every
movement in flight then waits that long. ``DiskProbe`` writes 8 KiB and
flushes it every ``interval`` seconds in a directory (a thread, alongside the
workload) and reports how many flushes were slow, so that a run's p99 can be
read against the disk it ran on. The probe's own load is small next to the
database's (40 flushes a second against hundreds).

On a virtual machine the host may also run other guests on its cores:
``cpu_times`` and ``steal_share`` read the share of CPU time taken from this
machine (``/proc/stat``; None where there is no such file), during which every
process here, the load generator included, waited. ``idle_share`` reads the
share no process used: a workload that leaves the cores idle is bound by what
it waits for, not by its CPU.
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


def percentile(values: list[float], fraction: float) -> float:
    """The value at ``fraction`` of the sorted values (nearest rank); NaN for none.
    Every benchmark's p50 and p99."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(fraction * (len(ordered) - 1))))
    return ordered[index]


def summarize(latencies_ms: list[float]) -> DiskSummary:
    slow = [value for value in latencies_ms if value > STALL_MS]
    return DiskSummary(
        flushes=len(latencies_ms),
        p99_ms=percentile(latencies_ms, 0.99),
        max_ms=max(latencies_ms, default=float("nan")),
        stalls=len(slow),
        stalled_ms=sum(slow),
    )


def probe_directory(fallback: Path, data_directory: str | None) -> tuple[Path, str]:
    """Where to probe the disk a database writes to, and what that place is.

    ``fallback`` (the harness's own directory) when it is on the same
    filesystem as ``data_directory``; else the data directory's parent when this
    process may write there and it is on that filesystem; else ``fallback``,
    said to be not the database's disk (a ``/tmp`` on tmpfs flushes nothing)."""
    if data_directory:
        data = Path(data_directory)
        try:
            device = data.stat().st_dev
            if fallback.stat().st_dev == device:
                return fallback, "the database's disk"
            parent = data.parent
            if os.access(parent, os.W_OK) and parent.stat().st_dev == device:
                return parent, "the database's disk"
        except OSError:
            pass
    return fallback, "the harness's directory (the database's disk is not visible or writable here)"


# All CPU time, the time stolen by the host, and the idle time (waiting for I/O
# included), in clock ticks since boot.
CpuTimes = tuple[int, int, int]


def cpu_times() -> CpuTimes | None:
    """The machine's ``CpuTimes`` so far (``/proc/stat``, Linux), or None."""
    try:
        with open("/proc/stat") as stat:
            fields = stat.readline().split()
    except OSError:
        return None
    if len(fields) < 9 or fields[0] != "cpu":
        return None
    ticks = [int(value) for value in fields[1:9]]
    return sum(ticks), ticks[7], ticks[3] + ticks[4]


def _share(before: CpuTimes | None, after: CpuTimes | None, part: int) -> float | None:
    if before is None or after is None or after[0] <= before[0]:
        return None
    return (after[part] - before[part]) / (after[0] - before[0])


def steal_share(before: CpuTimes | None, after: CpuTimes | None) -> float | None:
    """The share of CPU time stolen between two ``cpu_times`` readings."""
    return _share(before, after, 1)


def idle_share(before: CpuTimes | None, after: CpuTimes | None) -> float | None:
    """The share of CPU time no process used between two ``cpu_times`` readings: a
    workload that left some was bound by waiting (for the disk, for a lock, for its
    round trips), not by the cores."""
    return _share(before, after, 2)


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
