"""The admin's Webhooks pages (ADMIN.md, "Webhooks"): endpoints added, edited, disabled
and enabled, their secret rotated and a test event sent, each endpoint's delivery
log with resend and recover, through the same services as the API (checked back
through ``/api/v1/webhooks``), with a real receiver on 127.0.0.1."""

from __future__ import annotations

import html
import re
import uuid
from datetime import UTC, timedelta
from typing import Any

import httpx
import pytest

from loyalty.db.engine import Database
from loyalty.db.types import utc_now
from loyalty.settings import Settings
from loyalty.webhooks.delivery import Deliverer
from tests.support.browser import AdminClient, ClientFactory, Shop
from tests.support.receiver import Answer, Received, running_receiver
from tests.support.tenant import Tenant, create_key

WEBHOOKS = "/admin/webhooks"
# Nothing listens there (inside 127.0.0.0/8, which the tests allow).
NOWHERE = "http://127.0.0.1:9/hook"
SECRET = re.compile(r"whsec_[A-Za-z0-9+/=]+")


@pytest.fixture
async def api(shop: Shop, client: httpx.AsyncClient) -> Tenant:
    """The shop's API, to check what the pages did."""
    token = await create_key(shop.database, shop.merchant_id)
    return Tenant(shop.merchant_id, token, client, shop.database)


async def add_endpoint(
    admin: AdminClient,
    url: str = NOWHERE,
    *,
    event_types: list[str] | None = None,
    description: str = "",
    csrf: str | None = None,
) -> httpx.Response:
    data: dict[str, Any] = {
        "_csrf": csrf or await admin.csrf(WEBHOOKS),
        "url": url,
        "description": description,
        "events": "all" if event_types is None else "some",
        "event_types": event_types or [],
    }
    return await admin.client.post(WEBHOOKS, data=data)


async def endpoints(api: Tenant) -> list[dict[str, Any]]:
    response = await api.get("/api/v1/webhooks", params={"limit": 100})
    assert response.status_code == 200, response.text
    data: list[dict[str, Any]] = response.json()["data"]
    return data


async def the_endpoint(api: Tenant) -> dict[str, Any]:
    [endpoint] = await endpoints(api)
    return endpoint


async def attempts(api: Tenant, endpoint_id: str, **params: str) -> list[dict[str, Any]]:
    response = await api.get(
        f"/api/v1/webhooks/{endpoint_id}/deliveries", params={"limit": 100, **params}
    )
    assert response.status_code == 200, response.text
    data: list[dict[str, Any]] = response.json()["data"]
    return data


async def deliver(database: Database, settings: Settings) -> None:
    """Send everything due now, as ``loyalty worker --once`` does."""
    deliverer = Deliverer(database, settings)
    try:
        await deliverer.run_once()
    finally:
        await deliverer.stop()


async def post(admin: AdminClient, path: str, **fields: str) -> httpx.Response:
    return await admin.post(path, {"_csrf": await admin.csrf(WEBHOOKS), **fields})


def field_error(page: str, name: str) -> str:
    match = re.search(rf'<p class="field-error" id="f-{name}-error">([^<]*)</p>', page)
    assert match is not None, f"no error next to {name}"
    return html.unescape(match.group(1))


def notice_of(response: httpx.Response) -> str:
    """The notice a redirect carries (the next page shows it)."""
    location = httpx.URL(response.headers["location"])
    return location.params["notice"]


# Adding ----------------------------------------------------------------------------------


async def test_adding_shows_the_secret_once(signed_in: AdminClient, api: Tenant) -> None:
    response = await add_endpoint(
        signed_in,
        event_types=["transaction.created", "customer.created"],
        description='Stock & "sync"',
    )
    assert response.status_code == 200, response.text
    assert "Endpoint added" in response.text
    secrets = SECRET.findall(response.text)
    assert len(set(secrets)) == 1
    endpoint = await the_endpoint(api)
    assert endpoint["url"] == NOWHERE
    assert endpoint["event_types"] == ["customer.created", "transaction.created"]
    assert endpoint["description"] == 'Stock & "sync"'
    assert endpoint["active"] is True
    # Never again: not in the list, not on the endpoint's page.
    listing = await signed_in.get(WEBHOOKS)
    detail = await signed_in.get(f"{WEBHOOKS}/{endpoint['id']}")
    for page in (listing, detail):
        assert page.status_code == 200, page.text
        assert SECRET.search(page.text) is None
        assert NOWHERE in page.text
        assert "Stock &amp; &#34;sync&#34;" in page.text
    assert "Enabled" in listing.text


async def test_every_event_type_is_the_default(signed_in: AdminClient, api: Tenant) -> None:
    response = await add_endpoint(signed_in)
    assert response.status_code == 200, response.text
    endpoint = await the_endpoint(api)
    assert endpoint["event_types"] is None
    assert endpoint["description"] is None


async def test_a_refused_url_is_said_next_to_the_field(signed_in: AdminClient, api: Tenant) -> None:
    private = "http://10.1.2.3/hook"
    response = await add_endpoint(
        signed_in, private, event_types=["reward.created"], description="Kept as typed"
    )
    assert response.status_code == 422, response.text
    assert field_error(response.text, "url")
    assert 'aria-invalid="true"' in response.text
    # What was typed stays: the URL, the description, the checked type.
    assert f'value="{private}"' in response.text
    assert 'value="Kept as typed"' in response.text
    assert re.search(r'value="reward.created" checked', response.text)
    assert await endpoints(api) == []
    not_a_url = await add_endpoint(signed_in, "ftp://example.com/hook")
    assert not_a_url.status_code == 422
    assert field_error(not_a_url.text, "url")
    assert await endpoints(api) == []


async def test_some_types_but_none_checked_is_said_next_to_them(
    signed_in: AdminClient, api: Tenant
) -> None:
    response = await add_endpoint(signed_in, event_types=[])
    assert response.status_code == 422, response.text
    assert "at least one event type" in field_error(response.text, "event_types")
    too_long = await add_endpoint(signed_in, description="x" * 501)
    assert too_long.status_code == 422
    assert field_error(too_long.text, "description") == "Must be at most 500 characters."
    assert await endpoints(api) == []


async def test_a_form_without_its_csrf_token_changes_nothing(
    signed_in: AdminClient, api: Tenant
) -> None:
    response = await signed_in.post(WEBHOOKS, {"url": NOWHERE, "events": "all"})
    assert response.status_code == 403
    assert "This form has expired" in response.text
    forged = await add_endpoint(signed_in, csrf="forged")
    assert forged.status_code == 403
    assert await endpoints(api) == []


# Editing, disabling, rotating ------------------------------------------------------------


async def test_editing_an_endpoint(signed_in: AdminClient, api: Tenant) -> None:
    await add_endpoint(signed_in, event_types=["reward.created"], description="Before")
    endpoint = await the_endpoint(api)
    path = f"{WEBHOOKS}/{endpoint['id']}/edit"
    form = await signed_in.get(path)
    assert form.status_code == 200
    assert 'value="Before"' in form.text
    assert re.search(r'value="reward.created" checked', form.text)
    refused = await signed_in.client.post(
        path,
        data={
            "_csrf": await signed_in.csrf(path),
            "url": "http://192.168.0.10/hook",
            "description": "After",
            "events": "all",
        },
    )
    assert refused.status_code == 422
    assert field_error(refused.text, "url")
    assert 'value="After"' in refused.text
    assert (await the_endpoint(api))["description"] == "Before"
    saved = await signed_in.client.post(
        path,
        data={
            "_csrf": await signed_in.csrf(path),
            "url": f"{NOWHERE}/v2",
            "description": "",
            "events": "some",
            "event_types": ["order.placed", "order.refunded"],
        },
    )
    assert saved.status_code == 303, saved.text
    assert saved.headers["location"].startswith(f"{WEBHOOKS}/{endpoint['id']}?")
    assert notice_of(saved) == "Endpoint saved."
    changed = await the_endpoint(api)
    assert changed["url"] == f"{NOWHERE}/v2"
    assert changed["description"] is None
    assert changed["event_types"] == ["order.placed", "order.refunded"]


async def test_disabling_and_enabling(signed_in: AdminClient, api: Tenant) -> None:
    await add_endpoint(signed_in)
    endpoint_id = (await the_endpoint(api))["id"]
    disabled = await post(signed_in, f"{WEBHOOKS}/{endpoint_id}/disable")
    assert disabled.status_code == 303
    endpoint = await the_endpoint(api)
    assert endpoint["active"] is False
    assert endpoint["disabled_reason"] == "disabled by the merchant"
    page = await signed_in.get(f"{WEBHOOKS}/{endpoint_id}")
    assert "Disabled" in page.text
    assert "disabled by the merchant" in page.text
    assert "Send test event" not in page.text
    # Sending to a disabled endpoint is refused in words, as the API refuses it (409).
    refused = await post(signed_in, f"{WEBHOOKS}/{endpoint_id}/test")
    assert refused.status_code == 409
    assert "This endpoint is disabled" in refused.text
    enabled = await post(signed_in, f"{WEBHOOKS}/{endpoint_id}/enable")
    assert enabled.status_code == 303
    endpoint = await the_endpoint(api)
    assert endpoint["active"] is True
    assert endpoint["disabled_reason"] is None


async def test_rotating_the_secret_shows_the_new_one_once(
    signed_in: AdminClient, api: Tenant
) -> None:
    added = await add_endpoint(signed_in)
    [first] = set(SECRET.findall(added.text))
    endpoint_id = (await the_endpoint(api))["id"]
    rotated = await post(signed_in, f"{WEBHOOKS}/{endpoint_id}/rotate-secret")
    assert rotated.status_code == 200, rotated.text
    assert "New signing secret" in rotated.text
    [second] = set(SECRET.findall(rotated.text))
    assert second != first
    page = await signed_in.get(f"{WEBHOOKS}/{endpoint_id}")
    assert SECRET.search(page.text) is None


# The delivery log, test, resend, recover -----------------------------------------------


async def test_a_test_event_appears_in_the_delivery_log(
    signed_in: AdminClient, api: Tenant, settings: Settings
) -> None:
    with running_receiver() as receiver:
        await add_endpoint(signed_in, receiver.url())
        endpoint_id = (await the_endpoint(api))["id"]
        sent = await post(signed_in, f"{WEBHOOKS}/{endpoint_id}/test")
        assert sent.status_code == 303, sent.text
        assert notice_of(sent).startswith("Test event ")
        await deliver(api.database, settings)
        assert len(receiver.requests) == 1
    [attempt] = await attempts(api, endpoint_id)
    assert attempt["event_type"] == "webhook.test"
    page = await signed_in.get(f"{WEBHOOKS}/{endpoint_id}")
    assert page.status_code == 200
    assert "webhook.test" in page.text
    assert attempt["event_id"] in page.text
    assert "HTTP 200" in page.text
    assert "Succeeded" in page.text
    assert f"{attempt['response_duration_ms']} ms" in page.text
    listing = await signed_in.get(WEBHOOKS)
    assert "Succeeded" in listing.text


async def test_resend_makes_a_new_attempt_of_the_same_event(
    signed_in: AdminClient, api: Tenant, settings: Settings
) -> None:
    with running_receiver() as receiver:
        await add_endpoint(signed_in, receiver.url())
        endpoint_id = (await the_endpoint(api))["id"]
        await post(signed_in, f"{WEBHOOKS}/{endpoint_id}/test")
        await deliver(api.database, settings)
        [first] = await attempts(api, endpoint_id)
        resent = await post(signed_in, f"{WEBHOOKS}/{endpoint_id}/deliveries/{first['id']}/resend")
        assert resent.status_code == 303, resent.text
        assert "(attempt 2)" in notice_of(resent)
        await deliver(api.database, settings)
        # The same event, the same webhook-id: the receiver can tell it is a resend.
        assert len(set(receiver.ids())) == 1
        assert len(receiver.requests) == 2
    newest, oldest = await attempts(api, endpoint_id)
    assert oldest["id"] == first["id"]
    assert (newest["event_id"], newest["attempt"]) == (first["event_id"], 2)
    assert newest["trigger"] == "manual"
    assert newest["status"] == "succeeded"
    page = await signed_in.get(f"{WEBHOOKS}/{endpoint_id}")
    assert "Manual" in page.text
    # Newest first in the log.
    assert page.text.index("Manual") < page.text.index("Scheduled")


async def test_recover_sends_the_failed_events_again(
    signed_in: AdminClient, api: Tenant, settings: Settings
) -> None:
    answers = {"status": 500}

    def answer(_request: Received) -> Answer:
        return Answer(status=answers["status"], body=b"down")

    with running_receiver() as receiver:
        receiver.answer = answer
        await add_endpoint(signed_in, receiver.url())
        endpoint_id = (await the_endpoint(api))["id"]
        await post(signed_in, f"{WEBHOOKS}/{endpoint_id}/test")
        await deliver(api.database, settings)
        retry, failed = await attempts(api, endpoint_id)
        assert (failed["status"], retry["status"]) == ("failed", "pending")
        page = await signed_in.get(f"{WEBHOOKS}/{endpoint_id}?status=failed")
        assert "HTTP 500" in page.text
        assert retry["id"] not in page.text
        # The receiver stayed down: the endpoint was disabled (its retry failed with it),
        # then it came back and was enabled again.
        await post(signed_in, f"{WEBHOOKS}/{endpoint_id}/disable")
        await post(signed_in, f"{WEBHOOKS}/{endpoint_id}/enable")
        answers["status"] = 200
        path = f"{WEBHOOKS}/{endpoint_id}/recover"
        # Errors next to their fields, what was typed kept.
        empty = await post(signed_in, path, since="", until="")
        assert empty.status_code == 422
        assert field_error(empty.text, "since")
        now = utc_now().astimezone(UTC)
        backwards = await post(
            signed_in,
            path,
            since=now.strftime("%Y-%m-%dT%H:%M"),
            until=(now - timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M"),
        )
        assert backwards.status_code == 422
        assert field_error(backwards.text, "until") == "Must be after since."
        too_long = await post(
            signed_in, path, since=(now - timedelta(days=120)).strftime("%Y-%m-%dT%H:%M")
        )
        assert too_long.status_code == 422
        assert "90 days" in field_error(too_long.text, "since")
        since = (now - timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M")
        recovered = await post(signed_in, path, since=since, until="")
        assert recovered.status_code == 303, recovered.text
        assert notice_of(recovered).startswith("1 failed event(s) since")
        await deliver(api.database, settings)
        assert len(receiver.requests) == 2
        assert len(set(receiver.ids())) == 1
    log = await attempts(api, endpoint_id)
    manual = [attempt for attempt in log if attempt["trigger"] == "manual"]
    assert [(a["event_id"], a["status"]) for a in manual] == [(failed["event_id"], "succeeded")]
    # Nothing failed any more: recovering again sends nothing.
    again = await post(signed_in, f"{WEBHOOKS}/{endpoint_id}/recover", since=since)
    assert notice_of(again).startswith("No event failed since")


async def test_the_delivery_log_is_paginated_newest_first(
    signed_in: AdminClient, api: Tenant, settings: Settings
) -> None:
    await add_endpoint(signed_in)
    endpoint_id = (await the_endpoint(api))["id"]
    for _ in range(27):
        assert (await post(signed_in, f"{WEBHOOKS}/{endpoint_id}/test")).status_code == 303
    # Nothing listens at NOWHERE: each event's first attempt fails, a retry is pending.
    await deliver(api.database, settings)
    failed = await attempts(api, endpoint_id, status="failed")
    assert len(failed) == 27
    path = f"{WEBHOOKS}/{endpoint_id}?status=failed"
    first = await signed_in.get(path)
    shown = re.findall(r"/deliveries/([0-9a-f-]{36})/resend", first.text)
    assert shown == [attempt["id"] for attempt in failed[:25]]
    older = re.search(r'href="([^"]*cursor=[^"]*)">Older attempts', first.text)
    assert older is not None
    second = await signed_in.get(html.unescape(older.group(1)))
    shown = re.findall(r"/deliveries/([0-9a-f-]{36})/resend", second.text)
    assert shown == [attempt["id"] for attempt in failed[25:]]
    assert "Newest attempts" in second.text
    assert "Older attempts" not in second.text
    # Unfiltered: the pending retries are there too, newest first.
    everything = await attempts(api, endpoint_id)
    page = await signed_in.get(f"{WEBHOOKS}/{endpoint_id}")
    shown = re.findall(r"/deliveries/([0-9a-f-]{36})/resend", page.text)
    assert shown == [attempt["id"] for attempt in everything[:25]]


# Another merchant's endpoint -------------------------------------------------------------


async def test_another_merchants_endpoint_is_the_404_page(
    signed_in: AdminClient, other_tenant: Tenant, settings: Settings
) -> None:
    response = await other_tenant.post("/api/v1/webhooks", json={"url": NOWHERE})
    assert response.status_code == 201, response.text
    theirs = response.json()["data"]["id"]
    await other_tenant.post(f"/api/v1/webhooks/{theirs}/test")
    await deliver(other_tenant.database, settings)
    before = await attempts(other_tenant, theirs)
    attempt = before[-1]
    for path in ("", "/edit"):
        page = await signed_in.get(f"{WEBHOOKS}/{theirs}{path}")
        assert page.status_code == 404
        assert "Page not found" in page.text
        assert NOWHERE not in page.text
    for action in (
        "/edit",
        "/disable",
        "/enable",
        "/rotate-secret",
        "/test",
        f"/deliveries/{attempt['id']}/resend",
        "/recover",
    ):
        response = await post(
            signed_in,
            f"{WEBHOOKS}/{theirs}{action}",
            url="http://127.0.0.1:9/mine",
            events="all",
            since=(utc_now() - timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M"),
        )
        assert response.status_code == 404, (action, response.text)
    unchanged = (await other_tenant.get(f"/api/v1/webhooks/{theirs}")).json()["data"]
    assert unchanged["url"] == NOWHERE
    assert unchanged["active"] is True
    assert await attempts(other_tenant, theirs) == before
    assert (await signed_in.get(f"{WEBHOOKS}/{uuid.uuid4()}")).status_code == 404


async def test_support_staff_cannot_open_webhooks(
    admin_clients: ClientFactory, shop: Shop, unique_id: str
) -> None:
    email = f"agent-{unique_id}@example.com"
    await shop.add_user(email, role="support")
    agent = await admin_clients()
    assert (await agent.login(email)).status_code == 303
    page = await agent.get(WEBHOOKS)
    assert page.status_code == 403
