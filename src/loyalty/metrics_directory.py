"""The directory where ``loyalty serve --workers N`` keeps its workers' metrics.

prometheus-client picks its multiprocess mode when it is first imported, from
``PROMETHEUS_MULTIPROC_DIR``: ``serve`` sets it here, before any worker starts
(and before anything imports prometheus-client), to a directory of its own,
created empty for this run and removed at exit, so every start counts from
zero and runs never mix. This module imports nothing heavy on purpose.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"


@contextmanager
def multiprocess_metrics(workers: int) -> Iterator[str | None]:
    """With several workers: a fresh, empty directory in ``PROMETHEUS_MULTIPROC_DIR``
    for the duration (removed afterwards); with one, the process's own registry
    (any inherited ``PROMETHEUS_MULTIPROC_DIR`` is dropped: it may hold an old run)."""
    if workers <= 1:
        os.environ.pop(MULTIPROC_ENV, None)
        yield None
        return
    directory = tempfile.mkdtemp(prefix="loyalty-metrics-")
    previous = os.environ.get(MULTIPROC_ENV)
    os.environ[MULTIPROC_ENV] = directory
    try:
        yield directory
    finally:
        if previous is None:
            os.environ.pop(MULTIPROC_ENV, None)
        else:
            os.environ[MULTIPROC_ENV] = previous
        shutil.rmtree(directory, ignore_errors=True)
