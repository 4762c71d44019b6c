"""Staff sign-in and sessions, kept in the database (so every worker agrees).

- A session dies after 12 hours without a request (``SESSION_IDLE``), when
  its user is disabled (checked on every request, in the same query that
  reads the session), and at sign-out. ``last_seen_at`` is written at most
  once a minute.
- Sign-in: the email (lower-cased) and password are checked against every
  enabled user with that email, in every merchant. Wrong credentials never
  say which part was wrong. Five failures for an email within 15 minutes
  (whether or not a user has it) refuse every attempt, right or wrong, until
  15 minutes after the fifth; refused attempts are not counted, and a success
  clears the email's failures. When the password is right for users of
  several merchants, the person picks the merchant (``ChooseMerchant``).
"""

from __future__ import annotations

import asyncio
import functools
import math
import secrets
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy.ext.asyncio import AsyncConnection

from loyalty.admin import repository
from loyalty.admin.security import new_token, token_hash
from loyalty.db.engine import Database
from loyalty.db.types import utc_now
from loyalty.ids import new_id
from loyalty.users.service import hash_password, password_matches

SESSION_IDLE = timedelta(hours=12)
SESSION_TOUCH_EVERY = timedelta(minutes=1)
FAILURES_MAX = 5
FAILURE_WINDOW = timedelta(minutes=15)
LOCKOUT = timedelta(minutes=15)
FAILURES_KEPT = timedelta(days=1)
# A failed attempt purges what is older than FAILURES_KEPT (and idle sessions)
# once in this many, on average.
PURGE_ONE_IN = 50
EMAIL_CHARS_MAX = 254

WRONG_CREDENTIALS = "Wrong email or password."


@dataclass(frozen=True, slots=True)
class Staff:
    """The signed-in staff member of a request."""

    merchant_id: uuid.UUID
    merchant_name: str
    user_id: uuid.UUID
    email: str
    role: str
    # SHA-256 of the session's token (the CSRF token is derived from it).
    token_hash: str

    @property
    def is_admin(self) -> bool:
        return self.role == "admin"


# --- sessions ---------------------------------------------------------------------


async def resolve_session(database: Database, merchant_id: uuid.UUID, token: str) -> Staff | None:
    """The session's staff member; None (and the session gone) when it is not valid."""
    hashed = token_hash(token)
    async with database.read() as connection:
        row = await repository.find_session(connection, merchant_id, hashed)
    if row is None:
        return None
    now = utc_now()
    if row.disabled_at is not None or now - row.last_seen_at > SESSION_IDLE:
        await close_session(database, merchant_id, hashed)
        return None
    if now - row.last_seen_at >= SESSION_TOUCH_EVERY:

        async def touch(connection: AsyncConnection) -> None:
            await repository.touch_session(connection, merchant_id, hashed, now)

        await database.transaction(touch)
    return Staff(
        merchant_id=row.merchant_id,
        merchant_name=row.merchant_name,
        user_id=row.user_id,
        email=row.email,
        role=row.role,
        token_hash=hashed,
    )


async def open_session(
    database: Database,
    merchant_id: uuid.UUID,
    user_id: uuid.UUID,
    replacing: tuple[uuid.UUID, str] | None = None,
) -> str:
    """A new session's token; the session the browser had before (if any) is deleted."""
    token = new_token()

    async def work(connection: AsyncConnection) -> None:
        if replacing is not None:
            old_merchant_id, old_token = replacing
            await repository.delete_session(connection, old_merchant_id, token_hash(old_token))
        await repository.insert_session(
            connection,
            merchant_id=merchant_id,
            token_hash=token_hash(token),
            user_id=user_id,
            now=utc_now(),
        )

    await database.transaction(work)
    return token


async def close_session(database: Database, merchant_id: uuid.UUID, hashed: str) -> None:
    async def work(connection: AsyncConnection) -> None:
        await repository.delete_session(connection, merchant_id, hashed)

    await database.transaction(work)


# --- sign-in ----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SignedIn:
    merchant_id: uuid.UUID
    user_id: uuid.UUID
    role: str
    token: str


@dataclass(frozen=True, slots=True)
class Refused:
    message: str
    # Refused by the throttle (the credentials were not even checked).
    locked: bool = False


@dataclass(frozen=True, slots=True)
class ChooseMerchant:
    """The password is right for users of several merchants: (id, name) of each."""

    merchants: Sequence[tuple[uuid.UUID, str]]


SignInResult = SignedIn | Refused | ChooseMerchant


def attempts_key(email: str) -> str:
    return email.strip().lower()[:EMAIL_CHARS_MAX]


def locked_until(failures: Sequence[datetime]) -> datetime | None:
    """The end of the lockout that ``failures`` (oldest first) cause, if any: 15
    minutes after the last of any five failures that fall within 15 minutes."""
    until = None
    for first, fifth in zip(failures, failures[FAILURES_MAX - 1 :], strict=False):
        if fifth - first <= FAILURE_WINDOW:
            until = fifth + LOCKOUT
    return until


def lockout_message(until: datetime, now: datetime) -> str:
    minutes = max(1, math.ceil((until - now).total_seconds() / 60))
    unit = "minute" if minutes == 1 else "minutes"
    return f"Too many failed attempts. Try again in {minutes} {unit}."


@functools.cache
def _decoy_hash() -> str:
    """A hash to verify against when nobody has the email (the answer takes as long)."""
    return hash_password(secrets.token_urlsafe(16))


async def _matches(password_hash: str, password: str) -> bool:
    # argon2 takes tens of milliseconds of CPU: off the event loop.
    return await asyncio.to_thread(password_matches, password_hash, password)


async def sign_in(
    database: Database,
    email: str,
    password: str,
    merchant_id: uuid.UUID | None = None,
    replacing: tuple[uuid.UUID, str] | None = None,
) -> SignInResult:
    """Check the credentials (and the throttle); a new session when they are right."""
    key = attempts_key(email)
    if not key or not password:
        return Refused(WRONG_CREDENTIALS)
    now = utc_now()
    async with database.read() as connection:
        recent = await repository.failures_since(connection, key, now - FAILURE_WINDOW - LOCKOUT)
        candidates = await repository.enabled_users_with_email(connection, key)
    until = locked_until(recent)
    if until is not None and now < until:
        return Refused(lockout_message(until, now), locked=True)
    if merchant_id is not None:
        candidates = [c for c in candidates if c.merchant_id == merchant_id]
    matching = [c for c in candidates if await _matches(c.password_hash, password)]
    if not candidates:
        await _matches(_decoy_hash(), password)
    if not matching:
        await _record_failure(database, key)
        return Refused(WRONG_CREDENTIALS)
    if len(matching) > 1:
        return ChooseMerchant([(c.merchant_id, c.merchant_name) for c in matching])
    (user,) = matching

    async def clear(connection: AsyncConnection) -> None:
        await repository.clear_failures(connection, key)

    await database.transaction(clear)
    token = await open_session(database, user.merchant_id, user.user_id, replacing)
    return SignedIn(merchant_id=user.merchant_id, user_id=user.user_id, role=user.role, token=token)


async def _record_failure(database: Database, key: str) -> None:
    now = utc_now()
    purge = secrets.randbelow(PURGE_ONE_IN) == 0

    async def work(connection: AsyncConnection) -> None:
        await repository.insert_failure(connection, key, new_id(), now)
        if purge:
            await purge_stale(connection, now)

    await database.transaction(work)


async def purge_stale(connection: AsyncConnection, now: datetime) -> None:
    """Forget failures older than a day and sessions idle past their expiry."""
    await repository.purge_failures(connection, now - FAILURES_KEPT)
    await repository.delete_idle_sessions(connection, now - SESSION_IDLE)
