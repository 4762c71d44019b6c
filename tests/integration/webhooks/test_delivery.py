"""Deliveries to a real HTTP receiver on 127.0.0.1, checked with the
``standardwebhooks`` package (a verifier that is not ours)."""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

from standardwebhooks import Webhook

from loyalty.db.types import utc_now
from loyalty.settings import Settings
from loyalty.webhooks.delivery import Deliverer
from tests.support.receiver import Answer, Received, running_receiver
from tests.support.tenant import Tenant


async def register(tenant: Tenant, url: str, **fields: Any) -> dict[str, Any]:
    response = await tenant.post("/api/v1/webhooks", json={"url": url, **fields})
    assert response.status_code == 201, response.text
    data: dict[str, Any] = response.json()["data"]
    return data


async def test_a_credit_is_delivered_signed_and_verifiable(
    tenant: Tenant, settings: Settings, unique_id: str
) -> None:
    with running_receiver() as receiver:
        endpoint = await register(tenant, receiver.url())
        await tenant.enrol(unique_id)
        assert (await tenant.adjust(unique_id, 50)).status_code == 201
        deliverer = Deliverer(tenant.database, settings)
        try:
            assert await deliverer.run_once() == 2
        finally:
            await deliverer.stop()
        assert len(receiver.requests) == 2
        verifier = Webhook(endpoint["secret"])
        bodies = []
        for request in receiver.requests:
            payload = verifier.verify(request.body, request.headers)
            assert request.headers["webhook-id"] == payload["id"]
            bodies.append(json.loads(request.body))
        # Sent concurrently: arrival order is not promised (`sequence` orders them).
        bodies.sort(key=lambda body: body["sequence"])
        assert [body["type"] for body in bodies] == ["customer.created", "transaction.created"]
        assert [body["sequence"] for body in bodies] == [1, 2]
        assert {body["customer_id"] for body in bodies} == {unique_id}
        assert bodies[1]["data"]["transaction"]["points"] == 50
    log = await tenant.get(f"/api/v1/webhooks/{endpoint['id']}/deliveries")
    assert log.status_code == 200
    attempts = log.json()["data"]
    assert [a["status"] for a in attempts] == ["succeeded", "succeeded"]
    assert attempts[0]["response_status"] == 200
    assert attempts[0]["response_body"] == "ok"


async def test_a_failure_is_retried_with_the_same_webhook_id(
    tenant: Tenant, settings: Settings, unique_id: str
) -> None:
    answers = iter([Answer(500, b"down"), Answer(200)])

    def answer(_request: Received) -> Answer:
        return next(answers)

    with running_receiver() as receiver:
        receiver.answer = answer
        endpoint = await register(tenant, receiver.url(), event_types=["customer.created"])
        await tenant.enrol(unique_id)
        later = utc_now()
        deliverer = Deliverer(tenant.database, settings, clock=lambda: later)
        try:
            assert await deliverer.run_once() == 1
            # Due 5 s later (±20 %): not yet.
            later = utc_now() + timedelta(seconds=3)
            assert await deliverer.run_once() == 0
            later = utc_now() + timedelta(seconds=7)
            assert await deliverer.run_once() == 1
        finally:
            await deliverer.stop()
        ids = receiver.ids()
        assert len(ids) == 2
        assert ids[0] == ids[1]
    attempts = (await tenant.get(f"/api/v1/webhooks/{endpoint['id']}/deliveries")).json()["data"]
    assert [(a["attempt"], a["status"], a["response_status"]) for a in attempts] == [
        (2, "succeeded", 200),
        (1, "failed", 500),
    ]
    assert attempts[1]["response_body"] == "down"


async def test_a_disabled_endpoint_is_sent_nothing(
    tenant: Tenant, settings: Settings, unique_id: str
) -> None:
    with running_receiver() as receiver:
        endpoint = await register(tenant, receiver.url())
        path = f"/api/v1/webhooks/{endpoint['id']}"
        response = await tenant.client.patch(path, json={"active": False}, headers=tenant.headers)
        assert response.json()["data"]["disabled_reason"] == "disabled by the merchant"
        for action, body in (("test", None), ("recover", {"since": "2026-01-01T00:00:00Z"})):
            refused = await tenant.post(f"{path}/{action}", json=body)
            assert refused.status_code == 409, refused.text
            assert refused.json()["error"]["code"] == "webhook_endpoint_disabled"
        await tenant.enrol(unique_id)
        deliverer = Deliverer(tenant.database, settings)
        try:
            await deliverer.run_once()
        finally:
            await deliverer.stop()
        assert receiver.requests == []
