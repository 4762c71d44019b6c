"""Rewards (admin only): the catalogue customers redeem points for.

List, add, edit, deactivate / reactivate and delete (after a confirmation
page), through the API's rewards service and request structs. The fields of
``reward_rule`` depend on the reward's type: htmx swaps them when the type
changes; without JavaScript a "Show the fields" button re-renders the form.
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, replace
from typing import Any, TypeVar

import msgspec
from litestar import Response, get, post
from litestar.params import FromPath, FromQuery
from sqlalchemy.ext.asyncio import AsyncConnection

from loyalty.admin.web import (
    AdminRequest,
    Form,
    current_user,
    database,
    decode_form,
    form_from_error,
    form_number,
    form_text,
    form_values,
    parse_uuid,
    redirect,
    render,
    worded,
)
from loyalty.errors import LoyaltyError, NotFoundError
from loyalty.idempotency import service as idempotency
from loyalty.merchants import service as merchants_service
from loyalty.rewards import service as rewards_service
from loyalty.rewards.schemas import CreateReward, Reward, UpdateReward

PAGE_SIZE = 50

TYPE_LABELS = {
    "fixed_discount": "Fixed discount",
    "percentage_discount": "Percentage discount",
    "free_shipping": "Free shipping",
    "free_product": "Free product",
    "store_credit": "Store credit",
}
TYPE_OPTIONS = list(TYPE_LABELS.items())
DEFAULT_TYPE = "fixed_discount"


@dataclass(frozen=True, slots=True)
class RuleField:
    """One input of a reward type's ``reward_rule``."""

    name: str
    label: str
    number: bool = True
    required: bool = False
    hint: str | None = None

    def parse(self, values: Mapping[str, str]) -> object:
        return form_number(values, self.name) if self.number else form_text(values, self.name)


RULE_FIELDS: dict[str, tuple[RuleField, ...]] = {
    "fixed_discount": (
        RuleField(
            "discount_value",
            "Discount amount",
            required=True,
            hint="Money off the order, in the shop's currency.",
        ),
    ),
    "percentage_discount": (
        RuleField(
            "discount_percentage",
            "Discount percentage",
            required=True,
            hint="Percent off the order, 1 to 100.",
        ),
    ),
    "free_shipping": (
        RuleField(
            "max_shipping_amount",
            "Maximum shipping amount",
            hint="Optional: the most the shipping refund covers. Empty: all of it.",
        ),
    ),
    "free_product": (
        RuleField("product_id", "Product id", number=False, hint="The shop's product id."),
        RuleField(
            "variant_id",
            "Variant id",
            number=False,
            hint="A product id, a variant id, or both.",
        ),
    ),
    "store_credit": (
        RuleField(
            "credit_amount",
            "Credit amount",
            required=True,
            hint="Store credit given, in the shop's currency.",
        ),
    ),
}
RULE_NAMES = tuple(dict.fromkeys(field.name for fields in RULE_FIELDS.values() for field in fields))
FIELDS = (
    "name",
    "description",
    "reward_type",
    "points_cost",
    "active",
    "code_validity_days",
    "minimum_order_amount",
    "per_customer_limit",
    *RULE_NAMES,
)
# The service names a rule's field ``reward_rule.<field>``; the form's input is ``<field>``.
ALIASES = {f"reward_rule.{name}": name for name in RULE_NAMES}


# --- a form that creates something, once ----------------------------------------------

Created = TypeVar("Created", bound=msgspec.Struct)
KEY_FIELD = "idempotency_key"


def with_fresh_key(form: Form) -> Form:
    """The form to render, with a new submission key (every rendering is a new
    submission: a corrected form is not the one that was refused)."""
    return replace(form, values={**form.values, KEY_FIELD: str(uuid.uuid4())})


def _stored_refusal(status_code: int, body: bytes) -> LoyaltyError:
    """A refusal stored under the key (a double-click of a refused form), raised again."""
    error = msgspec.json.decode(body).get("error") or {}
    kind: type[LoyaltyError] = type(
        "StoredRefusal",
        (LoyaltyError,),
        {"status_code": status_code, "code": str(error.get("code") or "refused")},
    )
    return kind(str(error.get("message") or "The change was refused."), error.get("details"))


async def create_once(
    request: AdminRequest,
    values: Mapping[str, str],
    kind: type[Created],
    create: Callable[[AsyncConnection], Awaitable[Created]],
) -> Created:
    """Run ``create`` in one transaction, once per submission of the form: its
    ``idempotency_key`` is the API's Idempotency-Key, so a double-clicked form
    creates one object (the second click answers with the same one)."""
    staff = current_user(request)
    key = parse_uuid(values.get(KEY_FIELD))
    content = {name: value for name, value in values.items() if name != KEY_FIELD}
    fingerprint = idempotency.fingerprint(
        "POST", request.url.path, "", msgspec.json.encode(content)
    )

    async def operation(connection: AsyncConnection) -> tuple[int, bytes]:
        return 201, msgspec.json.encode(await create(connection))

    result = await idempotency.execute(
        database(request),
        staff.merchant_id,
        None if key is None else f"admin-form:{key}",
        fingerprint,
        operation,
    )
    if result.status_code >= 400:
        raise _stored_refusal(result.status_code, result.body)
    return msgspec.json.decode(result.body, type=kind)


# --- values -----------------------------------------------------------------------------


def text_of(value: object) -> str:
    """A value as a form shows it (None: empty)."""
    if value is None:
        return ""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def reward_type_of(values: Mapping[str, str]) -> str:
    chosen = values.get("reward_type", "")
    return chosen if chosen in TYPE_LABELS else DEFAULT_TYPE


def _fields(values: Mapping[str, str]) -> dict[str, Any]:
    """The request's fields as the API would decode them (None: the field is empty)."""
    chosen = values.get("reward_type", "")
    rule = {}
    for rule_field in RULE_FIELDS.get(chosen, ()):
        value = rule_field.parse(values)
        if value is not None:
            rule[rule_field.name] = value
    return {
        "name": form_text(values, "name"),
        "reward_type": chosen or None,
        "points_cost": form_number(values, "points_cost"),
        "reward_rule": rule,
        "description": form_text(values, "description"),
        "active": values.get("active") == "true",
        "code_validity_days": form_number(values, "code_validity_days"),
        "minimum_order_amount": form_number(values, "minimum_order_amount"),
        "per_customer_limit": form_number(values, "per_customer_limit"),
    }


def create_request(values: Mapping[str, str]) -> CreateReward:
    fields = {name: value for name, value in _fields(values).items() if value is not None}
    return decode_form(fields, CreateReward)


def update_request(values: Mapping[str, str]) -> UpdateReward:
    """Every field of the form: an empty optional field clears it."""
    return decode_form(_fields(values), UpdateReward)


def values_of(reward: Reward) -> dict[str, str]:
    values = {
        "name": reward.name,
        "description": reward.description or "",
        "reward_type": reward.reward_type,
        "points_cost": text_of(reward.points_cost),
        "active": "true" if reward.active else "",
        "code_validity_days": text_of(reward.code_validity_days),
        "minimum_order_amount": text_of(reward.minimum_order_amount),
        "per_customer_limit": text_of(reward.per_customer_limit),
    }
    for name, value in reward.reward_rule.items():
        if name in RULE_NAMES:
            values[name] = text_of(value)
    return values


def rule_summary(reward: Reward, currency: str) -> str:
    """What the reward gives, in a few words."""
    rule = reward.reward_rule
    if reward.reward_type == "fixed_discount":
        return f"{text_of(rule.get('discount_value'))} {currency} off"
    if reward.reward_type == "percentage_discount":
        return f"{text_of(rule.get('discount_percentage'))}% off"
    if reward.reward_type == "free_shipping":
        limit = rule.get("max_shipping_amount")
        return "Free shipping" + ("" if limit is None else f" up to {text_of(limit)} {currency}")
    if reward.reward_type == "store_credit":
        return f"{text_of(rule.get('credit_amount'))} {currency} of store credit"
    parts = [f"product {rule['product_id']}"] if rule.get("product_id") else []
    if rule.get("variant_id"):
        parts.append(f"variant {rule['variant_id']}")
    return "Free " + ", ".join(parts)


def _form_page(
    request: AdminRequest,
    form: Form,
    *,
    reward: Reward | None = None,
    status_code: int = 200,
) -> Response[str]:
    return render(
        request,
        "rewards/form.html",
        status_code=status_code,
        form=with_fresh_key(form),
        reward=reward,
        type_options=TYPE_OPTIONS,
        rule_fields=RULE_FIELDS[reward_type_of(form.values)],
    )


async def _editable(request: AdminRequest, reward_id: uuid.UUID) -> Reward:
    """The merchant's reward, not deleted (else the 404 page)."""
    staff = current_user(request)
    async with database(request).read() as connection:
        reward = await rewards_service.get_reward(connection, staff.merchant_id, str(reward_id))
    if reward.deleted_at is not None:
        raise NotFoundError("No such reward.")
    return reward


def _refused(error: LoyaltyError, values: Mapping[str, str]) -> Form:
    if error.status_code == 404:
        raise error
    form = form_from_error(worded(error), values, fields=FIELDS, aliases=ALIASES)
    if "product_id" in form.errors and "variant_id" in form.errors.get("product_id", ""):
        form.errors["product_id"] = "Give a product id, a variant id or both."
    return form


# --- pages ----------------------------------------------------------------------------


@get("/rewards")
async def rewards_page(
    request: AdminRequest, cursor: FromQuery[str | None] = None
) -> Response[str]:
    staff = current_user(request)
    async with database(request).read() as connection:
        page = await rewards_service.list_rewards(
            connection, staff.merchant_id, limit=PAGE_SIZE, cursor=cursor
        )
        settings = await merchants_service.get_program_settings(connection, staff.merchant_id)
    rows = [
        {
            "reward": reward,
            "type": TYPE_LABELS.get(reward.reward_type, reward.reward_type),
            "summary": rule_summary(reward, settings.currency),
        }
        for reward in page.data
    ]
    return render(
        request,
        "rewards/list.html",
        rows=rows,
        next_cursor=page.next_cursor,
        first_page=cursor is None,
    )


@get("/rewards/new")
async def new_reward_page(
    request: AdminRequest, reward_type: FromQuery[str | None] = None
) -> Response[str]:
    values = {"reward_type": reward_type or DEFAULT_TYPE, "active": "true"}
    return _form_page(request, Form(values=values))


@get("/rewards/rule-fields")
async def rule_fields_fragment(
    request: AdminRequest, reward_type: FromQuery[str | None] = None
) -> Response[str]:
    """The rule's inputs for a type (htmx swaps them in when the type changes)."""
    form = Form(values={"reward_type": reward_type or DEFAULT_TYPE})
    return render(
        request,
        "rewards/_rule_fields.html",
        form=form,
        rule_fields=RULE_FIELDS[reward_type_of(form.values)],
    )


@post("/rewards")
async def add_reward(request: AdminRequest) -> Response[str]:
    staff = current_user(request)
    values = await form_values(request)
    if values.get("intent") == "refresh":  # without JavaScript: the chosen type's fields
        return _form_page(request, Form(values=values))

    try:
        data = create_request(values)

        async def work(connection: AsyncConnection) -> Reward:
            return await rewards_service.create_reward(connection, staff.merchant_id, data)

        reward = await create_once(request, values, Reward, work)
    except LoyaltyError as error:
        return _form_page(request, _refused(error, values), status_code=422)
    return redirect(request, "/admin/rewards", notice=f"Reward “{reward.name}” added.")


@get("/rewards/{reward_id:uuid}")
async def edit_reward_page(request: AdminRequest, reward_id: FromPath[uuid.UUID]) -> Response[str]:
    reward = await _editable(request, reward_id)
    return _form_page(request, Form(values=values_of(reward)), reward=reward)


@post("/rewards/{reward_id:uuid}")
async def update_reward(request: AdminRequest, reward_id: FromPath[uuid.UUID]) -> Response[str]:
    staff = current_user(request)
    reward = await _editable(request, reward_id)
    values = await form_values(request)
    if values.get("intent") == "refresh":
        return _form_page(request, Form(values=values), reward=reward)

    try:
        data = update_request(values)

        async def work(connection: AsyncConnection) -> Reward:
            return await rewards_service.update_reward(
                connection, staff.merchant_id, str(reward_id), data
            )

        updated = await database(request).transaction(work)
    except LoyaltyError as error:
        return _form_page(request, _refused(error, values), reward=reward, status_code=422)
    return redirect(request, "/admin/rewards", notice=f"Reward “{updated.name}” saved.")


@post("/rewards/{reward_id:uuid}/active")
async def set_reward_active(request: AdminRequest, reward_id: FromPath[uuid.UUID]) -> Response[str]:
    """Deactivate (hidden from customers, kept in the catalogue) or reactivate."""
    staff = current_user(request)
    await _editable(request, reward_id)
    active = (await form_values(request)).get("active") == "true"

    async def work(connection: AsyncConnection) -> Reward:
        return await rewards_service.update_reward(
            connection, staff.merchant_id, str(reward_id), UpdateReward(active=active)
        )

    reward = await database(request).transaction(work)
    state = "active again" if active else "deactivated"
    return redirect(request, "/admin/rewards", notice=f"Reward “{reward.name}” is {state}.")


@get("/rewards/{reward_id:uuid}/delete")
async def delete_reward_page(
    request: AdminRequest, reward_id: FromPath[uuid.UUID]
) -> Response[str]:
    reward = await _editable(request, reward_id)
    return render(request, "rewards/delete.html", reward=reward)


@post("/rewards/{reward_id:uuid}/delete")
async def delete_reward(request: AdminRequest, reward_id: FromPath[uuid.UUID]) -> Response[str]:
    staff = current_user(request)
    async with database(request).read() as connection:
        reward = await rewards_service.get_reward(connection, staff.merchant_id, str(reward_id))
    if reward.deleted_at is not None:  # a second click of "Delete"
        return redirect(request, "/admin/rewards", notice=f"Reward “{reward.name}” deleted.")

    async def work(connection: AsyncConnection) -> None:
        await rewards_service.delete_reward(connection, staff.merchant_id, str(reward_id))

    await database(request).transaction(work)
    return redirect(request, "/admin/rewards", notice=f"Reward “{reward.name}” deleted.")


ROUTES = [
    rewards_page,
    new_reward_page,
    rule_fields_fragment,
    add_reward,
    edit_reward_page,
    update_reward,
    set_reward_active,
    delete_reward_page,
    delete_reward,
]
