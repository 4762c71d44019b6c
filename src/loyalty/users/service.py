"""Staff users: created, listed and disabled from the CLI; passwords hashed with argon2."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy.ext.asyncio import AsyncConnection

from loyalty.audit import repository as audit_repository
from loyalty.audit import service as audit
from loyalty.customers.service import normalise_email
from loyalty.db.types import utc_now
from loyalty.errors import ConflictError, NotFoundError, ValidationFailedError
from loyalty.ids import new_id
from loyalty.merchants import service as merchants_service
from loyalty.users import repository
from loyalty.users.schemas import User

ROLES = ("admin", "support")
PASSWORD_CHARS_MIN = 10
PASSWORD_CHARS_MAX = 1024

_hasher = PasswordHasher()


class UserEmailTakenError(ConflictError):
    code = "user_email_taken"


class UserNotFoundError(NotFoundError):
    code = "user_not_found"


def _to_user(row: Any) -> User:
    return User(
        id=row.id,
        email=row.email,
        role=row.role,
        merchant_id=row.merchant_id,
        created_at=row.created_at,
        disabled_at=row.disabled_at,
    )


def check_password(password: str) -> str:
    if not PASSWORD_CHARS_MIN <= len(password) <= PASSWORD_CHARS_MAX:
        raise ValidationFailedError.for_field(
            "password",
            f"must be {PASSWORD_CHARS_MIN} to {PASSWORD_CHARS_MAX} characters",
            location="input",
        )
    return password


def hash_password(password: str) -> str:
    return _hasher.hash(check_password(password))


def password_matches(password_hash: str, password: str) -> bool:
    """Whether ``password`` is the one ``password_hash`` was made from."""
    try:
        return _hasher.verify(password_hash, password)
    except (VerificationError, InvalidHashError):
        return False


async def _require_merchant(connection: AsyncConnection, merchant_id: uuid.UUID) -> None:
    await merchants_service.get_merchant(connection, merchant_id)  # merchant_not_found


async def create_user(
    connection: AsyncConnection,
    *,
    merchant_id: uuid.UUID,
    email: str,
    role: str,
    password: str,
) -> User:
    await _require_merchant(connection, merchant_id)
    normalised = normalise_email(email, location="input")
    if role not in ROLES:
        raise ValidationFailedError.for_field("role", "must be admin or support", location="input")
    password_hash = hash_password(password)
    user_id = new_id()
    now = utc_now()
    created = await repository.insert_user(
        connection,
        merchant_id=merchant_id,
        user_id=user_id,
        email=normalised,
        role=role,
        password_hash=password_hash,
        now=now,
    )
    if not created:
        raise UserEmailTakenError(
            "This merchant already has a user with this email.", {"email": normalised}
        )
    row = await repository.find_by_email(connection, merchant_id, normalised)
    assert row is not None
    user = _to_user(row)
    await _audit(connection, user, "created", {"email": user.email, "role": user.role}, now)
    return user


async def list_users(connection: AsyncConnection, merchant_id: uuid.UUID) -> list[User]:
    await _require_merchant(connection, merchant_id)
    return [_to_user(row) for row in await repository.list_users(connection, merchant_id)]


async def disable_user(connection: AsyncConnection, merchant_id: uuid.UUID, email: str) -> User:
    """Disable the user (it can no longer sign in); disabling twice changes nothing."""
    await _require_merchant(connection, merchant_id)
    normalised = normalise_email(email, location="input")
    row = await repository.find_by_email(connection, merchant_id, normalised)
    if row is None:
        raise UserNotFoundError(f"This merchant has no user {normalised}.", {"email": normalised})
    now = utc_now()
    await repository.disable(connection, merchant_id, row.id, now)
    found = await repository.find_by_email(connection, merchant_id, normalised)
    assert found is not None
    user = _to_user(found)
    if row.disabled_at is None:  # disabling again changes nothing
        await _audit(connection, user, "disabled", {"email": user.email}, now)
    return user


async def _audit(
    connection: AsyncConnection,
    user: User,
    action: str,
    values: dict[str, object],
    now: datetime,
) -> None:
    await audit_repository.record_change(
        connection,
        merchant_id=user.merchant_id,
        subject_type="user",
        subject_id=user.id,
        action=action,
        summary=audit.describe(values),
        now=now,
    )
