"""Customers: enrolment (upsert by platform id), look-up by id or email."""

from __future__ import annotations

import re
import uuid
from datetime import date, datetime
from typing import Any

import msgspec
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection

from loyalty.customers import repository
from loyalty.customers.refs import ERASED, CustomerRef, customer_not_found
from loyalty.customers.schemas import (
    EMAIL_PATTERN,
    ChangeCustomerStatus,
    Customer,
    EnrolCustomer,
    Referral,
    TierRef,
)
from loyalty.db.engine import Database
from loyalty.db.types import utc_now
from loyalty.errors import ConflictError, ValidationFailedError, invariant
from loyalty.events import repository as events
from loyalty.ids import new_id
from loyalty.ledger.engine.lifecycle import inactivity_deadline
from loyalty.points import format_points
from loyalty.rewards.codes import generate_code
from loyalty.text import check_characters, clean_note, strip_html
from loyalty.tiers import service as tiers_service
from loyalty.tiers.service import Progress

_EMAIL_PATTERN = re.compile(EMAIL_PATTERN)
_CONTROL_CHARACTERS = re.compile(r"[\x00-\x1f\x7f]")
DATE_OF_BIRTH_YEAR_MIN = 1900


class CustomerEmailTakenError(ConflictError):
    code = "customer_email_taken"


def normalise_email(email: str, field: str = "email", location: str = "body") -> str:
    normalised = email.strip().lower()
    # Control characters (NUL among them, which Postgres text refuses) are never valid.
    if not _EMAIL_PATTERN.match(normalised) or _CONTROL_CHARACTERS.search(normalised):
        raise ValidationFailedError.for_field(field, "must be a valid email address", location)
    return normalised


def normalise_external_id(
    external_id: str, field: str = "customer_id", location: str = "body"
) -> str:
    normalised = external_id.strip()
    if not normalised:
        raise ValidationFailedError.for_field(field, "must not be blank", location)
    if _CONTROL_CHARACTERS.search(normalised):
        raise ValidationFailedError.for_field(
            field, "must not contain control characters", location
        )
    return normalised


def _clean_name(value: str | None, field: str) -> str | None:
    if value is None:
        return None
    if _CONTROL_CHARACTERS.search(value):
        raise ValidationFailedError.for_field(field, "must not contain control characters")
    return strip_html(value) or None


def _check_date_of_birth(value: date | None) -> date | None:
    if value is None:
        return None
    if value.year < DATE_OF_BIRTH_YEAR_MIN or value > utc_now().date():
        raise ValidationFailedError.for_field(
            "date_of_birth", f"must be between {DATE_OF_BIRTH_YEAR_MIN}-01-01 and today"
        )
    return value


def _next_expiry(row: Any) -> tuple[int, datetime | None]:
    """The next points to expire: the next lot, or the whole balance for inactivity."""
    deadline = None
    if row.points_balance_minor > 0:
        deadline = inactivity_deadline(
            row.expiry_policy, row.expiry_days, row.expiry_changed_at, row.last_activity_at
        )
    if deadline is not None and (row.next_expiry_at is None or deadline <= row.next_expiry_at):
        return row.points_balance_minor, deadline
    if row.next_expiry_at is not None:
        return row.next_expiry_minor, row.next_expiry_at
    return 0, None


def to_customer(row: Any, progress: Progress | None = None) -> Customer:
    expiring_minor, expire_at = _next_expiry(row)
    return Customer(
        id=row.id,
        customer_id=row.external_id,
        email=row.email,
        first_name=row.first_name,
        last_name=row.last_name,
        date_of_birth=row.date_of_birth,
        status=row.status,
        status_reason=row.status_reason,
        points_balance=format_points(row.points_balance_minor),
        pending_points=format_points(row.pending_points_minor),
        lifetime_points=format_points(row.lifetime_points_minor),
        points_spent=format_points(row.points_spent_minor),
        points_expired=format_points(row.points_expired_minor),
        store_credit_balance=format_points(row.store_credit_balance_minor),
        expiring_points=format_points(expiring_minor),
        points_expire_at=expire_at,
        tier=None if row.tier_id is None else TierRef(id=row.tier_id, name=row.tier_name),
        tier_expires_at=row.tier_expires_at,
        next_tier=None if progress is None else progress.next_tier,
        amount_to_next_tier=None if progress is None else progress.amount_to_next_tier,
        rewarded_actions=msgspec.json.decode(row.rewarded_actions),
        referred_completed=row.referred_completed,
        total_spent=format_points(row.total_spent_minor),
        created_at=row.created_at,
        updated_at=row.updated_at,
    )


async def enrol_customer(
    connection: AsyncConnection, merchant_id: uuid.UUID, data: EnrolCustomer
) -> tuple[Customer, bool]:
    """Enrol or update; returns the customer and whether it was created.

    Enrolment never moves points.
    """
    external_id = normalise_external_id(data.customer_id)
    email = data.email
    if isinstance(email, str):
        email = normalise_email(email)
    first_name = data.first_name
    if isinstance(first_name, str) or first_name is None:
        first_name = _clean_name(first_name, "first_name")
    last_name = data.last_name
    if isinstance(last_name, str) or last_name is None:
        last_name = _clean_name(last_name, "last_name")
    date_of_birth = data.date_of_birth
    if not isinstance(date_of_birth, msgspec.UnsetType):
        date_of_birth = _check_date_of_birth(date_of_birth)
    profile = repository.profile_values(
        email, first_name, last_name, date_of_birth, unset=msgspec.UNSET
    )
    if isinstance(email, str):
        holder = await repository.find_id_by_email(connection, merchant_id, email)
        if holder is not None and holder[1] != external_id:
            raise _email_taken(email)
    referrer = None
    if not isinstance(data.referral_code, msgspec.UnsetType):
        referrer = await repository.find_by_referral_code(
            connection, merchant_id, data.referral_code.strip().upper()
        )
        if referrer is None:
            raise ValidationFailedError.for_field(
                "referral_code", "is not a referral code of this programme"
            )
        if referrer.external_id == external_id:
            raise ValidationFailedError.for_field("referral_code", "is the customer's own code")
    now = utc_now()
    savepoint = await connection.begin_nested()
    try:
        created = await repository.insert_customer(
            connection,
            merchant_id=merchant_id,
            customer_id=new_id(),
            external_id=external_id,
            profile=profile,
            now=now,
        )
        if not created and profile:
            await repository.update_profile(
                connection,
                merchant_id=merchant_id,
                external_id=external_id,
                profile=profile,
                now=now,
            )
        await savepoint.commit()
    except IntegrityError as error:
        # Two requests raced to give one email to two customers.
        await savepoint.rollback()
        raise _email_taken(str(email)) from error
    row = await repository.find_by_external_id(connection, merchant_id, external_id)
    assert row is not None
    if referrer is not None:
        # The first referrer is kept; a customer who has ordered can no longer be referred.
        await repository.link_referrer(connection, merchant_id, row.id, referrer.id)
    customer = await customer_view(connection, merchant_id, row)
    await events.record(
        connection,
        merchant_id=merchant_id,
        event_type="customer.created" if created else "customer.updated",
        subject_id=customer.id,
        payload={"customer": msgspec.to_builtins(customer)},
        now=now,
        customer_ref=customer.customer_id,
    )
    return customer, created


def _email_taken(email: str) -> CustomerEmailTakenError:
    return CustomerEmailTakenError(
        "Another customer of this programme already has this email.", {"email": email}
    )


def check_ref(ref: CustomerRef) -> CustomerRef:
    """Exactly one of customer_id / customer_email, normalised."""
    if (ref.customer_id is None) == (ref.customer_email is None):
        raise ValidationFailedError(
            "Give exactly one of customer_id or customer_email.",
            [
                {
                    "field": "customer_id",
                    "location": "query",
                    "message": "exactly one of customer_id or customer_email is required",
                }
            ],
        )
    if ref.customer_id is not None:
        return CustomerRef(customer_id=normalise_external_id(ref.customer_id, location="query"))
    assert ref.customer_email is not None
    return CustomerRef(
        customer_email=normalise_email(ref.customer_email, "customer_email", location="query")
    )


async def _load(database: Database, merchant_id: uuid.UUID, ref: CustomerRef) -> Any:
    ref = check_ref(ref)
    row = await repository.load_with_balances(
        database, merchant_id, external_id=ref.customer_id, email=ref.customer_email
    )
    if row is None:
        raise customer_not_found(ref)
    return row


async def customer_view(connection: AsyncConnection, merchant_id: uuid.UUID, row: Any) -> Customer:
    """The customer, with its progress to the next tier when the programme has tiers."""
    if row.tier_basis is None:
        return to_customer(row)
    return to_customer(row, await tiers_service.progress(connection, merchant_id, row))


async def get_customer(database: Database, merchant_id: uuid.UUID, ref: CustomerRef) -> Customer:
    row = await _load(database, merchant_id, ref)
    if row.tier_basis is None:
        return to_customer(row)
    async with database.read() as connection:
        return await customer_view(connection, merchant_id, row)


async def get_points_balance_minor(
    database: Database, merchant_id: uuid.UUID, ref: CustomerRef
) -> tuple[uuid.UUID, int]:
    """The customer's internal id and available balance in minor units (exact, for arithmetic)."""
    row = await _load(database, merchant_id, ref)
    return row.id, row.points_balance_minor


async def resolve_customer_id(
    connection: AsyncConnection, merchant_id: uuid.UUID, ref: CustomerRef
) -> uuid.UUID:
    """The customer's internal UUID, or 404 ``customer_not_found``."""
    ref = check_ref(ref)
    customer_uuid: uuid.UUID | None
    if ref.customer_id is not None:
        customer_uuid = await repository.find_id_by_external_id(
            connection, merchant_id, ref.customer_id
        )
    else:
        assert ref.customer_email is not None
        found = await repository.find_id_by_email(connection, merchant_id, ref.customer_email)
        customer_uuid = found[0] if found else None
    if customer_uuid is None:
        raise customer_not_found(ref)
    return customer_uuid


async def change_status(
    connection: AsyncConnection,
    merchant_id: uuid.UUID,
    ref: CustomerRef,
    data: ChangeCustomerStatus,
) -> Customer:
    """Set the customer's status; the change and its reason are an event."""
    ref = check_ref(ref)
    customer_uuid = await resolve_customer_id(connection, merchant_id, ref)
    check_characters(data.reason, "reason")
    reason = clean_note(data.reason)
    before = await repository.find_by_id(connection, merchant_id, customer_uuid, lock=True)
    if before.status == ERASED:
        raise customer_not_found(ref)  # erased while this waited for its row
    if before.status == data.status and before.status_reason == reason:
        return await customer_view(connection, merchant_id, before)
    now = utc_now()
    await repository.set_status(connection, merchant_id, customer_uuid, data.status, reason, now)
    after = await repository.find_by_id(connection, merchant_id, customer_uuid)
    customer = await customer_view(connection, merchant_id, after)
    await events.record(
        connection,
        merchant_id=merchant_id,
        event_type="customer.status_changed",
        subject_id=customer_uuid,
        payload={
            "customer": msgspec.to_builtins(customer),
            "previous_status": before.status,
            "reason": reason,
        },
        now=now,
        customer_ref=customer.customer_id,
    )
    return customer


REFERRAL_CODE_DRAWS_MAX = 8


async def get_referral(
    connection: AsyncConnection, merchant_id: uuid.UUID, ref: CustomerRef
) -> Referral:
    """The customer's referral code (drawn the first time it is asked for) and referrals."""
    customer_uuid = await resolve_customer_id(connection, merchant_id, ref)
    state = await repository.referral_state(connection, merchant_id, customer_uuid)
    for _ in range(REFERRAL_CODE_DRAWS_MAX):
        if state.referral_code is not None:
            break
        if state.status == ERASED:
            raise customer_not_found(ref)  # erased meanwhile: no code is drawn for it
        savepoint = await connection.begin_nested()
        try:
            await repository.set_referral_code(
                connection, merchant_id, customer_uuid, generate_code("")
            )
            await savepoint.commit()
        except IntegrityError:
            await savepoint.rollback()  # another customer holds this code: draw again
        state = await repository.referral_state(connection, merchant_id, customer_uuid)
    invariant(state.referral_code is not None, "a referral code was drawn")
    row = await repository.find_by_id(connection, merchant_id, customer_uuid)
    return Referral(
        customer_id=row.external_id,
        referral_code=state.referral_code,
        referred_completed=state.referred_completed,
        referred_by=state.referred_by,
        referral_completed_at=state.referral_completed_at,
    )
