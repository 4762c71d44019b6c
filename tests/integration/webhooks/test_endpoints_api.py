"""The webhook endpoints API (docs: ../shared/spec/WEBHOOKS.md, "Webhook endpoints"):
register, read, change, delete, rotate the secret, test, the attempts log,
resend and recover, with deliveries to a real receiver on 127.0.0.1."""

from __future__ import annotations

import json
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from standardwebhooks import Webhook

from loyalty.db.types import utc_now
from loyalty.settings import Settings
from loyalty.webhooks.delivery import Deliverer
from tests.support.receiver import Answer, Received, running_receiver
from tests.support.tenant import Tenant

WEBHOOKS = "/api/v1/webhooks"
# Nothing listens there: endpoints that are never delivered to (inside 127.0.0.0/8).
NOWHERE = "http://127.0.0.1:9/hook"


async def register(tenant: Tenant, url: str = NOWHERE, **fields: Any) -> dict[str, Any]:
    response = await tenant.post(WEBHOOKS, json={"url": url, **fields})
    assert response.status_code == 201, response.text
    data: dict[str, Any] = response.json()["data"]
    return data


async def patch(tenant: Tenant, path: str, body: Any) -> httpx.Response:
    return await tenant.client.patch(path, headers=tenant.headers, json=body)


async def delete(tenant: Tenant, path: str) -> httpx.Response:
    return await tenant.client.delete(path, headers=tenant.headers)


async def deliver(tenant: Tenant, settings: Settings) -> None:
    """Relay and send everything due now, as ``loyalty worker --once`` does."""
    deliverer = Deliverer(tenant.database, settings)
    try:
        await deliverer.run_once()
    finally:
        await deliverer.stop()


async def attempts(tenant: Tenant, endpoint_id: str, **params: Any) -> list[dict[str, Any]]:
    response = await tenant.get(f"{WEBHOOKS}/{endpoint_id}/deliveries", params=params)
    assert response.status_code == 200, response.text
    data: list[dict[str, Any]] = response.json()["data"]
    return data


async def listed(tenant: Tenant) -> list[dict[str, Any]]:
    response = await tenant.get(WEBHOOKS, params={"limit": 100})
    assert response.status_code == 200, response.text
    data: list[dict[str, Any]] = response.json()["data"]
    return data


def assert_error(
    response: httpx.Response, status_code: int, code: str, field: str | None = None
) -> dict[str, Any]:
    assert response.status_code == status_code, response.text
    error: dict[str, Any] = response.json()["error"]
    assert error["code"] == code, error
    if field is not None:
        assert error["details"][0]["field"] == field, error
    return error


def always(answer: Answer) -> Callable[[Received], Answer]:
    return lambda _request: answer


def event_type_of(request: Received) -> str:
    body: dict[str, Any] = json.loads(request.body)
    return str(body["type"])


# Create, read, list ------------------------------------------------------------------


async def test_create_shows_the_secret_once(tenant: Tenant) -> None:
    response = await tenant.post(
        WEBHOOKS,
        json={"url": NOWHERE, "event_types": ["transaction.created"], "description": "Shop"},
    )
    assert response.status_code == 201, response.text
    created = response.json()["data"]
    assert created["secret"].startswith("whsec_")
    assert created["url"] == NOWHERE
    assert created["event_types"] == ["transaction.created"]
    assert created["description"] == "Shop"
    assert created["active"] is True
    assert created["disabled_reason"] is None
    one = await tenant.get(f"{WEBHOOKS}/{created['id']}")
    assert one.status_code == 200, one.text
    assert "secret" not in one.json()["data"]
    assert one.json()["data"] == {k: v for k, v in created.items() if k != "secret"}
    everything = await listed(tenant)
    assert [endpoint["id"] for endpoint in everything] == [created["id"]]
    assert "secret" not in everything[0]


async def test_each_endpoint_gets_its_own_secret(tenant: Tenant) -> None:
    first = await register(tenant)
    second = await register(tenant)
    assert first["secret"] != second["secret"]


async def test_the_list_is_paginated(tenant: Tenant) -> None:
    created = [(await register(tenant, f"{NOWHERE}/{n}"))["id"] for n in range(3)]
    first = await tenant.get(WEBHOOKS, params={"limit": 2})
    assert first.status_code == 200, first.text
    page = first.json()
    assert len(page["data"]) == 2
    assert isinstance(page["next_cursor"], str)
    second = await tenant.get(WEBHOOKS, params={"limit": 2, "cursor": page["next_cursor"]})
    assert second.status_code == 200, second.text
    rest = second.json()
    assert len(rest["data"]) == 1
    assert rest["next_cursor"] is None
    seen = [endpoint["id"] for endpoint in page["data"] + rest["data"]]
    assert sorted(seen) == sorted(created)
    assert all("secret" not in endpoint for endpoint in page["data"] + rest["data"])


@pytest.mark.parametrize(
    ("params", "field"),
    [
        pytest.param({"limit": 0}, "limit", id="limit 0"),
        pytest.param({"limit": 101}, "limit", id="limit 101"),
        pytest.param({"cursor": "garbage"}, "cursor", id="cursor"),
    ],
)
async def test_the_list_refuses_bad_parameters(
    tenant: Tenant, params: dict[str, Any], field: str
) -> None:
    assert_error(await tenant.get(WEBHOOKS, params=params), 422, "validation_error", field)


async def test_other_merchants_endpoints_are_not_listed(
    tenant: Tenant, other_tenant: Tenant
) -> None:
    await register(other_tenant)
    assert await listed(tenant) == []


# Change ------------------------------------------------------------------------------


async def test_patch_changes_only_the_fields_sent(tenant: Tenant) -> None:
    endpoint = await register(tenant, description="before")
    path = f"{WEBHOOKS}/{endpoint['id']}"
    changed = await patch(
        tenant,
        path,
        {"url": f"{NOWHERE}/moved", "event_types": ["transaction.created", "customer.created"]},
    )
    assert changed.status_code == 200, changed.text
    data = changed.json()["data"]
    assert data["url"] == f"{NOWHERE}/moved"
    assert sorted(data["event_types"]) == ["customer.created", "transaction.created"]
    assert data["description"] == "before"
    assert "secret" not in data
    described = (await patch(tenant, path, {"description": "after"})).json()["data"]
    assert described["description"] == "after"
    assert described["url"] == f"{NOWHERE}/moved"
    read = (await tenant.get(path)).json()["data"]
    assert read == described


async def test_patch_active_false_sets_a_reason_and_true_clears_it(tenant: Tenant) -> None:
    endpoint = await register(tenant)
    path = f"{WEBHOOKS}/{endpoint['id']}"
    disabled = await patch(tenant, path, {"active": False})
    assert disabled.status_code == 200, disabled.text
    assert disabled.json()["data"]["active"] is False
    assert disabled.json()["data"]["disabled_reason"]
    enabled = await patch(tenant, path, {"active": True})
    assert enabled.status_code == 200, enabled.text
    assert enabled.json()["data"]["active"] is True
    assert enabled.json()["data"]["disabled_reason"] is None


async def test_patch_event_types_null_means_every_type(
    tenant: Tenant, settings: Settings, unique_id: str
) -> None:
    with running_receiver() as receiver:
        endpoint = await register(tenant, receiver.url(), event_types=["transaction.created"])
        changed = await patch(tenant, f"{WEBHOOKS}/{endpoint['id']}", {"event_types": None})
        assert changed.status_code == 200, changed.text
        assert changed.json()["data"]["event_types"] is None
        await tenant.enrol(unique_id)
        await deliver(tenant, settings)
        assert [event_type_of(request) for request in receiver.requests] == ["customer.created"]


async def test_patch_refuses_bad_fields_and_changes_nothing(tenant: Tenant) -> None:
    endpoint = await register(tenant, event_types=["transaction.created"])
    path = f"{WEBHOOKS}/{endpoint['id']}"
    assert_error(
        await patch(tenant, path, {"url": "https://10.0.0.1/hook"}), 422, "validation_error", "url"
    )
    assert_error(
        await patch(tenant, path, {"event_types": ["no.such"]}),
        422,
        "validation_error",
        "event_types",
    )
    assert_error(await patch(tenant, path, {"event_types": []}), 422, "validation_error")
    read = (await tenant.get(path)).json()["data"]
    assert read["url"] == NOWHERE
    assert read["event_types"] == ["transaction.created"]


# Delete ------------------------------------------------------------------------------


async def test_a_deleted_endpoint_is_gone_and_receives_nothing(
    tenant: Tenant, settings: Settings, unique_id: str
) -> None:
    with running_receiver() as receiver:
        endpoint = await register(tenant, receiver.url())
        path = f"{WEBHOOKS}/{endpoint['id']}"
        # An event fanned out (a pending attempt) before the delete ...
        await tenant.enrol(f"{unique_id}-before")
        assert (await tenant.get("/api/v1/events")).status_code == 200
        assert len(await attempts(tenant, endpoint["id"], status="pending")) == 1
        deleted = await delete(tenant, path)
        assert deleted.status_code == 204, deleted.text
        assert deleted.content == b""
        assert_error(await tenant.get(path), 404, "webhook_endpoint_not_found")
        assert_error(await delete(tenant, path), 404, "webhook_endpoint_not_found")
        # ... and one after it.
        await tenant.enrol(f"{unique_id}-after")
        await deliver(tenant, settings)
        assert receiver.requests == []
    assert await listed(tenant) == []


# Bad input ---------------------------------------------------------------------------

BAD_BODIES: list[tuple[str, dict[str, Any], str]] = [
    ("ftp", {"url": "ftp://example.com/x"}, "url"),
    ("credentials", {"url": "https://user:pw@example.com/"}, "url"),
    ("private address", {"url": "https://10.0.0.1/hook"}, "url"),
    ("not a url", {"url": "not a url"}, "url"),
    ("http outside the allowed networks", {"url": "http://93.184.215.14/"}, "url"),
    ("too long", {"url": "https://example.com/" + "a" * 2980}, "url"),
    ("unknown event type", {"url": NOWHERE, "event_types": ["no.such_type"]}, "event_types"),
    ("no event type", {"url": NOWHERE, "event_types": []}, "event_types"),
    ("unknown field", {"url": NOWHERE, "colour": "blue"}, "colour"),
    ("no url", {"event_types": ["transaction.created"]}, "url"),
]


@pytest.mark.parametrize(
    ("body", "field"),
    [pytest.param(body, field, id=name) for name, body, field in BAD_BODIES],
)
async def test_a_bad_endpoint_is_refused_naming_the_field(
    tenant: Tenant, body: dict[str, Any], field: str
) -> None:
    response = await tenant.post(WEBHOOKS, json=body)
    assert_error(response, 422, "validation_error", field)
    assert await listed(tenant) == []


async def test_malformed_json_is_400(tenant: Tenant) -> None:
    response = await tenant.post(
        WEBHOOKS,
        content=b'{"url": "http://127.0.0.1:9/',
        headers={"content-type": "application/json"},
    )
    assert_error(response, 400, "invalid_json")
    assert await listed(tenant) == []


# Another merchant's endpoint ---------------------------------------------------------


def _calls(
    tenant: Tenant, endpoint_id: str
) -> list[tuple[str, Callable[[], Awaitable[httpx.Response]]]]:
    path = f"{WEBHOOKS}/{endpoint_id}"
    some_attempt = uuid.uuid4()
    since = {"since": (utc_now() - timedelta(hours=1)).isoformat()}
    return [
        ("get", lambda: tenant.get(path)),
        ("patch", lambda: patch(tenant, path, {"description": "mine now"})),
        ("delete", lambda: delete(tenant, path)),
        ("rotate", lambda: tenant.post(f"{path}/rotate-secret")),
        ("test", lambda: tenant.post(f"{path}/test")),
        ("deliveries", lambda: tenant.get(f"{path}/deliveries")),
        ("resend", lambda: tenant.post(f"{path}/deliveries/{some_attempt}/resend")),
        ("recover", lambda: tenant.post(f"{path}/recover", json=since)),
    ]


async def test_another_merchants_endpoint_is_not_found(
    tenant: Tenant, other_tenant: Tenant
) -> None:
    theirs = await register(other_tenant, description="theirs")
    for name, call in _calls(tenant, theirs["id"]):
        response = await call()
        assert response.status_code == 404, (name, response.text)
        assert response.json()["error"]["code"] == "webhook_endpoint_not_found", name
    # Untouched: not changed, not deleted, no test event sent.
    read = await other_tenant.get(f"{WEBHOOKS}/{theirs['id']}")
    assert read.status_code == 200, read.text
    assert read.json()["data"]["description"] == "theirs"
    feed = (await other_tenant.get("/api/v1/events", params={"type": "webhook.test"})).json()
    assert feed["data"] == []


@pytest.mark.parametrize("endpoint_id", ["not-a-uuid", "12345", str(uuid.uuid4())])
async def test_an_unknown_or_malformed_id_is_not_found(tenant: Tenant, endpoint_id: str) -> None:
    for name, call in _calls(tenant, endpoint_id):
        response = await call()
        assert response.status_code == 404, (name, response.text)
        assert response.json()["error"]["code"] == "webhook_endpoint_not_found", name


# Rotate the secret -------------------------------------------------------------------


async def test_after_a_rotation_both_secrets_sign(
    tenant: Tenant, settings: Settings, unique_id: str
) -> None:
    with running_receiver() as receiver:
        endpoint = await register(tenant, receiver.url())
        old_secret = endpoint["secret"]
        rotated = await tenant.post(f"{WEBHOOKS}/{endpoint['id']}/rotate-secret")
        assert rotated.status_code == 200, rotated.text
        assert list(rotated.json()) == ["data"]
        new_secret = rotated.json()["data"]["secret"]
        assert new_secret.startswith("whsec_")
        assert new_secret != old_secret
        await tenant.enrol(unique_id)
        await deliver(tenant, settings)
        (request,) = receiver.requests
    signatures = request.headers["webhook-signature"].split(" ")
    assert len(signatures) == 2
    assert all(signature.startswith("v1,") for signature in signatures)
    assert Webhook(old_secret).verify(request.body, request.headers)["type"] == "customer.created"
    assert Webhook(new_secret).verify(request.body, request.headers)["type"] == "customer.created"


async def test_the_old_secret_stops_signing_after_24_hours(
    tenant: Tenant, settings: Settings, unique_id: str
) -> None:
    with running_receiver() as receiver:
        endpoint = await register(tenant, receiver.url())
        rotated = await tenant.post(f"{WEBHOOKS}/{endpoint['id']}/rotate-secret")
        new_secret = rotated.json()["data"]["secret"]
        await tenant.enrol(unique_id)
        later = utc_now() + timedelta(hours=24, minutes=1)
        deliverer = Deliverer(tenant.database, settings, clock=lambda: later)
        try:
            await deliverer.run_once()
        finally:
            await deliverer.stop()
        (request,) = receiver.requests
    timestamp = datetime.fromtimestamp(int(request.headers["webhook-timestamp"]), UTC)
    assert request.headers["webhook-signature"] == Webhook(new_secret).sign(
        request.headers["webhook-id"], timestamp, request.body.decode()
    )


# Test event --------------------------------------------------------------------------


async def test_a_test_event_goes_to_that_endpoint_only(tenant: Tenant, settings: Settings) -> None:
    with running_receiver() as tested, running_receiver() as other:
        # Its event_types do not include webhook.test: the test event goes anyway.
        endpoint = await register(tenant, tested.url(), event_types=["transaction.created"])
        await register(tenant, other.url())
        response = await tenant.post(f"{WEBHOOKS}/{endpoint['id']}/test")
        assert response.status_code == 202, response.text
        event_id = response.json()["data"]["event_id"]
        await deliver(tenant, settings)
        assert other.requests == []
        (request,) = tested.requests
    payload = Webhook(endpoint["secret"]).verify(request.body, request.headers)
    assert request.headers["webhook-id"] == event_id
    assert payload["id"] == event_id
    assert payload["type"] == "webhook.test"
    assert payload["data"]["webhook"]["id"] == endpoint["id"]


async def test_event_types_filter_what_is_delivered(
    tenant: Tenant, settings: Settings, unique_id: str
) -> None:
    with running_receiver() as receiver:
        await register(tenant, receiver.url(), event_types=["transaction.created"])
        await tenant.enrol(unique_id)
        assert (await tenant.adjust(unique_id, 10)).status_code == 201
        assert (await tenant.adjust(unique_id, 5)).status_code == 201
        await deliver(tenant, settings)
        assert [event_type_of(request) for request in receiver.requests] == [
            "transaction.created",
            "transaction.created",
        ]


# Resend ------------------------------------------------------------------------------


async def test_resend_sends_the_same_webhook_id_again(
    tenant: Tenant, settings: Settings, unique_id: str
) -> None:
    with running_receiver() as receiver:
        endpoint = await register(tenant, receiver.url())
        await tenant.enrol(unique_id)
        await deliver(tenant, settings)
        (first,) = await attempts(tenant, endpoint["id"])
        assert first["status"] == "succeeded"
        response = await tenant.post(f"{WEBHOOKS}/{endpoint['id']}/deliveries/{first['id']}/resend")
        assert response.status_code == 202, response.text
        resent = response.json()["data"]
        assert resent["status"] == "pending"
        assert resent["trigger"] == "manual"
        assert resent["event_id"] == first["event_id"]
        assert resent["attempt"] == 2
        await deliver(tenant, settings)
        ids = receiver.ids()
    assert ids == [first["event_id"], first["event_id"]]
    log = await attempts(tenant, endpoint["id"])
    assert [(a["attempt"], a["trigger"], a["status"]) for a in log] == [
        (2, "manual", "succeeded"),
        (1, "scheduled", "succeeded"),
    ]


async def test_resend_of_an_unknown_attempt_is_not_found(
    tenant: Tenant, other_tenant: Tenant, settings: Settings, unique_id: str
) -> None:
    endpoint = await register(tenant)
    base = f"{WEBHOOKS}/{endpoint['id']}/deliveries"
    for attempt_id in (str(uuid.uuid4()), "not-a-uuid"):
        assert_error(
            await tenant.post(f"{base}/{attempt_id}/resend"), 404, "delivery_attempt_not_found"
        )
    # An attempt of another endpoint (of another merchant) is not this endpoint's.
    with running_receiver() as receiver:
        theirs = await register(other_tenant, receiver.url())
        await other_tenant.enrol(unique_id)
        await deliver(other_tenant, settings)
    (their_attempt,) = await attempts(other_tenant, theirs["id"])
    assert_error(
        await tenant.post(f"{base}/{their_attempt['id']}/resend"),
        404,
        "delivery_attempt_not_found",
    )


# Recover -----------------------------------------------------------------------------


async def test_recover_sends_failed_events_again(
    tenant: Tenant, settings: Settings, unique_id: str
) -> None:
    with running_receiver() as receiver:
        receiver.answer = always(Answer(500, b"down"))
        endpoint = await register(tenant, receiver.url())
        path = f"{WEBHOOKS}/{endpoint['id']}"
        since = utc_now() - timedelta(hours=1)
        await tenant.enrol(unique_id)
        assert (await tenant.adjust(unique_id, 10)).status_code == 201
        await deliver(tenant, settings)
        first_ids = receiver.ids()
        assert len(first_ids) == 2
        # Their retries are pending: disabling the endpoint fails them.
        assert len(await attempts(tenant, endpoint["id"], status="pending")) == 2
        assert (await patch(tenant, path, {"active": False})).status_code == 200
        assert (await patch(tenant, path, {"active": True})).status_code == 200
        assert await attempts(tenant, endpoint["id"], status="pending") == []
        receiver.answer = always(Answer(200))
        response = await tenant.post(f"{path}/recover", json={"since": since.isoformat()})
        assert response.status_code == 202, response.text
        assert response.json() == {"data": {"events": 2}}
        await deliver(tenant, settings)
        ids = receiver.ids()
    assert len(ids) == 4
    assert sorted(ids[2:]) == sorted(first_ids)
    succeeded = await attempts(tenant, endpoint["id"], status="succeeded")
    assert {a["trigger"] for a in succeeded} == {"manual"}
    assert sorted(a["event_id"] for a in succeeded) == sorted(first_ids)
    # Nothing failed is left without a success: a second recover finds nothing.
    again = await tenant.post(f"{path}/recover", json={"since": since.isoformat()})
    assert again.status_code == 202, again.text
    assert again.json() == {"data": {"events": 0}}


async def test_recover_ignores_events_outside_the_range(
    tenant: Tenant, settings: Settings, unique_id: str
) -> None:
    with running_receiver() as receiver:
        receiver.answer = always(Answer(500))
        endpoint = await register(tenant, receiver.url())
        path = f"{WEBHOOKS}/{endpoint['id']}"
        await tenant.enrol(unique_id)
        await deliver(tenant, settings)
        assert (await patch(tenant, path, {"active": False})).status_code == 200
        assert (await patch(tenant, path, {"active": True})).status_code == 200
    later = utc_now() + timedelta(minutes=1)
    response = await tenant.post(
        f"{path}/recover",
        json={"since": later.isoformat(), "until": (later + timedelta(hours=1)).isoformat()},
    )
    assert response.status_code == 202, response.text
    assert response.json() == {"data": {"events": 0}}


@pytest.mark.parametrize(
    ("body", "field"),
    [
        pytest.param(
            {"since": "2026-01-01T10:00:00Z", "until": "2026-01-01T10:00:00Z"}, "until", id="equal"
        ),
        pytest.param(
            {"since": "2026-01-01T10:00:00Z", "until": "2026-01-01T09:00:00Z"}, "until", id="before"
        ),
        pytest.param({"since": "2026-01-01T10:00:00"}, "since", id="naive since"),
        pytest.param(
            {"since": "2026-01-01T10:00:00Z", "until": "2026-01-01T11:00:00"},
            "until",
            id="naive until",
        ),
        pytest.param(
            {"since": "2026-01-01T00:00:00Z", "until": "2026-04-02T00:00:00Z"},
            "since",
            id="over 90 days",
        ),
        pytest.param({}, "since", id="missing since"),
        pytest.param({"since": "yesterday"}, "since", id="not a datetime"),
    ],
)
async def test_recover_refuses_a_bad_range(
    tenant: Tenant, body: dict[str, Any], field: str
) -> None:
    endpoint = await register(tenant)
    response = await tenant.post(f"{WEBHOOKS}/{endpoint['id']}/recover", json=body)
    assert_error(response, 422, "validation_error", field)


# The attempts log --------------------------------------------------------------------


async def test_the_log_filters_by_status_and_event(
    tenant: Tenant, settings: Settings, unique_id: str
) -> None:
    def answer(request: Received) -> Answer:
        return Answer(500) if event_type_of(request) == "customer.created" else Answer(200)

    with running_receiver() as receiver:
        receiver.answer = answer
        endpoint = await register(tenant, receiver.url())
        await tenant.enrol(unique_id)
        assert (await tenant.adjust(unique_id, 10)).status_code == 201
        assert (await tenant.adjust(unique_id, 5)).status_code == 201
        await deliver(tenant, settings)
    endpoint_id = endpoint["id"]
    try:
        failed = await attempts(tenant, endpoint_id, status="failed")
        assert [(a["event_type"], a["attempt"], a["response_status"]) for a in failed] == [
            ("customer.created", 1, 500)
        ]
        succeeded = await attempts(tenant, endpoint_id, status="succeeded")
        assert [a["event_type"] for a in succeeded] == ["transaction.created"] * 2
        pending = await attempts(tenant, endpoint_id, status="pending")
        assert [(a["event_type"], a["attempt"]) for a in pending] == [("customer.created", 2)]
        one_event = succeeded[0]["event_id"]
        by_event = await attempts(tenant, endpoint_id, event_id=one_event)
        assert [a["id"] for a in by_event] == [succeeded[0]["id"]]
        failed_event = await attempts(tenant, endpoint_id, event_id=failed[0]["event_id"])
        assert [a["attempt"] for a in failed_event] == [2, 1]
        none = await attempts(tenant, endpoint_id, event_id=str(uuid.uuid4()))
        assert none == []
    finally:
        # Its pending retry is never to be made (other tests move the clock).
        await delete(tenant, f"{WEBHOOKS}/{endpoint_id}")


@pytest.mark.parametrize(
    "params",
    [
        pytest.param({"status": "lost"}, id="status"),
        pytest.param({"event_id": "not-a-uuid"}, id="event_id"),
        pytest.param({"limit": 0}, id="limit 0"),
        pytest.param({"limit": 101}, id="limit 101"),
        pytest.param({"cursor": "garbage"}, id="cursor"),
    ],
)
async def test_the_log_refuses_bad_parameters(tenant: Tenant, params: dict[str, Any]) -> None:
    endpoint = await register(tenant)
    response = await tenant.get(f"{WEBHOOKS}/{endpoint['id']}/deliveries", params=params)
    assert response.status_code in (400, 422), response.text
    error = response.json()["error"]
    assert set(error) >= {"code", "message", "details"}
    if response.status_code == 422:
        assert error["code"] == "validation_error"
        assert error["details"][0]["field"] == next(iter(params))


async def test_the_log_is_paginated_newest_first(
    tenant: Tenant, settings: Settings, unique_id: str
) -> None:
    with running_receiver() as receiver:
        endpoint = await register(tenant, receiver.url())
        await tenant.enrol(unique_id)
        for points in (1, 2, 3, 4):
            assert (await tenant.adjust(unique_id, points)).status_code == 201
        await deliver(tenant, settings)
    path = f"{WEBHOOKS}/{endpoint['id']}/deliveries"
    seen: list[dict[str, Any]] = []
    cursor: str | None = None
    pages = 0
    while True:
        params: dict[str, Any] = {"limit": 2}
        if cursor is not None:
            params["cursor"] = cursor
        response = await tenant.get(path, params=params)
        assert response.status_code == 200, response.text
        page = response.json()
        assert len(page["data"]) <= 2
        seen += page["data"]
        pages += 1
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert pages == 3
    assert len(seen) == 5
    ids = [a["id"] for a in seen]
    assert len(set(ids)) == 5
    # Newest first: UUIDv7 ids (and so their text) decrease.
    assert ids == sorted(ids, reverse=True)
    feed = (await tenant.get("/api/v1/events")).json()["data"]
    assert [a["event_id"] for a in seen] == [event["id"] for event in reversed(feed)]
