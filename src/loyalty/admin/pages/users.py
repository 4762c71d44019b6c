"""Users (admin only): the merchant's staff accounts; add one, disable one."""

from __future__ import annotations

import uuid

from litestar import Response, get, post
from litestar.params import FromPath
from sqlalchemy.ext.asyncio import AsyncConnection

from loyalty.admin.web import (
    AdminRequest,
    Form,
    admin_only,
    current_user,
    database,
    form_from_error,
    form_values,
    redirect,
    render,
)
from loyalty.errors import LoyaltyError, NotFoundError
from loyalty.users import service as users_service
from loyalty.users.schemas import User

FIELDS = ("email", "role", "password", "password_confirm")
ROLE_OPTIONS = [("support", "Support"), ("admin", "Admin")]


async def _users_page(
    request: AdminRequest, form: Form, status_code: int = 200, alert: str | None = None
) -> Response[str]:
    staff = current_user(request)
    async with database(request).read() as connection:
        users = await users_service.list_users(connection, staff.merchant_id)
    return render(
        request,
        "users/list.html",
        status_code=status_code,
        users=users,
        form=form,
        role_options=ROLE_OPTIONS,
        alert=alert,
    )


@get("/users", guards=[admin_only])
async def users_page(request: AdminRequest) -> Response[str]:
    return await _users_page(request, Form(values={"role": "support"}))


@post("/users", guards=[admin_only])
async def add_user(request: AdminRequest) -> Response[str]:
    staff = current_user(request)
    values = await form_values(request)
    if values.get("password", "") != values.get("password_confirm", ""):
        form = Form(values=values, errors={"password_confirm": "The two passwords differ."})
        return await _users_page(request, form, 422)

    async def work(connection: AsyncConnection) -> User:
        return await users_service.create_user(
            connection,
            merchant_id=staff.merchant_id,
            email=values.get("email", ""),
            role=values.get("role", ""),
            password=values.get("password", ""),
        )

    try:
        user = await database(request).transaction(work)
    except LoyaltyError as error:
        form = form_from_error(error, values, fields=FIELDS, codes={"user_email_taken": "email"})
        return await _users_page(request, form, 422)
    return redirect(request, "/admin/users", notice=f"{user.email} can now sign in.")


@post("/users/{user_id:uuid}/disable", guards=[admin_only])
async def disable_user(request: AdminRequest, user_id: FromPath[uuid.UUID]) -> Response[str]:
    staff = current_user(request)
    if user_id == staff.user_id:
        alert = "You cannot disable yourself: ask another admin."
        return await _users_page(request, Form(values={"role": "support"}), 422, alert)
    async with database(request).read() as connection:
        users = await users_service.list_users(connection, staff.merchant_id)
    target = next((user for user in users if user.id == user_id), None)
    if target is None:  # another merchant's user, or none at all
        raise NotFoundError("No such user.")

    async def work(connection: AsyncConnection) -> User:
        return await users_service.disable_user(connection, staff.merchant_id, target.email)

    await database(request).transaction(work)
    return redirect(request, "/admin/users", notice=f"{target.email} is disabled.")


ROUTES = [users_page, add_user, disable_user]
