"""Tiers (admin only): the programme's VIP ladder.

The tiers, lowest threshold first; add one, edit one, through the API's tiers
service and request structs (the API deletes no tier). The basis (lifetime
points or amount spent) and its window belong to the programme, shared by
every tier: the API sets them through a tier, and so does this page (the
first tier's form sets them; afterwards the "Tier basis" form does).
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from typing import Any

from litestar import Response, get, post
from litestar.params import FromPath
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
    form_text,
    form_values,
    redirect,
    render,
    sentence,
    worded,
)
from loyalty.errors import LoyaltyError
from loyalty.merchants import service as merchants_service
from loyalty.tiers import service as tiers_service
from loyalty.tiers.schemas import CreateTier, Tier, UpdateTier

BASIS_OPTIONS = [
    ("lifetime_points", "Lifetime points earned"),
    ("amount_spent", "Amount spent"),
]
BASIS_LABELS = dict(BASIS_OPTIONS)
DEFAULT_BASIS = "lifetime_points"
TIER_FIELDS = ("name", "threshold", "multiplier", "retention_days")
BASIS_FIELDS = ("basis", "window_days")


def _tier_fields(values: Mapping[str, str]) -> dict[str, Any]:
    return {
        "name": form_text(values, "name"),
        "threshold": form_number(values, "threshold"),
        "multiplier": form_number(values, "multiplier"),
        "retention_days": form_number(values, "retention_days"),
    }


def _basis_fields(values: Mapping[str, str]) -> dict[str, Any]:
    return {
        "basis": values.get("basis") or None,
        "window_days": form_number(values, "window_days"),
    }


def create_request(values: Mapping[str, str], *, with_basis: bool) -> CreateTier:
    fields = _tier_fields(values)
    data = {name: value for name, value in fields.items() if value is not None}
    if with_basis:
        basis = _basis_fields(values)
        data["window_days"] = basis["window_days"]  # empty: all time
        if basis["basis"] is not None:
            data["basis"] = basis["basis"]
    return decode_form(data, CreateTier)


def update_request(values: Mapping[str, str]) -> UpdateTier:
    """Every field of the form: an empty retention clears it."""
    return decode_form(_tier_fields(values), UpdateTier)


def basis_request(values: Mapping[str, str]) -> UpdateTier:
    return decode_form(_basis_fields(values), UpdateTier)


def values_of(tier: Tier) -> dict[str, str]:
    return {
        "name": tier.name,
        "threshold": text_of(tier.threshold),
        "multiplier": text_of(tier.multiplier),
        "retention_days": text_of(tier.retention_days),
    }


def _refused(error: LoyaltyError, values: Mapping[str, str], fields: tuple[str, ...]) -> Form:
    if error.status_code == 404:
        raise error
    details = error.details
    if error.code == "tier_conflict" and isinstance(details, dict) and details.get("field"):
        return Form(values=values, errors={str(details["field"]): sentence(error.message)})
    return form_from_error(worded(error), values, fields=fields)


async def _tiers_page(
    request: AdminRequest,
    *,
    form: Form | None = None,
    basis_form: Form | None = None,
    status_code: int = 200,
) -> Response[str]:
    staff = current_user(request)
    async with database(request).read() as connection:
        page = await tiers_service.list_tiers(connection, staff.merchant_id)
        settings = await merchants_service.get_program_settings(connection, staff.merchant_id)
    tiers = page.data
    basis = tiers[0].basis if tiers else DEFAULT_BASIS
    window_days = tiers[0].window_days if tiers else None
    if form is None:
        form = Form(values={"multiplier": "1", "basis": basis, "window_days": ""})
    if basis_form is None:
        basis_form = Form(values={"basis": basis, "window_days": text_of(window_days)})
    return render(
        request,
        "tiers/list.html",
        status_code=status_code,
        tiers=tiers,
        form=with_fresh_key(form),
        basis_form=basis_form,
        basis_label=BASIS_LABELS.get(basis, basis),
        basis=basis,
        window_days=window_days,
        currency=settings.currency,
        basis_options=BASIS_OPTIONS,
    )


async def _tier(request: AdminRequest, tier_id: uuid.UUID) -> Tier:
    """The merchant's tier (another merchant's: the 404 page)."""
    staff = current_user(request)
    async with database(request).read() as connection:
        return await tiers_service.get_tier(connection, staff.merchant_id, str(tier_id))


def _edit_page(
    request: AdminRequest, tier: Tier, form: Form, status_code: int = 200
) -> Response[str]:
    return render(
        request,
        "tiers/form.html",
        status_code=status_code,
        tier=tier,
        form=form,
        basis_label=BASIS_LABELS.get(tier.basis, tier.basis),
    )


# --- pages ----------------------------------------------------------------------------


@get("/tiers")
async def tiers_page(request: AdminRequest) -> Response[str]:
    return await _tiers_page(request)


@post("/tiers")
async def add_tier(request: AdminRequest) -> Response[str]:
    staff = current_user(request)
    values = await form_values(request)
    async with database(request).read() as connection:
        first = not (await tiers_service.list_tiers(connection, staff.merchant_id)).data
    try:
        data = create_request(values, with_basis=first)

        async def work(connection: AsyncConnection) -> Tier:
            return await tiers_service.create_tier(connection, staff.merchant_id, data)

        tier = await create_once(request, values, Tier, work)
    except LoyaltyError as error:
        form = _refused(error, values, TIER_FIELDS + BASIS_FIELDS)
        return await _tiers_page(request, form=form, status_code=422)
    return redirect(request, "/admin/tiers", notice=f"Tier “{tier.name}” added.")


@post("/tiers/basis")
async def set_basis(request: AdminRequest) -> Response[str]:
    """The programme's basis and window, through a tier (as the API sets them)."""
    staff = current_user(request)
    values = await form_values(request)
    async with database(request).read() as connection:
        tiers = (await tiers_service.list_tiers(connection, staff.merchant_id)).data
    if not tiers:
        form = Form(values=values, message="Add a first tier: its form sets the basis.")
        return await _tiers_page(request, basis_form=form, status_code=422)
    try:
        data = basis_request(values)

        async def work(connection: AsyncConnection) -> Tier:
            return await tiers_service.update_tier(
                connection, staff.merchant_id, str(tiers[0].id), data
            )

        await database(request).transaction(work)
    except LoyaltyError as error:
        form = _refused(error, values, BASIS_FIELDS)
        return await _tiers_page(request, basis_form=form, status_code=422)
    return redirect(
        request, "/admin/tiers", notice="Tier basis saved: every customer's tier is rechecked."
    )


@get("/tiers/{tier_id:uuid}")
async def edit_tier_page(request: AdminRequest, tier_id: FromPath[uuid.UUID]) -> Response[str]:
    tier = await _tier(request, tier_id)
    return _edit_page(request, tier, Form(values=values_of(tier)))


@post("/tiers/{tier_id:uuid}")
async def update_tier(request: AdminRequest, tier_id: FromPath[uuid.UUID]) -> Response[str]:
    staff = current_user(request)
    tier = await _tier(request, tier_id)
    values = await form_values(request)
    try:
        data = update_request(values)

        async def work(connection: AsyncConnection) -> Tier:
            return await tiers_service.update_tier(
                connection, staff.merchant_id, str(tier_id), data
            )

        updated = await database(request).transaction(work)
    except LoyaltyError as error:
        return _edit_page(request, tier, _refused(error, values, TIER_FIELDS), 422)
    return redirect(request, "/admin/tiers", notice=f"Tier “{updated.name}” saved.")


ROUTES = [tiers_page, add_tier, set_basis, edit_tier_page, update_tier]
