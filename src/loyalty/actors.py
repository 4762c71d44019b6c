"""Who is acting: the audit trail's ``actor`` of every entry, event and change.

``user:<email>`` for staff in the admin, ``api_key:<prefix>`` for API keys,
``system`` for jobs and the CLI's maintenance, ``import:<id>`` for imports.
The HTTP layer sets it for the request (authentication sets the key's, the
admin sets the user's); a movement captures it when it is submitted, so the
batch that applies it later, in another task, records the right one.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from contextvars import ContextVar

SYSTEM = "system"
ACTOR_CHARS_MAX = 300

_actor: ContextVar[str] = ContextVar("loyalty_actor", default=SYSTEM)


def current_actor() -> str:
    """The actor of the work in progress (``system`` when nobody set one)."""
    return _actor.get()


def set_actor(actor: str) -> None:
    """Set the actor for the rest of this task (a request's middleware)."""
    _actor.set(actor[:ACTOR_CHARS_MAX])


@contextlib.contextmanager
def acting_as(actor: str) -> Iterator[None]:
    """Act as ``actor`` inside the block (an import, a job, a test)."""
    token = _actor.set(actor[:ACTOR_CHARS_MAX])
    try:
        yield
    finally:
        _actor.reset(token)


def user_actor(email: str) -> str:
    return f"user:{email}"


def api_key_actor(prefix: str) -> str:
    return f"api_key:{prefix}"


def import_actor(import_id: object) -> str:
    return f"import:{import_id}"
