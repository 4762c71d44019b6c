"""The audit log (admin only): every change of the programme's configuration,
newest first, a page at a time: when, who (``user:<email>``,
``api_key:<prefix>``, ``system``), what, and the new values. Linked from the
Settings page."""

from __future__ import annotations

from typing import Annotated

from litestar import Response, get
from litestar.params import FromQuery, QueryParameter

from loyalty.admin.web import AdminRequest, current_user, database, render
from loyalty.audit import service as audit_service

PAGE_SIZE = 50
SUBJECTS = {
    "program_settings": "Programme settings",
    "reward": "Reward",
    "earn_rule": "Earn rule",
    "tier": "Tier",
    "api_key": "API key",
    "webhook_endpoint": "Webhook endpoint",
    "user": "User",
}
SubjectQuery = Annotated[str | None, QueryParameter(name="subject", required=False)]


@get("/audit")
async def audit_page(
    request: AdminRequest,
    cursor: FromQuery[str | None] = None,
    subject: SubjectQuery = None,
) -> Response[str]:
    staff = current_user(request)
    subject_type = subject if subject in SUBJECTS else None
    async with database(request).read() as connection:
        page = await audit_service.list_changes(
            connection,
            staff.merchant_id,
            limit=PAGE_SIZE,
            cursor=cursor or None,
            subject_type=subject_type,
        )
    return render(
        request,
        "audit/list.html",
        changes=page.data,
        next_cursor=page.next_cursor,
        first_page=not cursor,
        subject=subject_type or "",
        subjects=SUBJECTS,
    )


ROUTES = [audit_page]
