"""The customer page's forms: adjust points, change the status (support too);
approve / cancel a pending credit, use / revert a reward (admins only).

Each goes through the API's service (the ledger writer for movements), and each
form carries an ``idempotency_key`` drawn when the page was rendered: a double
click or a resubmitted form replays the first answer instead of moving points
twice. The key's request fingerprint is the form's content, so the same key sent
with other values is refused rather than replayed. After a success the browser is
sent back to the customer's page (303) with a notice; a refusal shows the page
again with the error next to its field and the values as typed.
"""

from __future__ import annotations

import uuid
from decimal import Decimal, InvalidOperation
from typing import Any, cast

import msgspec
from litestar import Response, post
from litestar.params import FromPath
from sqlalchemy.ext.asyncio import AsyncConnection

from loyalty.admin.pages.customers import (
    STATUS_CHOICES,
    adjust_form,
    customer_page_response,
    customer_path,
    customer_ref,
    find_customer,
    parse_customer_uuid,
    points_label,
    signed_points,
    status_label,
)
from loyalty.admin.web import (
    SUPPORT_TOO,
    AdminRequest,
    Form,
    admin_only,
    current_user,
    database,
    form_from_error,
    form_values,
    parse_uuid,
    redirect,
    sentence,
)
from loyalty.customers import service as customers_service
from loyalty.customers.refs import ERASED
from loyalty.customers.schemas import ChangeCustomerStatus, Customer
from loyalty.errors import LoyaltyError, NotFoundError, ValidationFailedError
from loyalty.idempotency import service as idempotency
from loyalty.ledger import service as ledger_service
from loyalty.ledger.engine.protocol import Outcome
from loyalty.ledger.schemas import CreateTransaction
from loyalty.ledger.writer import LedgerWriter
from loyalty.rewards import service as rewards_service
from loyalty.rewards.schemas import CustomerRewardEnvelope, UseReward

ADJUST_FIELDS = ("points", "description", "internal_note", "apply_to_lifetime")
STATUS_FIELDS = ("status", "reason")
STATUS_REASON_CHARS_MAX = 500
POINTS_CHARS_MAX = 32

STALE_FORM = (
    "This form is out of date (it has no valid submission key). Check the customer's "
    "balance, then fill it in again."
)
KEY_REUSED = (
    "This form was already submitted with other values, so nothing was changed this time. "
    "Check the activity log, then fill the form in again."
)


def _writer(request: AdminRequest) -> LedgerWriter:
    return cast("LedgerWriter", request.app.state.ledger_writer)


def _fingerprint(request: AdminRequest, content: dict[str, Any]) -> str:
    """The submission's fingerprint: the action (its path) and what the form said."""
    return idempotency.fingerprint("POST", request.url.path, "", msgspec.json.encode(content))


def _key(values: dict[str, str]) -> str | None:
    key = parse_uuid(values.get("idempotency_key"))
    return None if key is None else str(key)


def _error_of(outcome: Outcome) -> tuple[str, str, Any]:
    """A refused outcome's error: its code, message and details."""
    try:
        error = msgspec.json.decode(outcome.body).get("error") or {}
    except (msgspec.DecodeError, AttributeError):
        error = {}
    return (
        str(error.get("code") or "error"),
        str(error.get("message") or "The change was refused."),
        error.get("details"),
    )


def _data_of(outcome: Outcome) -> dict[str, Any]:
    try:
        body = msgspec.json.decode(outcome.body)
    except msgspec.DecodeError:
        return {}
    data = body.get("data") if isinstance(body, dict) else None
    return data if isinstance(data, dict) else {}


async def _live_customer(request: AdminRequest, customer_id: str) -> Customer:
    """The merchant's customer (404 page otherwise), refused when erased."""
    staff = current_user(request)
    customer = await find_customer(
        database(request), staff.merchant_id, parse_customer_uuid(customer_id)
    )
    if customer.status == ERASED:
        raise ValidationFailedError(
            "This customer was erased: its balances and status can no longer change."
        )
    return customer


# --- adjust ----------------------------------------------------------------------------------


def _points(text: str) -> Decimal | None:
    text = text.strip().replace(",", "").replace("\N{MINUS SIGN}", "-")
    if not text or len(text) > POINTS_CHARS_MAX:
        return None
    try:
        amount = Decimal(text)
    except InvalidOperation:
        return None
    return amount if amount.is_finite() else None


def _refused_adjust(outcome: Outcome, typed: dict[str, str]) -> Form:
    """The adjust form after the ledger refused it, the reason in words."""
    code, message, details = _error_of(outcome)
    if code == "validation_error":
        error = ValidationFailedError(message, details)
        return form_from_error(error, typed, fields=ADJUST_FIELDS)
    if code == "idempotency_key_reused":
        return Form(values=typed, message=KEY_REUSED)
    if code == "insufficient_points" and isinstance(details, dict):
        balance = details.get("points_balance")
        if isinstance(balance, int | float):
            message = f"{sentence(message)} The balance is {points_label(balance)} points."
    if code == "balance_limit_exceeded":
        return Form(values=typed, errors={"points": sentence(message)})
    return Form(values=typed, message=sentence(message))


@post("/customers/{customer_id:str}/adjust", opt=SUPPORT_TOO)
async def adjust_points(request: AdminRequest, customer_id: FromPath[str]) -> Response[Any]:
    staff = current_user(request)
    customer = await _live_customer(request, customer_id)
    values = await form_values(request)
    typed = {name: values.get(name, "") for name in ADJUST_FIELDS}

    async def again(form: Form) -> Response[str]:
        # A fresh key: the next submission is a new request.
        shown = adjust_form(dict(form.values))
        shown.errors, shown.message = form.errors, form.message
        return await customer_page_response(request, customer.id, adjust=shown, status_code=422)

    key = _key(values)
    if key is None:
        return await again(Form(values=typed, message=STALE_FORM))
    amount = _points(typed["points"])
    if amount is None:
        return await again(
            Form(values=typed, errors={"points": "Enter a number of points, e.g. 250 or -100."})
        )
    apply_to_lifetime = typed["apply_to_lifetime"] == "true"
    internal_note = typed["internal_note"].strip() or None
    content = {
        "customer": str(customer.id),
        "points": str(amount.normalize()),
        "description": typed["description"],
        "internal_note": internal_note,
        "apply_to_lifetime": apply_to_lifetime,
    }
    data = CreateTransaction(
        points=float(amount),
        description=typed["description"],
        internal_note=internal_note,
        apply_to_lifetime=apply_to_lifetime,
    )
    try:
        outcome = await ledger_service.adjust_points(
            _writer(request),
            staff.merchant_id,
            customer_ref(customer),
            data,
            idempotency_key=key,
            request_fingerprint=_fingerprint(request, content),
        )
    except NotFoundError:
        raise
    except LoyaltyError as error:
        return await again(form_from_error(error, typed, fields=ADJUST_FIELDS))
    if outcome.status_code == 404:
        raise NotFoundError("No such customer.")
    if outcome.status_code >= 400:
        return await again(_refused_adjust(outcome, typed))
    entry = _data_of(outcome)
    moved = float(entry.get("points", amount))
    balance = entry.get("points_balance")
    notice = f"{signed_points(moved)} points {'added' if moved > 0 else 'removed'}."
    if isinstance(balance, int | float):
        notice += f" New balance: {points_label(balance)} points."
    return redirect(request, customer_path(customer.id), notice=notice)


# --- status ----------------------------------------------------------------------------------


@post("/customers/{customer_id:str}/status", opt=SUPPORT_TOO)
async def change_status(request: AdminRequest, customer_id: FromPath[str]) -> Response[Any]:
    staff = current_user(request)
    customer = await _live_customer(request, customer_id)
    values = await form_values(request)
    typed = {name: values.get(name, "") for name in STATUS_FIELDS}
    errors: dict[str, str] = {}
    if typed["status"] not in {value for value, _ in STATUS_CHOICES}:
        errors["status"] = "Choose one of the statuses."
    if len(typed["reason"]) > STATUS_REASON_CHARS_MAX:
        errors["reason"] = f"Must be at most {STATUS_REASON_CHARS_MAX} characters."
    if errors:
        form = Form(values=typed, errors=errors)
        return await customer_page_response(request, customer.id, status=form, status_code=422)
    data = ChangeCustomerStatus(
        status=typed["status"],  # type: ignore[arg-type]  # checked above
        reason=typed["reason"].strip() or None,
    )

    async def work(connection: AsyncConnection) -> Customer:
        return await customers_service.change_status(
            connection, staff.merchant_id, customer_ref(customer), data
        )

    try:
        changed = await database(request).transaction(work)
    except NotFoundError:
        raise
    except LoyaltyError as error:
        form = form_from_error(error, typed, fields=STATUS_FIELDS)
        return await customer_page_response(request, customer.id, status=form, status_code=422)
    return redirect(
        request,
        customer_path(customer.id),
        notice=f"Status set to {status_label(changed.status)}.",
    )


# --- pending credits (admins) -------------------------------------------------------------------


async def _action_refused(
    request: AdminRequest, customer: Customer, status_code: int, message: str
) -> Response[str]:
    return await customer_page_response(
        request, customer.id, alert=sentence(message), status_code=status_code
    )


async def _pending_of(request: AdminRequest, customer: Customer, pending_id: str) -> uuid.UUID:
    """The pending credit's id when it is this customer's (404 otherwise)."""
    async with database(request).read() as connection:
        owner = await ledger_service.pending_owner(
            connection, current_user(request).merchant_id, pending_id
        )
    if owner.ref.customer_id != customer.customer_id:
        raise NotFoundError("No such pending credit.")
    return owner.pending_id


@post("/customers/{customer_id:str}/pending/{pending_id:str}/approve", guards=[admin_only])
async def approve_pending(
    request: AdminRequest, customer_id: FromPath[str], pending_id: FromPath[str]
) -> Response[Any]:
    staff = current_user(request)
    customer = await _live_customer(request, customer_id)
    wanted = await _pending_of(request, customer, pending_id)
    values = await form_values(request)
    outcome = await ledger_service.release_pending(
        _writer(request),
        staff.merchant_id,
        customer_ref(customer),
        wanted,
        idempotency_key=_key(values),
        request_fingerprint=_fingerprint(request, {}),
    )
    if outcome.status_code >= 400:
        return await _action_refused(request, customer, outcome.status_code, _error_of(outcome)[1])
    released = _data_of(outcome).get("released") or [{}]
    points = released[0].get("points", 0) - released[0].get("points_cancelled", 0)
    return redirect(
        request,
        customer_path(customer.id),
        notice=f"Approved: {points_label(points)} pending points are now available.",
    )


@post("/customers/{customer_id:str}/pending/{pending_id:str}/cancel", guards=[admin_only])
async def cancel_pending(
    request: AdminRequest, customer_id: FromPath[str], pending_id: FromPath[str]
) -> Response[Any]:
    staff = current_user(request)
    customer = await _live_customer(request, customer_id)
    wanted = await _pending_of(request, customer, pending_id)
    values = await form_values(request)
    outcome = await ledger_service.cancel_pending(
        _writer(request),
        staff.merchant_id,
        customer_ref(customer),
        wanted,
        idempotency_key=_key(values),
        request_fingerprint=_fingerprint(request, {}),
    )
    if outcome.status_code >= 400:
        return await _action_refused(request, customer, outcome.status_code, _error_of(outcome)[1])
    return redirect(request, customer_path(customer.id), notice="The pending credit is cancelled.")


# --- rewards (admins) ----------------------------------------------------------------------------


async def _check_reward(request: AdminRequest, customer: Customer, reward_id: str) -> None:
    """404 unless the customer reward is this customer's."""
    async with database(request).read() as connection:
        detail = await rewards_service.get_customer_reward(
            connection, current_user(request).merchant_id, reward_id
        )
    if detail.customer_id != customer.customer_id:
        raise NotFoundError("No such customer reward.")


@post("/customers/{customer_id:str}/rewards/{reward_id:str}/use", guards=[admin_only])
async def use_reward(
    request: AdminRequest, customer_id: FromPath[str], reward_id: FromPath[str]
) -> Response[Any]:
    staff = current_user(request)
    customer = await _live_customer(request, customer_id)
    await _check_reward(request, customer, reward_id)
    values = await form_values(request)

    async def operation(connection: AsyncConnection) -> tuple[int, bytes]:
        detail = await rewards_service.use_reward(
            connection, staff.merchant_id, reward_id, UseReward()
        )
        return 200, msgspec.json.encode(CustomerRewardEnvelope(data=detail))

    try:
        result = await idempotency.execute(
            database(request),
            staff.merchant_id,
            _key(values),
            _fingerprint(request, {}),
            operation,
        )
    except LoyaltyError as error:
        return await _action_refused(request, customer, error.status_code, error.message)
    if result.status_code >= 400:
        refused = Outcome(result.status_code, result.body)
        return await _action_refused(request, customer, result.status_code, _error_of(refused)[1])
    return redirect(request, customer_path(customer.id), notice="The reward is marked used.")


@post("/customers/{customer_id:str}/rewards/{reward_id:str}/revert", guards=[admin_only])
async def revert_reward(
    request: AdminRequest, customer_id: FromPath[str], reward_id: FromPath[str]
) -> Response[Any]:
    staff = current_user(request)
    customer = await _live_customer(request, customer_id)
    await _check_reward(request, customer, reward_id)
    values = await form_values(request)
    outcome = await rewards_service.revert(
        database(request),
        _writer(request),
        staff.merchant_id,
        reward_id,
        idempotency_key=_key(values),
        request_fingerprint=_fingerprint(request, {}),
    )
    if outcome.status_code >= 400:
        return await _action_refused(request, customer, outcome.status_code, _error_of(outcome)[1])
    refunded = _data_of(outcome).get("points_used", 0)
    return redirect(
        request,
        customer_path(customer.id),
        notice=f"The reward is reverted: {points_label(refunded)} points given back.",
    )


ROUTES = [adjust_points, change_status, approve_pending, cancel_pending, use_reward, revert_reward]
