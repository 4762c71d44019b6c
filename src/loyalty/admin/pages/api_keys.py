"""API keys (admin only): create one (its token shown once), list them by
prefix, revoke one (after a confirmation page).

The same service as ``loyalty keys create|list|revoke``. The token is in the
response to the create form only: never in a redirect, a URL, a log or the
audit trail (which knows the key by its prefix).
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping

from litestar import Response, get, post
from litestar.params import FromPath
from sqlalchemy.ext.asyncio import AsyncConnection

from loyalty.admin.web import (
    AdminRequest,
    Form,
    current_user,
    database,
    form_from_error,
    form_text,
    form_values,
    redirect,
    render,
    worded,
)
from loyalty.auth import service as auth_service
from loyalty.auth.schemas import ApiKey, CreatedApiKey
from loyalty.auth.scopes import ALL_SCOPES
from loyalty.errors import LoyaltyError, NotFoundError

FIELDS = ("name", "scopes", "rate_limit")
SCOPE_HINTS = {
    "customers:read": "Look customers up, their balances and tiers",
    "customers:write": "Enrol and change customers",
    "transactions:read": "Read the points activity",
    "transactions:write": "Add and remove points",
    "rewards:read": "Read the catalogue and customers' rewards",
    "rewards:write": "Change the catalogue; redeem, use and revert rewards",
    "orders:write": "Send orders (points for purchases)",
    "settings:read": "Read the programme's settings, earn rules and tiers",
    "settings:write": "Change the programme's settings, earn rules and tiers",
    "webhooks:read": "Read webhook endpoints and deliveries",
    "webhooks:write": "Change webhook endpoints",
}


def _list_page(
    request: AdminRequest,
    keys: list[ApiKey],
    form: Form,
    chosen: list[str],
    status_code: int = 200,
) -> Response[str]:
    return render(
        request,
        "api_keys/list.html",
        status_code=status_code,
        keys=sorted(keys, key=lambda key: (key.revoked_at is not None, key.created_at)),
        form=form,
        scopes=[(scope, SCOPE_HINTS.get(scope, "")) for scope in ALL_SCOPES],
        chosen=set(chosen),
    )


async def _keys(request: AdminRequest) -> list[ApiKey]:
    staff = current_user(request)
    async with database(request).read() as connection:
        return await auth_service.list_keys(connection, staff.merchant_id)


async def _key(request: AdminRequest, key_id: uuid.UUID) -> ApiKey:
    """The merchant's key (another merchant's: the 404 page)."""
    for key in await _keys(request):
        if key.id == key_id:
            return key
    raise NotFoundError("No such API key.")


def _missing_name(values: Mapping[str, str]) -> Form | None:
    if form_text(values, "name") is None:
        return Form(values=values, errors={"name": "Give the key a name to recognise it by."})
    return None


# --- pages ----------------------------------------------------------------------------


@get("/api-keys")
async def api_keys_page(request: AdminRequest) -> Response[str]:
    return _list_page(request, await _keys(request), Form(), [])


@post("/api-keys")
async def create_api_key(request: AdminRequest) -> Response[str]:
    """The new key's token, on this response only (never redirected to)."""
    staff = current_user(request)
    values = await form_values(request)
    submitted = (await request.form()).multi_items()
    chosen = [value for name, value in submitted if name == "scopes" and isinstance(value, str)]
    missing = _missing_name(values)
    if missing is not None:
        return _list_page(request, await _keys(request), missing, chosen, 422)

    async def work(connection: AsyncConnection) -> CreatedApiKey:
        return await auth_service.create_key(
            connection,
            merchant_id=staff.merchant_id,
            scopes=",".join(chosen),
            name=form_text(values, "name"),
            rate_limit=form_text(values, "rate_limit"),
        )

    try:
        created = await database(request).transaction(work)
    except LoyaltyError as error:
        form = form_from_error(worded(error), values, fields=FIELDS)
        return _list_page(request, await _keys(request), form, chosen, 422)
    return render(request, "api_keys/created.html", key=created)


@get("/api-keys/{key_id:uuid}/revoke")
async def revoke_page(request: AdminRequest, key_id: FromPath[uuid.UUID]) -> Response[str]:
    key = await _key(request, key_id)
    if key.revoked_at is not None:
        return redirect(request, "/admin/api-keys", notice=f"Key {key.prefix} is already revoked.")
    return render(request, "api_keys/revoke.html", key=key)


@post("/api-keys/{key_id:uuid}/revoke")
async def revoke_api_key(request: AdminRequest, key_id: FromPath[uuid.UUID]) -> Response[str]:
    key = await _key(request, key_id)

    async def work(connection: AsyncConnection) -> ApiKey:
        return await auth_service.revoke_key(connection, str(key.id))

    await database(request).transaction(work)
    return redirect(request, "/admin/api-keys", notice=f"Key {key.prefix} ({key.name}) is revoked.")


ROUTES = [api_keys_page, create_api_key, revoke_page, revoke_api_key]
