"""The garbage collector of a long-running process (``loyalty serve``, ``loyalty worker``).

CPython's default thresholds suit short scripts, not an asyncio server. Under
load every request's objects live a few milliseconds across awaits, so the
default young generation (700 net allocations) is collected about a hundred
times a second and promotes them; the old generation then fills with what
is already garbage, and a full collection traverses the whole heap (about
150,000 objects once Litestar, SQLAlchemy and the app are imported): 120-150
ms during which the process answers no one, several times in ten seconds of
load. That pause was most of the API's p99.

After start-up, once:

- ``gc.freeze()`` moves everything alive (modules, classes, the app, its
  routes) to the permanent generation, which no collection traverses again;
- a young generation of 20,000 allocations: collected a few times a second
  under load, in a few milliseconds, by which time most requests that
  allocated are answered and their objects freed by reference counting;
- older generations at 20 and 10: cycles still get collected, rarely and over
  a small heap.

``LOYALTY_GC_TUNING=off`` keeps CPython's defaults (the comparison of cost).
"""

from __future__ import annotations

import gc

YOUNG_THRESHOLD = 20_000
MIDDLE_THRESHOLD = 20
OLD_THRESHOLD = 10


def tune_for_serving() -> None:
    """Freeze the start-up heap and widen the young generation (call once, started)."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(YOUNG_THRESHOLD, MIDDLE_THRESHOLD, OLD_THRESHOLD)
