"""Earn rules (admin only): how the programme grants points.

One rule per type: purchases (points per unit of money spent) and customer
actions (an account, a newsletter, a follow, a birthday, a referral). List,
add, edit, deactivate / reactivate, through the API's earning service and
request structs (the API has no delete: a rule is deactivated). The inputs
depend on the type: htmx swaps them when the type changes; without
JavaScript a "Show the fields" button re-renders the form.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Annotated, Any

from litestar import Response, get, post
from litestar.params import FromPath, QueryParameter
from sqlalchemy.ext.asyncio import AsyncConnection

from loyalty.admin.pages.rewards import create_once, text_of, with_fresh_key
from loyalty.admin.web import (
    AdminRequest,
    Form,
    current_user,
    database,
    decode_form,
    form_from_error,
    form_number,
    form_values,
    redirect,
    render,
    worded,
)
from loyalty.earning import service as earning_service
from loyalty.earning.schemas import CreateEarnRule, EarnRule, UpdateEarnRule
from loyalty.errors import LoyaltyError
from loyalty.merchants import service as merchants_service

TYPE_LABELS = {
    "purchase": "Purchase",
    "create_account": "Creating an account",
    "newsletter": "Newsletter sign-up",
    "sms": "SMS sign-up",
    "follow_facebook": "Following on Facebook",
    "follow_instagram": "Following on Instagram",
    "follow_tiktok": "Following on TikTok",
    "follow_twitter": "Following on X (Twitter)",
    "follow_pinterest": "Following on Pinterest",
    "follow_youtube": "Subscribing on YouTube",
    "share_facebook": "Sharing on Facebook",
    "share_twitter": "Sharing on X (Twitter)",
    "birthday": "Birthday",
    "referral": "Referral",
}
ROUNDING_OPTIONS = [
    ("down", "Down (12.7 → 12)"),
    ("nearest", "To the nearest (12.5 → 13)"),
    ("up", "Up (12.1 → 13)"),
]


@dataclass(frozen=True, slots=True)
class RuleInput:
    """One input of a rule's form."""

    name: str
    label: str
    hint: str | None = None
    required: bool = False
    whole: bool = False  # a whole number (days, counts)

    @property
    def is_select(self) -> bool:
        return self.name == "rounding"


RATE = RuleInput(
    "points_per_currency_unit",
    "Points per unit spent",
    "Points for each unit of the shop's currency an order totals, e.g. 1 or 0.5.",
    required=True,
)
ROUNDING = RuleInput("rounding", "Rounding", "How an order's points are rounded to the decimals.")
BONUS = RuleInput("points", "Bonus points per order", "Added to every order's points; 0: none.")
MINIMUM = RuleInput(
    "min_order_total", "Minimum order total", "Optional: orders below it earn nothing."
)
PENDING = RuleInput(
    "pending_days",
    "Days held as pending",
    "Optional: points wait this many days (e.g. the return window) before they count. "
    "0 or empty: at once.",
    whole=True,
)
POINTS = RuleInput("points", "Points", "Points each time the customer does it.", required=True)
TIMES = RuleInput(
    "max_per_customer",
    "Times per customer",
    "How many times one customer can earn it (1 unless set).",
    whole=True,
)
PERIOD = RuleInput(
    "period_days",
    "Per period of (days)",
    "Optional: the times above count again every this many days. Empty: ever.",
    whole=True,
)
BIRTHDAY_POINTS = RuleInput(
    "points", "Points", "Given once a year, on the birthday.", required=True
)
REFERRER = RuleInput("points", "Points for the referrer", required=True)
REFEREE = RuleInput("referee_points", "Points for the new customer", "0 or empty: none.")

INPUTS: dict[str, tuple[RuleInput, ...]] = {
    "purchase": (RATE, ROUNDING, BONUS, MINIMUM, PENDING),
    "birthday": (BIRTHDAY_POINTS,),
    "referral": (REFERRER, REFEREE, TIMES, PERIOD),
    "action": (POINTS, TIMES, PERIOD),
}
# ``?type=``: the form's type input.
TypeQuery = Annotated[str | None, QueryParameter(name="type", required=False)]
FIELDS = ("type", "active", *dict.fromkeys(i.name for inputs in INPUTS.values() for i in inputs))


def inputs_for(rule_type: str) -> tuple[RuleInput, ...]:
    return INPUTS.get(rule_type, INPUTS["action"])


def _fields(rule_type: str, values: Mapping[str, str]) -> dict[str, Any]:
    """The type's fields as the API would decode them (None: the field is empty)."""
    fields: dict[str, Any] = {}
    for one in inputs_for(rule_type):
        if one.is_select:
            fields[one.name] = values.get(one.name) or None
        else:
            fields[one.name] = form_number(values, one.name)
    fields["active"] = values.get("active") == "true"
    return fields


def create_request(values: Mapping[str, str]) -> CreateEarnRule:
    rule_type = values.get("type", "")
    fields = {"type": rule_type or None, **_fields(rule_type, values)}
    return decode_form({k: v for k, v in fields.items() if v is not None}, CreateEarnRule)


def update_request(rule: EarnRule, values: Mapping[str, str]) -> UpdateEarnRule:
    """Every input of the rule's type: an empty optional one clears it."""
    fields = _fields(rule.type, values)
    if rule.type == "referral" and fields.get("referee_points") is None:
        fields["referee_points"] = 0
    return decode_form(fields, UpdateEarnRule)


def values_of(rule: EarnRule) -> dict[str, str]:
    values = {"type": rule.type, "active": "true" if rule.active else ""}
    for one in inputs_for(rule.type):
        values[one.name] = text_of(getattr(rule, one.name))
    return values


def describe(rule: EarnRule, currency: str) -> str:
    """What the rule gives, in a few words."""
    points = text_of(rule.points)
    if rule.type == "purchase":
        text = f"{text_of(rule.points_per_currency_unit)} points per {currency} spent"
        if rule.points:
            text += f", plus {points} per order"
        if rule.min_order_total:
            text += f"; orders from {text_of(rule.min_order_total)} {currency}"
        if rule.pending_days:
            text += f"; held {rule.pending_days} days"
        return text
    if rule.type == "birthday":
        return f"{points} points each birthday"
    text = f"{points} points"
    if rule.type == "referral":
        text += f" to the referrer, {text_of(rule.referee_points or 0)} to the new customer"
    if rule.max_per_customer is not None:
        times = "once" if rule.max_per_customer == 1 else f"{rule.max_per_customer} times"
        period = f" every {rule.period_days} days" if rule.period_days else ""
        text += f"; {times}{period} per customer"
    return text


def _form_page(
    request: AdminRequest,
    form: Form,
    *,
    rule: EarnRule | None = None,
    type_options: list[tuple[str, str]] | None = None,
    status_code: int = 200,
) -> Response[str]:
    rule_type = rule.type if rule is not None else form.value("type")
    return render(
        request,
        "earn_rules/form.html",
        status_code=status_code,
        form=with_fresh_key(form),
        rule=rule,
        type_label=TYPE_LABELS.get(rule_type, rule_type),
        type_options=type_options or [],
        inputs=inputs_for(rule_type),
        rounding_options=ROUNDING_OPTIONS,
    )


async def _free_types(request: AdminRequest) -> list[tuple[str, str]]:
    """The types the programme has no rule for yet (one rule per type)."""
    staff = current_user(request)
    async with database(request).read() as connection:
        page = await earning_service.list_rules(connection, staff.merchant_id)
    taken = {rule.type for rule in page.data}
    return [(key, label) for key, label in TYPE_LABELS.items() if key not in taken]


async def _rule(request: AdminRequest, rule_id: uuid.UUID) -> EarnRule:
    """The merchant's rule (another merchant's: the 404 page)."""
    staff = current_user(request)
    async with database(request).read() as connection:
        return await earning_service.get_rule(connection, staff.merchant_id, str(rule_id))


def _refused(error: LoyaltyError, values: Mapping[str, str]) -> Form:
    if error.status_code == 404:
        raise error
    return form_from_error(worded(error), values, fields=FIELDS, codes={"earn_rule_exists": "type"})


# --- pages ----------------------------------------------------------------------------


@get("/earn-rules")
async def earn_rules_page(request: AdminRequest) -> Response[str]:
    staff = current_user(request)
    async with database(request).read() as connection:
        page = await earning_service.list_rules(connection, staff.merchant_id)
        settings = await merchants_service.get_program_settings(connection, staff.merchant_id)
    rows = [
        {
            "rule": rule,
            "type": TYPE_LABELS.get(rule.type, rule.type),
            "summary": describe(rule, settings.currency),
        }
        for rule in page.data
    ]
    free = len(TYPE_LABELS) - len({rule.type for rule in page.data})
    return render(request, "earn_rules/list.html", rows=rows, can_add=free > 0)


@get("/earn-rules/new")
async def new_rule_page(request: AdminRequest, rule_type: TypeQuery = None) -> Response[str]:
    options = await _free_types(request)
    chosen = rule_type if rule_type in dict(options) else (options[0][0] if options else "purchase")
    values = {"type": chosen, "active": "true", "rounding": "down", "points": ""}
    if chosen == "purchase":
        values["points"] = "0"
    return _form_page(request, Form(values=values), type_options=options)


@get("/earn-rules/fields")
async def rule_fields_fragment(request: AdminRequest, rule_type: TypeQuery = None) -> Response[str]:
    """The inputs of a type (htmx swaps them in when the type changes)."""
    chosen = rule_type or "purchase"
    values = {"type": chosen, "rounding": "down", "points": "0" if chosen == "purchase" else ""}
    return render(
        request,
        "earn_rules/_fields.html",
        form=Form(values=values),
        inputs=inputs_for(chosen),
        rounding_options=ROUNDING_OPTIONS,
    )


@post("/earn-rules")
async def add_rule(request: AdminRequest) -> Response[str]:
    staff = current_user(request)
    values = await form_values(request)
    if values.get("intent") == "refresh":  # without JavaScript: the chosen type's inputs
        return _form_page(request, Form(values=values), type_options=await _free_types(request))
    try:
        data = create_request(values)

        async def work(connection: AsyncConnection) -> EarnRule:
            return await earning_service.create_rule(connection, staff.merchant_id, data)

        rule = await create_once(request, values, EarnRule, work)
    except LoyaltyError as error:
        form = _refused(error, values)
        options = await _free_types(request)
        return _form_page(request, form, type_options=options, status_code=422)
    label = TYPE_LABELS.get(rule.type, rule.type)
    return redirect(request, "/admin/earn-rules", notice=f"Earn rule “{label}” added.")


@get("/earn-rules/{rule_id:uuid}")
async def edit_rule_page(request: AdminRequest, rule_id: FromPath[uuid.UUID]) -> Response[str]:
    rule = await _rule(request, rule_id)
    return _form_page(request, Form(values=values_of(rule)), rule=rule)


@post("/earn-rules/{rule_id:uuid}")
async def update_rule(request: AdminRequest, rule_id: FromPath[uuid.UUID]) -> Response[str]:
    staff = current_user(request)
    rule = await _rule(request, rule_id)
    values = await form_values(request)
    try:
        data = update_request(rule, values)

        async def work(connection: AsyncConnection) -> EarnRule:
            return await earning_service.update_rule(
                connection, staff.merchant_id, str(rule_id), data
            )

        await database(request).transaction(work)
    except LoyaltyError as error:
        form = _refused(error, {**values, "type": rule.type})
        return _form_page(request, form, rule=rule, status_code=422)
    label = TYPE_LABELS.get(rule.type, rule.type)
    return redirect(request, "/admin/earn-rules", notice=f"Earn rule “{label}” saved.")


@post("/earn-rules/{rule_id:uuid}/active")
async def set_rule_active(request: AdminRequest, rule_id: FromPath[uuid.UUID]) -> Response[str]:
    """Deactivate (it grants nothing until reactivated) or reactivate."""
    staff = current_user(request)
    rule = await _rule(request, rule_id)
    active = (await form_values(request)).get("active") == "true"

    async def work(connection: AsyncConnection) -> EarnRule:
        return await earning_service.update_rule(
            connection, staff.merchant_id, str(rule_id), UpdateEarnRule(active=active)
        )

    await database(request).transaction(work)
    label = TYPE_LABELS.get(rule.type, rule.type)
    state = "active again" if active else "deactivated"
    return redirect(request, "/admin/earn-rules", notice=f"Earn rule “{label}” is {state}.")


ROUTES = [
    earn_rules_page,
    new_rule_page,
    rule_fields_fragment,
    add_rule,
    edit_rule_page,
    update_rule,
    set_rule_active,
]
