"""Programme settings (admin only), with the expiry preview before saving.

The form of ``PATCH /api/v1/settings/program`` (only the fields that differ
from the saved ones are sent, as an API client would). Changing the expiry
policy or its days shows what saving it would do, from the service behind
``POST /api/v1/settings/program/preview``: htmx posts the form when the
policy or the days change and swaps in the preview (and the days' error, out
of band: the inputs are never replaced); without JavaScript the "Preview"
button renders the whole page with the preview. Nothing is saved until
"Save settings".
"""

from __future__ import annotations

from collections.abc import Mapping
from decimal import Decimal
from typing import Any

import msgspec
from litestar import Response, get, post
from sqlalchemy.ext.asyncio import AsyncConnection

from loyalty.admin.web import (
    AdminRequest,
    Form,
    current_user,
    database,
    decode_form,
    form_from_error,
    form_number,
    form_values,
    is_htmx,
    redirect,
    render,
    worded,
)
from loyalty.errors import LoyaltyError
from loyalty.merchants import service as merchants_service
from loyalty.merchants.schemas import (
    ExpiryPreview,
    PreviewExpiry,
    ProgramSettingsView,
    UpdateProgramSettings,
)

FIELDS = (
    "points_decimals",
    "default_description",
    "discount_code_prefix",
    "currency",
    "point_value",
    "expiry_policy",
    "expiry_days",
)
EXPIRY_FIELDS = ("expiry_policy", "expiry_days")
DECIMALS_OPTIONS = [
    ("0", "0: whole points"),
    ("1", "1 decimal (12.5 points)"),
    ("2", "2 decimals (12.55 points)"),
]
POLICY_OPTIONS = [
    ("none", "Points never expire"),
    ("fixed", "Each credit expires a number of days after it is earned"),
    ("inactivity", "The whole balance expires after days without activity"),
]


def decimal_text(value: float | int | None) -> str:
    """``0.01`` → ``0.01``, ``1e-06`` → ``0.000001``, ``2.0`` → ``2``."""
    if value is None:
        return ""
    exact = Decimal(repr(value)) if isinstance(value, float) else Decimal(value)
    text = format(exact, "f")
    return text.rstrip("0").rstrip(".") if "." in text else text


def values_of(settings: ProgramSettingsView) -> dict[str, str]:
    return {
        "points_decimals": str(settings.points_decimals),
        "default_description": settings.default_description,
        "discount_code_prefix": settings.discount_code_prefix,
        "currency": settings.currency,
        "point_value": decimal_text(settings.point_value),
        "expiry_policy": settings.expiry_policy,
        "expiry_days": decimal_text(settings.expiry_days),
    }


def _expiry(values: Mapping[str, str]) -> dict[str, Any]:
    policy = values.get("expiry_policy") or None
    # "Never" has no days: what is left in the days input does not count.
    days = None if policy == "none" else form_number(values, "expiry_days")
    return {"expiry_policy": policy, "expiry_days": days}


def preview_request(values: Mapping[str, str]) -> PreviewExpiry:
    return decode_form(_expiry(values), PreviewExpiry)


def update_request(
    values: Mapping[str, str], current: ProgramSettingsView
) -> UpdateProgramSettings | None:
    """The fields that differ from the saved settings (None: nothing to save)."""
    typed = decode_form(
        {
            "points_decimals": form_number(values, "points_decimals"),
            "default_description": values.get("default_description", "").strip(),
            "discount_code_prefix": values.get("discount_code_prefix", "").strip(),
            "currency": values.get("currency", "").strip().upper(),
            "point_value": form_number(values, "point_value"),
            **_expiry(values),
        },
        UpdateProgramSettings,
    )
    changed: dict[str, Any] = {
        name: getattr(typed, name)
        for name in FIELDS
        if name not in EXPIRY_FIELDS and getattr(typed, name) != getattr(current, name)
    }
    expiry = (typed.expiry_policy, typed.expiry_days)
    if expiry != (current.expiry_policy, current.expiry_days):
        changed.update(expiry_policy=typed.expiry_policy, expiry_days=typed.expiry_days)
    return UpdateProgramSettings(**changed) if changed else None


def _refused(error: LoyaltyError, values: Mapping[str, str]) -> Form:
    form = form_from_error(worded(error), values, fields=FIELDS)
    for name, message in form.errors.items():  # the service names the field; say it
        form.errors[name] = message.replace("expiry_policy", "the expiry policy")
    return form


async def _current(request: AdminRequest) -> ProgramSettingsView:
    staff = current_user(request)
    async with database(request).read() as connection:
        return await merchants_service.get_program_settings(connection, staff.merchant_id)


def _page(
    request: AdminRequest,
    form: Form,
    current: ProgramSettingsView,
    *,
    preview: ExpiryPreview | None = None,
    status_code: int = 200,
) -> Response[str]:
    template = "settings/_preview_response.html" if is_htmx(request) else "settings/page.html"
    return render(
        request,
        template,
        status_code=status_code,
        form=form,
        current=current,
        preview=preview,
        decimals_options=DECIMALS_OPTIONS,
        policy_options=POLICY_OPTIONS,
    )


# --- pages ----------------------------------------------------------------------------


@get("/settings")
async def settings_page(request: AdminRequest) -> Response[str]:
    current = await _current(request)
    return _page(request, Form(values=values_of(current)), current)


@post("/settings/preview")
async def preview_expiry(request: AdminRequest) -> Response[str]:
    """What saving the typed expiry policy would do; nothing is saved. htmx: the
    preview alone; otherwise the whole page, the form as typed."""
    staff = current_user(request)
    values = await form_values(request)
    current = await _current(request)
    try:
        data = preview_request(values)
        async with database(request).read() as connection:
            preview = await merchants_service.preview_expiry(connection, staff.merchant_id, data)
    except LoyaltyError as error:
        return _page(request, _refused(error, values), current, status_code=422)
    return _page(request, Form(values=values), current, preview=preview)


@post("/settings")
async def save_settings(request: AdminRequest) -> Response[str]:
    staff = current_user(request)
    values = await form_values(request)
    current = await _current(request)
    try:
        data = update_request(values, current)
        if data is None:
            return redirect(request, "/admin/settings", notice="Nothing to save: no change.")
        changes = data

        async def work(connection: AsyncConnection) -> ProgramSettingsView:
            return await merchants_service.update_program_settings(
                connection, staff.merchant_id, changes
            )

        await database(request).transaction(work)
    except LoyaltyError as error:
        return _page(request, _refused(error, values), current, status_code=422)
    names = ", ".join(
        name.replace("_", " ")
        for name in msgspec.structs.asdict(data)
        if not isinstance(getattr(data, name), msgspec.UnsetType)
    )
    return redirect(request, "/admin/settings", notice=f"Settings saved ({names}).")


ROUTES = [settings_page, preview_expiry, save_settings]
