"""The benchmark harness reads its tools' output correctly (no tools needed here)."""

from __future__ import annotations

import math
import os
import tempfile
import time
from pathlib import Path

import pytest
from benchmarks.__main__ import Result, Run, parse_pgbench, parse_wrk, report
from benchmarks.machine import (
    DiskProbe,
    cpu_times,
    idle_share,
    percentile,
    probe_directory,
    steal_share,
    summarize,
)

WRK_OUTPUT = """Running 15s test @ http://127.0.0.1:8000
  1 threads and 64 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency    27.10ms   12.05ms 210.00ms   90.12%
    Req/Sec     2.37k   150.00     2.70k    70.00%
  Latency Distribution
     50%   25.50ms
     75%   30.12ms
     90%   36.99ms
     99%    1.20s
  35371 requests in 15.00s, 14.12MB read
  Non-2xx or 3xx responses: 3
Requests/sec:   2358.07
Transfer/sec:    963.94KB
"""

PGBENCH_OUTPUT = """transaction type: movement.pgbench.sql
number of transactions actually processed: 26685
number of failed transactions: 0 (0.000%)
latency average = 35.966 ms
tps = 1779.420000 (without initial connection time)
"""


def test_wrk_output() -> None:
    result = parse_wrk("API adjust, spread", WRK_OUTPUT)
    assert result.requests_per_second == 2358.07
    assert result.latency_ms_p50 == 25.5
    assert result.latency_ms_p99 == 1200.0
    assert result.errors == 3


def test_wrk_output_without_numbers_is_nan_not_zero() -> None:
    result = parse_wrk("broken", "wrk: connection refused")
    assert math.isnan(result.requests_per_second)


def test_pgbench_output_and_transaction_logs() -> None:
    logs = ["0 1 25000 0 1700000000 1\n0 2 35000 0 1700000000 2\n", "1 1 100000 0 1 1\n"]
    result = parse_pgbench("pgbench movement, spread", PGBENCH_OUTPUT, logs)
    assert result.requests_per_second == 1779.42
    assert result.latency_ms_p50 == 35.0
    assert result.latency_ms_p99 == 100.0
    assert result.errors == 0


def test_percentile() -> None:
    values = [float(n) for n in range(1, 101)]
    assert percentile(values, 0.5) == 51.0
    assert percentile(values, 0.99) == 99.0
    assert math.isnan(percentile([], 0.5))


def test_report_ratios() -> None:
    run = Run(started_at="now", options={"seconds": 1})
    run.results = [
        Result("pgbench movement, spread", 1000, 1, 2),
        Result("pgbench minimal, spread", 2000, 1, 2),
        Result("API adjust, spread", 1500, 1, 2),
        Result("API adjust, hot", 1200, 1, 2),
        Result("API GET /healthz", 8000, 1, 2),
        Result("API GET customer", 4000, 1, 2),
    ]
    text = report(run)
    assert "API spread / pgbench movement spread  1.50" in text
    assert "API hot / API spread                  0.80" in text
    assert "API spread / GET /healthz             0.19" in text
    assert "GET customer / GET /healthz           0.50" in text
    assert "GET redeemable / GET /healthz         n/a" in text


def test_disk_summary_counts_stalls() -> None:
    summary = summarize([0.3] * 97 + [25.0, 140.0, 5.0])
    assert summary.flushes == 100
    assert summary.stalls == 2
    assert summary.stalled_ms == 165.0
    assert summary.max_ms == 140.0
    assert summary.p99_ms == 25.0
    empty = summarize([])
    assert empty.flushes == 0
    assert math.isnan(empty.max_ms)


def test_disk_probe_flushes_until_stopped_and_removes_its_file(tmp_path: Path) -> None:
    with DiskProbe(tmp_path, interval=0.001) as probe:
        time.sleep(0.2)
        assert probe.path.exists()
    flushes = len(probe.latencies_ms)
    assert flushes >= 5
    assert all(latency >= 0 for latency in probe.latencies_ms)
    assert not probe.path.exists()
    time.sleep(0.05)
    assert len(probe.latencies_ms) == flushes  # stopped: no flush after the block


def test_report_shows_each_workloads_disk() -> None:
    run = Run(started_at="now", options={"seconds": 1})
    run.results = [
        Result(
            "API adjust, spread",
            1500,
            1,
            2,
            disk=summarize([0.4] * 50 + [120.0]),
            steal=0.125,
            idle=0.16,
        ),
        Result("API GET /healthz", 8000, 1, 2),
    ]
    lines = report(run).splitlines()
    adjust = next(line for line in lines if line.startswith("| API adjust, spread"))
    assert adjust.rstrip().endswith("|           1 |       120.0 |   12% |  16% |")
    healthz = next(line for line in lines if line.startswith("| API GET /healthz"))
    assert healthz.rstrip().endswith("|           - |           - |     - |    - |")


def test_steal_and_idle_shares() -> None:
    before, after = (1000, 10, 100), (2000, 260, 200)
    assert steal_share(before, after) == 0.25
    assert idle_share(before, after) == 0.1
    for share in (steal_share, idle_share):
        assert share(None, after) is None
        assert share(before, None) is None
        assert share(after, after) is None
    now = cpu_times()
    if now is not None:  # Linux
        total, stolen, idle = now
        assert 0 <= stolen <= total
        assert 0 <= idle <= total - stolen


def test_probe_directory_on_the_databases_disk(tmp_path: Path) -> None:
    data = tmp_path / "main"
    data.mkdir()
    assert probe_directory(tmp_path, str(data)) == (tmp_path, "the database's disk")


def test_probe_directory_falls_back_when_the_data_directory_is_unknown(tmp_path: Path) -> None:
    for unknown in (None, str(tmp_path / "missing" / "main")):
        directory, where = probe_directory(tmp_path, unknown)
        assert directory == tmp_path
        assert "not visible or writable" in where


def test_probe_directory_beside_the_data_directory_on_another_disk(tmp_path: Path) -> None:
    shared_memory = Path("/dev/shm")
    if not shared_memory.is_dir() or shared_memory.stat().st_dev == tmp_path.stat().st_dev:
        pytest.skip("needs a second filesystem (/dev/shm) to stand for the database's disk")
    with tempfile.TemporaryDirectory(dir=shared_memory) as other:
        data = Path(other) / "main"
        data.mkdir()
        assert probe_directory(tmp_path, str(data)) == (Path(other), "the database's disk")
        os.chmod(other, 0o500)
        try:
            if os.access(other, os.W_OK):  # root writes anywhere
                return
            directory, where = probe_directory(tmp_path, str(data))
            assert directory == tmp_path
            assert "not visible or writable" in where
        finally:
            os.chmod(other, 0o700)


def test_report_says_where_the_disk_was_probed() -> None:
    run = Run(started_at="now", options={"seconds": 1})
    run.notes.append("Postgres workloads: disk probed in the database's disk (/var/lib)")
    assert report(run).endswith("Postgres workloads: disk probed in the database's disk (/var/lib)")
