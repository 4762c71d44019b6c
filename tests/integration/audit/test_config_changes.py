"""The audit trail of configuration (../shared/spec/ADMIN.md, "Rules"): every
configuration change writes one ``config_changes`` row, in its transaction,
with its actor and a summary that never holds a secret or a token."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Coroutine
from typing import Any, TypeVar

import httpx
import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncConnection
from typer.testing import CliRunner

from loyalty.actors import SYSTEM, acting_as, current_actor
from loyalty.audit import service as audit
from loyalty.auth import service as auth_service
from loyalty.auth.tokens import token_prefix
from loyalty.cli import app as cli_app
from loyalty.db.tables import config_changes
from loyalty.errors import ValidationFailedError
from loyalty.rewards import service as rewards_service
from loyalty.rewards.schemas import CreateReward
from loyalty.settings import Settings
from loyalty.webhooks.delivery import Deliverer
from loyalty.webhooks.service import audited_url
from tests.support.receiver import Answer, running_receiver
from tests.support.rewards import FIVE_OFF, REWARDS, create
from tests.support.tenant import Tenant

SETTINGS = "/api/v1/settings/program"
RULES = "/api/v1/earn-rules"
TIERS = "/api/v1/tiers"
WEBHOOKS = "/api/v1/webhooks"
# Nothing listens there (inside the tests' allowed 127.0.0.0/8); a token in its query.
HOOK_URL = "http://127.0.0.1:9/hook?token=query-token-not-for-the-trail"
STAFF = "user:staff@example.com"
PASSWORD = "correct horse battery"
T = TypeVar("T")


def key_actor(tenant: Tenant) -> str:
    prefix = token_prefix(tenant.token)
    assert prefix is not None
    return f"api_key:{prefix}"


async def changes(tenant: Tenant) -> list[Any]:
    """The merchant's configuration changes, oldest first."""
    async with tenant.database.read() as connection:
        rows = await connection.execute(
            select(config_changes)
            .where(config_changes.c.merchant_id == tenant.merchant_id)
            .order_by(config_changes.c.id)
        )
        return list(rows)


class Trail:
    """What the trail gained since the last look."""

    def __init__(self, tenant: Tenant) -> None:
        self.tenant = tenant
        self.seen = 0

    async def start(self) -> Trail:
        self.seen = len(await changes(self.tenant))
        return self

    async def new(self) -> list[Any]:
        rows = await changes(self.tenant)
        fresh, self.seen = rows[self.seen :], len(rows)
        return fresh

    async def one(self, subject_type: str, action: str, actor: str) -> Any:
        fresh = await self.new()
        assert len(fresh) == 1, [(row.subject_type, row.action) for row in fresh]
        row = fresh[0]
        assert (row.subject_type, row.action, row.actor) == (subject_type, action, actor)
        assert row.created_at is not None
        return row

    async def none(self) -> None:
        assert await self.new() == []


async def patch(tenant: Tenant, path: str, body: dict[str, Any]) -> httpx.Response:
    return await tenant.client.patch(path, json=body, headers=tenant.headers)


async def delete(tenant: Tenant, path: str) -> httpx.Response:
    return await tenant.client.delete(path, headers=tenant.headers)


# --- through the API, as an API key ---------------------------------------------------


async def test_programme_settings_changes_are_audited_once_and_only_when_changed(
    tenant: Tenant,
) -> None:
    trail = await Trail(tenant).start()
    body = {"default_description": "Thanks for shopping", "points_decimals": 2}
    response = await patch(tenant, SETTINGS, body)
    assert response.status_code == 200, response.text
    row = await trail.one("program_settings", "updated", key_actor(tenant))
    assert row.subject_id == str(tenant.merchant_id)
    assert row.summary == 'points_decimals=2, default_description="Thanks for shopping"'

    # The same values again: nothing changed, nothing is recorded.
    assert (await patch(tenant, SETTINGS, body)).status_code == 200
    await trail.none()
    assert (await patch(tenant, SETTINGS, {})).status_code == 200
    await trail.none()

    response = await patch(tenant, SETTINGS, {"expiry_policy": "fixed", "expiry_days": 365})
    assert response.status_code == 200, response.text
    row = await trail.one("program_settings", "updated", key_actor(tenant))
    assert row.summary == 'expiry_policy="fixed", expiry_days=365'


async def test_reward_catalogue_changes_are_audited(tenant: Tenant) -> None:
    trail = await Trail(tenant).start()
    reward = await create(tenant, {**FIVE_OFF, "name": "Free shipping"})
    row = await trail.one("reward", "created", key_actor(tenant))
    assert row.subject_id == reward["id"]
    assert row.summary.startswith('name="Free shipping", description="Redeem 500 points')
    assert "points_cost=500" in row.summary
    assert 'reward_rule={"points_required": 500, "discount_value": 5}' in row.summary

    path = f"{REWARDS}/{reward['id']}"
    response = await patch(tenant, path, {"name": "Five off", "points_cost": 600})
    assert response.status_code == 200, response.text
    row = await trail.one("reward", "updated", key_actor(tenant))
    assert row.summary == (
        'name="Five off", points_cost=600, '
        'reward_rule={"points_required": 600, "discount_value": 5}'
    )

    assert (await patch(tenant, path, {"active": False})).status_code == 200
    row = await trail.one("reward", "deactivated", key_actor(tenant))
    assert row.summary == "active=false"

    assert (await delete(tenant, path)).status_code == 204
    row = await trail.one("reward", "deleted", key_actor(tenant))
    assert (row.subject_id, row.summary) == (reward["id"], 'name="Five off"')


async def test_earn_rule_changes_are_audited(tenant: Tenant) -> None:
    trail = await Trail(tenant).start()
    response = await tenant.post(RULES, json={"type": "purchase", "points_per_currency_unit": 2})
    assert response.status_code == 201, response.text
    rule = response.json()["data"]
    row = await trail.one("earn_rule", "created", key_actor(tenant))
    assert row.subject_id == rule["id"]
    assert row.summary.startswith('type="purchase", points=0, active=true')
    assert "points_per_currency_unit=2" in row.summary

    response = await patch(tenant, f"{RULES}/{rule['id']}", {"points_per_currency_unit": 3})
    assert response.status_code == 200, response.text
    row = await trail.one("earn_rule", "updated", key_actor(tenant))
    assert row.summary == "points_per_currency_unit=3"


async def test_tier_changes_are_audited(tenant: Tenant) -> None:
    trail = await Trail(tenant).start()
    response = await tenant.post(TIERS, json={"name": "Gold", "threshold": 500})
    assert response.status_code == 201, response.text
    tier = response.json()["data"]
    row = await trail.one("tier", "created", key_actor(tenant))
    assert row.subject_id == tier["id"]
    assert row.summary.startswith('name="Gold", threshold=500, basis="lifetime_points"')

    response = await patch(tenant, f"{TIERS}/{tier['id']}", {"threshold": 400, "multiplier": 1.5})
    assert response.status_code == 200, response.text
    row = await trail.one("tier", "updated", key_actor(tenant))
    assert row.summary == "threshold=400, multiplier=1.5"


async def test_webhook_endpoint_changes_are_audited_without_secrets(tenant: Tenant) -> None:
    trail = await Trail(tenant).start()
    response = await tenant.post(WEBHOOKS, json={"url": HOOK_URL, "description": "CRM"})
    assert response.status_code == 201, response.text
    endpoint = response.json()["data"]
    secrets = [endpoint["secret"]]
    row = await trail.one("webhook_endpoint", "created", key_actor(tenant))
    assert row.subject_id == endpoint["id"]
    assert row.summary == ('url="http://127.0.0.1:9/hook?…", description="CRM", active=true'), (
        row.summary
    )

    path = f"{WEBHOOKS}/{endpoint['id']}"
    response = await patch(tenant, path, {"event_types": ["reward.created"]})
    assert response.status_code == 200, response.text
    row = await trail.one("webhook_endpoint", "updated", key_actor(tenant))
    assert row.summary == 'event_types=["reward.created"]'

    assert (await patch(tenant, path, {"active": False})).status_code == 200
    row = await trail.one("webhook_endpoint", "disabled", key_actor(tenant))
    assert row.summary == 'active=false, disabled_reason="disabled by the merchant"'

    response = await tenant.post(f"{path}/rotate-secret")
    assert response.status_code == 200, response.text
    secrets.append(response.json()["data"]["secret"])
    row = await trail.one("webhook_endpoint", "secret_rotated", key_actor(tenant))
    assert row.subject_id == endpoint["id"]

    assert (await delete(tenant, path)).status_code == 204
    row = await trail.one("webhook_endpoint", "deleted", key_actor(tenant))
    assert row.summary == 'url="http://127.0.0.1:9/hook?…"'

    for row in await changes(tenant):
        for secret in [*secrets, tenant.token, "query-token-not-for-the-trail"]:
            assert secret not in row.summary


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("PATCH", SETTINGS, {"currency": "XYZ"}),
        ("PATCH", SETTINGS, {"default_description": "   "}),
        ("POST", REWARDS, {**FIVE_OFF, "name": "   "}),
        ("POST", REWARDS, {**FIVE_OFF, "points_cost": 0.5}),
        ("POST", RULES, {"type": "purchase"}),
        ("POST", TIERS, {"name": "   ", "threshold": 100}),
        ("POST", WEBHOOKS, {"url": "http://127.0.0.1:9/hook", "event_types": ["no.such"]}),
    ],
)
async def test_a_refused_change_writes_nothing(
    tenant: Tenant, method: str, path: str, body: dict[str, Any]
) -> None:
    trail = await Trail(tenant).start()
    response = await tenant.client.request(method, path, json=body, headers=tenant.headers)
    assert response.status_code == 422, response.text
    await trail.none()


async def test_a_refused_update_of_an_existing_reward_writes_nothing(tenant: Tenant) -> None:
    reward = await create(tenant, FIVE_OFF)
    trail = await Trail(tenant).start()
    response = await patch(tenant, f"{REWARDS}/{reward['id']}", {"reward_rule": {}})
    assert response.status_code == 422, response.text
    await trail.none()


# --- actors other than an API key ------------------------------------------------------


async def test_a_staff_users_change_records_the_user(tenant: Tenant) -> None:
    trail = await Trail(tenant).start()
    data = CreateReward(
        name="Staff pick", reward_type="free_shipping", points_cost=100, reward_rule={}
    )

    async def work(connection: AsyncConnection) -> Any:
        return await rewards_service.create_reward(connection, tenant.merchant_id, data)

    with acting_as(STAFF):
        reward = await tenant.database.transaction(work)
    row = await trail.one("reward", "created", STAFF)
    assert row.subject_id == str(reward.id)


async def test_api_keys_are_audited_by_prefix_never_by_token(tenant: Tenant) -> None:
    trail = await Trail(tenant).start()

    async def create_key(connection: AsyncConnection) -> Any:
        return await auth_service.create_key(
            connection, merchant_id=tenant.merchant_id, scopes="rewards:read", name="Widget"
        )

    with acting_as(STAFF):
        key = await tenant.database.transaction(create_key)
    row = await trail.one("api_key", "created", STAFF)
    assert row.subject_id == key.prefix
    assert row.summary == 'name="Widget", scopes=["rewards:read"], rate_limit=null'

    async def revoke(connection: AsyncConnection) -> Any:
        return await auth_service.revoke_key(connection, key.prefix)

    with acting_as(STAFF):
        await tenant.database.transaction(revoke)
        row = await trail.one("api_key", "revoked", STAFF)
        assert (row.subject_id, row.summary) == (key.prefix, 'name="Widget"')
        await tenant.database.transaction(revoke)  # again: nothing changes
        await trail.none()
    secret_part = key.token.rsplit("_", 1)[1]
    for row in await changes(tenant):
        assert key.token not in row.summary
        assert secret_part not in row.summary


async def in_own_task(call: Coroutine[Any, Any, T]) -> T:
    """Run an API call in a task of its own, as a server runs each request: the key's
    actor stays with it (the in-process transport would leave it set in the test)."""
    return await asyncio.create_task(call)


async def test_the_delivery_worker_disables_an_endpoint_as_system(
    tenant: Tenant, settings: Settings, unique_id: str
) -> None:
    with running_receiver() as receiver:
        receiver.answer = lambda _request: Answer(410, b"gone")
        response = await in_own_task(tenant.post(WEBHOOKS, json={"url": receiver.url()}))
        assert response.status_code == 201, response.text
        endpoint_id = response.json()["data"]["id"]
        await in_own_task(tenant.enrol(unique_id))
        trail = await Trail(tenant).start()
        assert current_actor() == SYSTEM  # as in the worker, where nobody set an actor
        deliverer = Deliverer(tenant.database, settings)
        try:
            await deliverer.run_once()
        finally:
            await deliverer.stop()
        assert len(receiver.requests) == 1
    row = await trail.one("webhook_endpoint", "disabled", SYSTEM)
    assert row.subject_id == endpoint_id
    assert row.summary == 'active=false, disabled_reason="the endpoint answered 410 Gone"'


@pytest.fixture
def cli(database_url: str, monkeypatch: pytest.MonkeyPatch) -> CliRunner:
    monkeypatch.setenv("LOYALTY_DATABASE_URL", database_url)
    monkeypatch.setenv("LOYALTY_LOG_LEVEL", "warning")
    return CliRunner()


async def invoke(cli: CliRunner, *args: str, stdin: str | None = None) -> Any:
    result = await asyncio.to_thread(cli.invoke, cli_app, list(args), input=stdin)
    assert result.exit_code == 0, result.output
    return result


async def test_the_command_line_acts_as_system(
    cli: CliRunner, tenant: Tenant, unique_id: str
) -> None:
    trail = await Trail(tenant).start()
    merchant = str(tenant.merchant_id)
    email = f"owner-{unique_id}@example.com"
    result = await invoke(
        cli, "users", "create", "--merchant", merchant, "--email", email,
        "--role", "support", "--password-stdin", "--json",
        stdin=PASSWORD + "\n",
    )  # fmt: skip
    user = json.loads(result.stdout)
    row = await trail.one("user", "created", SYSTEM)
    assert row.subject_id == user["id"]
    assert row.summary == f'email="{email}", role="support"'
    assert PASSWORD not in row.summary

    await invoke(cli, "users", "disable", email, "--merchant", merchant)
    row = await trail.one("user", "disabled", SYSTEM)
    assert (row.subject_id, row.summary) == (user["id"], f'email="{email}"')
    await invoke(cli, "users", "disable", email, "--merchant", merchant)  # again: no change
    await trail.none()

    args = ("keys", "create", "--merchant", merchant, "--scopes", "all", "--json")
    key = json.loads((await invoke(cli, *args)).stdout)
    row = await trail.one("api_key", "created", SYSTEM)
    assert row.subject_id == key["prefix"]
    assert key["token"] not in row.summary
    await invoke(cli, "keys", "revoke", key["prefix"], "--json")
    await trail.one("api_key", "revoked", SYSTEM)


# --- reading the trail and summarising -------------------------------------------------


async def test_changes_are_listed_newest_first_a_page_at_a_time(tenant: Tenant) -> None:
    for name in ("One", "Two", "Three"):
        await create(tenant, {**FIVE_OFF, "name": name})
    assert (await patch(tenant, SETTINGS, {"points_decimals": 1})).status_code == 200
    listed: list[audit.ConfigChange] = []
    cursor: str | None = None
    async with tenant.database.read() as connection:
        while True:
            page = await audit.list_changes(connection, tenant.merchant_id, limit=2, cursor=cursor)
            assert len(page.data) <= 2
            listed += page.data
            cursor = page.next_cursor
            if cursor is None:
                break
        rewards = await audit.list_changes(
            connection, tenant.merchant_id, limit=10, subject_type="reward"
        )
    # The tenant's own key came first, made by the fixture (as system).
    assert [(change.subject_type, change.action) for change in listed] == [
        ("program_settings", "updated"), ("reward", "created"), ("reward", "created"),
        ("reward", "created"), ("api_key", "created"),
    ]  # fmt: skip
    assert [change.id for change in listed] == sorted(
        (change.id for change in listed), reverse=True
    )
    assert [change.actor for change in listed] == [key_actor(tenant)] * 4 + [SYSTEM]
    assert listed[-1].subject_id == token_prefix(tenant.token)
    assert [change.summary.split(",")[0] for change in rewards.data] == [
        'name="Three"', 'name="Two"', 'name="One"',
    ]  # fmt: skip
    assert rewards.next_cursor is None


async def test_a_bad_cursor_or_limit_is_refused(tenant: Tenant) -> None:
    async with tenant.database.read() as connection:
        for limit, cursor in ((20, "nonsense"), (20, audit.encode_cursor(tenant.merchant_id)[1:])):
            with pytest.raises(ValidationFailedError) as refused:
                await audit.list_changes(connection, tenant.merchant_id, limit=limit, cursor=cursor)
            assert refused.value.to_body()["error"]["details"][0]["field"] == "cursor"
        for limit in (0, 101):
            with pytest.raises(ValidationFailedError) as refused:
                await audit.list_changes(connection, tenant.merchant_id, limit=limit)
            assert refused.value.to_body()["error"]["details"][0]["field"] == "limit"


def test_describe_names_fields_and_new_values() -> None:
    assert audit.describe({"name": "Free shipping", "points_cost": 500.0}) == (
        'name="Free shipping", points_cost=500'
    )
    assert audit.describe(
        {"active": False, "expiry_days": None, "multiplier": 1.25, "scopes": ["a", "b"]}
    ) == ('active=false, expiry_days=null, multiplier=1.25, scopes=["a", "b"]')
    assert audit.describe({"rule": {"discount_value": 5, "product_id": None}}) == (
        'rule={"discount_value": 5, "product_id": null}'
    )
    hidden = audit.describe({"secret": "whsec_abc", "api_token": "lk_x", "password": "pw"})
    assert hidden == "secret=[hidden], api_token=[hidden], password=[hidden]"
    long = audit.describe({"description": "x" * 1000})
    assert len(long) < 250
    assert long.endswith('…"')
    many = audit.describe({f"field_{n}": "y" * 150 for n in range(100)})
    assert len(many) == audit.SUMMARY_CHARS_MAX
    assert many.endswith("…")


def test_audited_urls_keep_no_credentials() -> None:
    assert audited_url("https://user:pass@example.com/hooks?key=abc#x") == (
        "https://example.com/hooks?…"
    )
    assert audited_url("https://hooks.example.com/services/T01/B02/abcdefghijklmnopqrstuvwx") == (
        "https://hooks.example.com/services/T01/B02/abcd…"
    )
