"""The admin's configuration pages (ADMIN.md, "Rewards", "Earn rules", "Tiers",
"Programme settings", "API keys" and the audit trail): every change goes through
the API's services, so it is checked back through the API with a key, and in
the audit trail with the staff member as its actor."""

from __future__ import annotations

import html
import re
import uuid
from typing import Any

import httpx
import pytest

from loyalty.admin.pages import audit as audit_page
from loyalty.audit import service as audit_service
from loyalty.auth import service as auth_service
from tests.support.browser import AdminClient, Shop, create_shop, csrf_of
from tests.support.tenant import Tenant, create_key

REWARDS = "/admin/rewards"
EARN_RULES = "/admin/earn-rules"
TIERS = "/admin/tiers"
SETTINGS = "/admin/settings"
API_KEYS = "/admin/api-keys"
AUDIT = "/admin/audit"
PAGES = (
    REWARDS,
    f"{REWARDS}/new",
    EARN_RULES,
    f"{EARN_RULES}/new",
    TIERS,
    SETTINGS,
    API_KEYS,
    AUDIT,
)
TOKEN = re.compile(r'id="token" type="text" value="([^"]+)"')


@pytest.fixture
async def api(shop: Shop, client: httpx.AsyncClient) -> Tenant:
    """The shop's API, to check what the pages did."""
    token = await create_key(shop.database, shop.merchant_id)
    return Tenant(shop.merchant_id, token, client, shop.database)


@pytest.fixture
async def other_shop(shop: Shop, unique_id: str, client: httpx.AsyncClient) -> Tenant:
    """Another merchant, with its API."""
    other = await create_shop(shop.database, f"other-{unique_id}", "Other shop")
    token = await create_key(shop.database, other.merchant_id)
    return Tenant(other.merchant_id, token, client, shop.database)


def field_error(page: str, name: str) -> str | None:
    """The error shown under the input ``name`` (tied to it by aria-describedby)."""
    match = re.search(rf'<p class="field-error" id="f-{name}-error">([^<]*)</p>', page)
    if match is None:
        return None
    assert re.search(rf'id="f-{name}"[^>]*aria-describedby="[^"]*f-{name}-error', page), name
    return html.unescape(match.group(1))


def value_of(page: str, name: str) -> str | None:
    """The value an input shows."""
    match = re.search(rf'<input id="f-{name}" name="{name}" type="text" value="([^"]*)"', page)
    return None if match is None else html.unescape(match.group(1))


async def data(api: Tenant, path: str) -> Any:
    response = await api.get(path)
    assert response.status_code == 200, response.text
    return response.json()["data"]


async def changes(shop: Shop, subject_type: str | None = None) -> list[audit_service.ConfigChange]:
    """The shop's configuration changes, newest first."""
    async with shop.database.read() as connection:
        page = await audit_service.list_changes(
            connection, shop.merchant_id, limit=100, subject_type=subject_type
        )
    return page.data


async def post(admin: AdminClient, path: str, form: dict[str, Any], page: str) -> httpx.Response:
    """Submit ``form`` to ``path`` with the CSRF token of ``page``."""
    return await admin.client.post(path, data={"_csrf": await admin.csrf(page), **form})


def reward_form(**overrides: str) -> dict[str, str]:
    return {
        "name": "Five off",
        "reward_type": "fixed_discount",
        "discount_value": "5",
        "points_cost": "500",
        "active": "true",
        **overrides,
    }


async def add_reward(admin: AdminClient, **overrides: str) -> httpx.Response:
    return await post(admin, REWARDS, reward_form(**overrides), f"{REWARDS}/new")


async def rewards(api: Tenant) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = await data(api, "/api/v1/rewards?limit=100")
    return found


# --- every page ------------------------------------------------------------------------


@pytest.mark.parametrize("path", PAGES)
async def test_each_page_renders_for_an_admin(signed_in: AdminClient, path: str) -> None:
    response = await signed_in.get(path)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/html")
    assert 'class="page-config"' in response.text
    # Every input of the page's forms has a label.
    for input_id in re.findall(r'<(?:input|select|textarea) id="([^"]+)"', response.text):
        assert f'<label for="{input_id}"' in response.text, input_id


async def test_support_staff_get_the_403_page_everywhere(
    admin_client: AdminClient, shop: Shop, unique_id: str
) -> None:
    email = f"agent-{unique_id}@example.com"
    await shop.add_user(email, role="support")
    await admin_client.login(email)
    for path in PAGES:
        response = await admin_client.get(path)
        assert response.status_code == 403, path
        assert "Not allowed" in response.text
    token = csrf_of((await admin_client.get("/admin/customers")).text)
    refused = await admin_client.post(REWARDS, {"_csrf": token, **reward_form()})
    assert refused.status_code == 403


@pytest.mark.parametrize(
    ("path", "form"),
    [
        (REWARDS, reward_form()),
        (EARN_RULES, {"type": "newsletter", "points": "50", "active": "true"}),
        (TIERS, {"name": "Gold", "threshold": "1000", "multiplier": "2"}),
        (SETTINGS, {"point_value": "0.5", "currency": "USD", "expiry_policy": "none"}),
        (f"{SETTINGS}/preview", {"expiry_policy": "none"}),
        (API_KEYS, {"name": "Forged", "scopes": "rewards:read"}),
    ],
)
@pytest.mark.parametrize("token", [None, "f" * 64])
async def test_a_change_without_a_valid_csrf_token_is_refused(
    signed_in: AdminClient,
    shop: Shop,
    api: Tenant,
    path: str,
    form: dict[str, str],
    token: str | None,
) -> None:
    before = await changes(shop)
    settings = await data(api, "/api/v1/settings/program")
    sent = form if token is None else {**form, "_csrf": token}
    response = await signed_in.post(path, sent)
    assert response.status_code == 403
    assert "nothing was changed" in response.text
    assert await changes(shop) == before
    assert await data(api, "/api/v1/settings/program") == settings
    assert await rewards(api) == []


# --- rewards ---------------------------------------------------------------------------


async def test_a_reward_is_added_edited_deactivated_and_deleted(
    signed_in: AdminClient, shop: Shop, api: Tenant
) -> None:
    added = await add_reward(signed_in, description="On any order", per_customer_limit="2")
    assert added.status_code == 303, added.text
    page = await signed_in.get(added.headers["location"])
    assert "Reward “Five off” added." in page.text
    assert "Five off" in page.text
    assert "5 USD off" in page.text
    (reward,) = await rewards(api)
    assert reward["name"] == "Five off"
    assert reward["points_cost"] == 500
    assert reward["reward_rule"] == {"points_required": 500, "discount_value": 5}
    assert reward["description"] == "On any order"
    assert reward["per_customer_limit"] == 2
    assert reward["active"] is True
    path = f"{REWARDS}/{reward['id']}"

    edit = await signed_in.get(path)
    assert value_of(edit.text, "name") == "Five off"
    assert value_of(edit.text, "discount_value") == "5"
    assert value_of(edit.text, "per_customer_limit") == "2"
    edited = await post(
        signed_in,
        path,
        reward_form(
            name="Ten percent",
            reward_type="percentage_discount",
            discount_percentage="10",
            points_cost="750",
            description="",
            per_customer_limit="",
            code_validity_days="30",
        ),
        path,
    )
    assert edited.status_code == 303, edited.text
    (reward,) = await rewards(api)
    assert reward["name"] == "Ten percent"
    assert reward["reward_type"] == "percentage_discount"
    assert reward["reward_rule"] == {"points_required": 750, "discount_percentage": 10}
    assert reward["description"] is None  # an emptied field is cleared
    assert reward["per_customer_limit"] is None
    assert reward["code_validity_days"] == 30

    off = await post(signed_in, f"{path}/active", {"active": "false"}, REWARDS)
    assert off.status_code == 303
    assert (await rewards(api))[0]["active"] is False
    listed = await signed_in.get(REWARDS)
    assert "Reactivate" in listed.text
    assert "Inactive" in listed.text
    on = await post(signed_in, f"{path}/active", {"active": "true"}, REWARDS)
    assert on.status_code == 303
    assert (await rewards(api))[0]["active"] is True

    confirm = await signed_in.get(f"{path}/delete")
    assert confirm.status_code == 200
    assert "Delete “Ten percent”?" in confirm.text
    assert await rewards(api) != []  # asking deletes nothing
    token = await signed_in.csrf(f"{path}/delete")
    deleted = await signed_in.post(f"{path}/delete", {"_csrf": token})
    assert deleted.status_code == 303
    again = await signed_in.post(f"{path}/delete", {"_csrf": token})  # a double click
    assert again.headers["location"] == deleted.headers["location"]
    assert await rewards(api) == []
    assert (await signed_in.get(path)).status_code == 404

    trail = await changes(shop, "reward")
    assert [change.action for change in trail] == [
        "deleted",
        "activated",
        "deactivated",
        "updated",
        "created",
    ]
    assert {change.actor for change in trail} == {f"user:{shop.admin_email}"}
    assert all(change.subject_id == reward["id"] for change in trail)
    log = await signed_in.get(AUDIT)
    assert log.text.count(f"user:{shop.admin_email}") >= len(trail)
    assert "deactivated" in log.text
    assert 'name="Five off"' in html.unescape(log.text)


@pytest.mark.parametrize(
    ("reward_type", "fields", "rule"),
    [
        ("fixed_discount", {"discount_value": "2.5"}, {"discount_value": 2.5}),
        ("percentage_discount", {"discount_percentage": "15"}, {"discount_percentage": 15}),
        ("free_shipping", {"max_shipping_amount": ""}, {}),
        ("free_shipping", {"max_shipping_amount": "9.99"}, {"max_shipping_amount": 9.99}),
        ("free_product", {"product_id": "sku-1", "variant_id": ""}, {"product_id": "sku-1"}),
        ("store_credit", {"credit_amount": "20"}, {"credit_amount": 20}),
    ],
)
async def test_each_reward_type_has_its_rule_fields(
    signed_in: AdminClient,
    api: Tenant,
    reward_type: str,
    fields: dict[str, str],
    rule: dict[str, Any],
) -> None:
    fragment = await signed_in.get(f"{REWARDS}/rule-fields", params={"reward_type": reward_type})
    assert fragment.status_code == 200
    assert fragment.text.lstrip().startswith('<fieldset id="rule-fields"')
    for name in fields:
        assert f'name="{name}"' in fragment.text
    response = await add_reward(signed_in, reward_type=reward_type, points_cost="100", **fields)
    assert response.status_code == 303, response.text
    (reward,) = await rewards(api)
    assert reward["reward_type"] == reward_type
    assert reward["reward_rule"] == {"points_required": 100, **rule}


async def test_without_javascript_the_type_button_shows_the_types_fields(
    signed_in: AdminClient, api: Tenant
) -> None:
    page = await signed_in.get(f"{REWARDS}/new")
    assert '<button type="submit" name="intent" value="refresh"' in page.text
    assert 'hx-get="/admin/rewards/rule-fields"' in page.text
    typed = reward_form(reward_type="free_product", intent="refresh", name="A mug")
    response = await post(signed_in, REWARDS, typed, f"{REWARDS}/new")
    assert response.status_code == 200
    assert 'name="product_id"' in response.text
    assert 'name="discount_value"' not in response.text
    assert value_of(response.text, "name") == "A mug"  # what was typed is kept
    assert await rewards(api) == []


@pytest.mark.parametrize(
    ("overrides", "errors"),
    [
        (
            {"name": "", "points_cost": "-5", "code_validity_days": "2.5"},
            {
                "name": "Is required.",
                "points_cost": "Must be more than 0.",
                "code_validity_days": "Must be a whole number.",
            },
        ),
        ({"points_cost": "lots"}, {"points_cost": "Must be a number."}),
        ({"per_customer_limit": "0"}, {"per_customer_limit": "Must be at least 1."}),
        ({"name": "x" * 201}, {"name": "Must be at most 200 characters."}),
        ({"discount_value": "abc"}, {"discount_value": "Must be a number."}),
        ({"discount_value": ""}, {"discount_value": "Is required."}),
        ({"discount_value": "1.234"}, {"discount_value": "Money has at most 2 decimal places."}),
        ({"points_cost": "10.5"},
         {"points_cost": "Must be a whole number (this programme has no decimals)."}),
        (
            {"reward_type": "free_product", "discount_value": ""},
            {"product_id": "Give a product id, a variant id or both."},
        ),
    ],
)  # fmt: skip
async def test_invalid_reward_input_shows_next_to_its_field(
    signed_in: AdminClient,
    shop: Shop,
    api: Tenant,
    overrides: dict[str, str],
    errors: dict[str, str],
) -> None:
    form = reward_form(description="Typed <b>text</b>", **overrides)
    response = await add_reward(signed_in, **form)
    assert response.status_code == 422, response.text
    assert "Traceback" not in response.text
    assert '{"error"' not in response.text
    for name, message in errors.items():
        assert field_error(response.text, name) == message
    assert "Typed &lt;b&gt;text&lt;/b&gt;</textarea>" in response.text  # kept, escaped
    if "name" not in errors:
        assert value_of(response.text, "name") == form["name"]
    assert await rewards(api) == []
    assert await changes(shop, "reward") == []


KEY = re.compile(r'name="idempotency_key" value="([^"]+)"')


async def test_a_double_submitted_add_form_creates_once(
    signed_in: AdminClient, shop: Shop, api: Tenant
) -> None:
    page = await signed_in.get(f"{REWARDS}/new")
    key = KEY.search(page.text)
    assert key is not None
    form = {"_csrf": csrf_of(page.text), "idempotency_key": key.group(1), **reward_form()}
    first = await signed_in.post(REWARDS, form)
    second = await signed_in.post(REWARDS, form)
    assert first.status_code == second.status_code == 303
    assert first.headers["location"] == second.headers["location"]
    assert [reward["name"] for reward in await rewards(api)] == ["Five off"]
    assert len(await changes(shop, "reward")) == 1

    tiers = await signed_in.get(TIERS)
    tier_key = KEY.search(tiers.text)
    assert tier_key is not None
    tier = {"_csrf": csrf_of(tiers.text), "idempotency_key": tier_key.group(1)}
    tier |= {"name": "Gold", "threshold": "10", "multiplier": "1"}
    assert (await signed_in.post(TIERS, tier)).status_code == 303
    assert (await signed_in.post(TIERS, tier)).status_code == 303  # not "already named"
    assert [tier["name"] for tier in await data(api, "/api/v1/tiers")] == ["Gold"]
    # A refused form comes back with a new key: corrected, it is a new submission.
    clash = {**tier, "threshold": "20"}
    refused = await signed_in.post(TIERS, {**clash, "idempotency_key": str(uuid.uuid4())})
    assert refused.status_code == 422
    fresh = KEY.search(refused.text)
    assert fresh is not None
    assert fresh.group(1) != tier_key.group(1)


async def test_an_invalid_edit_keeps_what_was_typed_and_changes_nothing(
    signed_in: AdminClient, api: Tenant
) -> None:
    await add_reward(signed_in)
    (reward,) = await rewards(api)
    path = f"{REWARDS}/{reward['id']}"
    form = reward_form(name="Renamed", points_cost="0")
    response = await post(signed_in, path, form, path)
    assert response.status_code == 422
    assert field_error(response.text, "points_cost") == "Must be more than 0."
    assert value_of(response.text, "name") == "Renamed"
    assert value_of(response.text, "points_cost") == "0"
    assert await rewards(api) == [reward]


async def test_another_merchants_reward_is_the_404_page(
    signed_in: AdminClient, other_shop: Tenant
) -> None:
    created = await other_shop.post(
        "/api/v1/rewards",
        json={
            "name": "Theirs",
            "reward_type": "free_shipping",
            "points_cost": 10,
            "reward_rule": {},
        },
    )
    assert created.status_code == 201, created.text
    path = f"{REWARDS}/{created.json()['data']['id']}"
    token = await signed_in.csrf(REWARDS)
    for response in [
        await signed_in.get(path),
        await signed_in.get(f"{path}/delete"),
        await signed_in.post(path, {"_csrf": token, **reward_form()}),
        await signed_in.post(f"{path}/active", {"_csrf": token, "active": "false"}),
        await signed_in.post(f"{path}/delete", {"_csrf": token}),
        await signed_in.get(f"{REWARDS}/{uuid.uuid4()}"),
    ]:
        assert response.status_code == 404
        assert "Page not found" in response.text
    (theirs,) = await data(other_shop, "/api/v1/rewards")
    assert theirs["name"] == "Theirs"
    assert theirs["active"] is True


# --- earn rules ------------------------------------------------------------------------


async def earn_rules(api: Tenant) -> dict[str, dict[str, Any]]:
    return {rule["type"]: rule for rule in await data(api, "/api/v1/earn-rules")}


async def test_earn_rules_are_added_edited_and_deactivated(
    signed_in: AdminClient, shop: Shop, api: Tenant
) -> None:
    purchase = {
        "type": "purchase",
        "points_per_currency_unit": "2",
        "rounding": "nearest",
        "points": "0",
        "min_order_total": "",
        "pending_days": "14",
        "active": "true",
    }
    added = await post(signed_in, EARN_RULES, purchase, f"{EARN_RULES}/new")
    assert added.status_code == 303, added.text
    newsletter = {"type": "newsletter", "points": "50", "active": "true"}
    assert (await post(signed_in, EARN_RULES, newsletter, EARN_RULES)).status_code == 303
    rules = await earn_rules(api)
    assert rules["purchase"]["points_per_currency_unit"] == 2
    assert rules["purchase"]["rounding"] == "nearest"
    assert rules["purchase"]["pending_days"] == 14
    assert rules["newsletter"]["points"] == 50
    assert rules["newsletter"]["max_per_customer"] == 1
    listed = await signed_in.get(EARN_RULES)
    assert "2 points per USD spent; held 14 days" in listed.text
    assert "50 points; once per customer" in listed.text
    # The form offers only the kinds without a rule.
    form = await signed_in.get(f"{EARN_RULES}/new")
    assert '<option value="purchase"' not in form.text
    assert '<option value="birthday"' in form.text

    path = f"{EARN_RULES}/{rules['purchase']['id']}"
    edit = await signed_in.get(path)
    assert value_of(edit.text, "points_per_currency_unit") == "2"
    changed = {**purchase, "points_per_currency_unit": "3", "pending_days": ""}
    del changed["type"]
    assert (await post(signed_in, path, changed, path)).status_code == 303
    rules = await earn_rules(api)
    assert rules["purchase"]["points_per_currency_unit"] == 3
    assert rules["purchase"]["pending_days"] is None

    off = await post(signed_in, f"{path}/active", {"active": "false"}, EARN_RULES)
    assert off.status_code == 303
    assert (await earn_rules(api))["purchase"]["active"] is False

    trail = await changes(shop, "earn_rule")
    assert [change.action for change in trail] == ["deactivated", "updated", "created", "created"]
    assert {change.actor for change in trail} == {f"user:{shop.admin_email}"}


async def test_the_kind_of_an_earn_rule_chooses_its_inputs(signed_in: AdminClient) -> None:
    expected = {
        "purchase": ["points_per_currency_unit", "rounding", "points", "pending_days"],
        "birthday": ["points"],
        "referral": ["points", "referee_points", "max_per_customer", "period_days"],
        "sms": ["points", "max_per_customer", "period_days"],
    }
    for rule_type, names in expected.items():
        fragment = await signed_in.get(f"{EARN_RULES}/fields", params={"type": rule_type})
        inputs = re.findall(r'name="([a-z_]+)"', fragment.text)
        assert set(inputs) >= set(names), rule_type
        if rule_type != "purchase":
            assert "points_per_currency_unit" not in inputs
    refreshed = await post(
        signed_in, EARN_RULES, {"type": "referral", "intent": "refresh"}, EARN_RULES
    )
    assert refreshed.status_code == 200
    assert 'name="referee_points"' in refreshed.text


@pytest.mark.parametrize(
    ("form", "name", "message"),
    [
        ({"type": "newsletter", "points": "0"}, "points",
         "Must be above 0 for a newsletter rule."),
        ({"type": "purchase", "points_per_currency_unit": "", "rounding": "down"},
         "points_per_currency_unit", "Is required for a purchase rule."),
        ({"type": "purchase", "points_per_currency_unit": "-1", "rounding": "down"},
         "points_per_currency_unit", "Must be more than 0."),
        ({"type": "sms", "points": "5", "max_per_customer": "0"}, "max_per_customer",
         "Must be at least 1."),
        ({"type": "referral", "points": "10", "referee_points": "-1"}, "referee_points",
         "Must be at least 0."),
        ({"type": "sms", "points": "5", "max_per_customer": "many"}, "max_per_customer",
         "Must be a number."),
    ],
)  # fmt: skip
async def test_invalid_earn_rule_input_shows_next_to_its_field(
    signed_in: AdminClient, api: Tenant, form: dict[str, str], name: str, message: str
) -> None:
    response = await post(signed_in, EARN_RULES, {**form, "active": "true"}, EARN_RULES)
    assert response.status_code == 422, response.text
    assert field_error(response.text, name) == message
    assert f'<option value="{form["type"]}" selected>' in response.text
    assert await earn_rules(api) == {}


async def test_a_second_rule_of_a_kind_is_refused_next_to_the_kind(
    signed_in: AdminClient, api: Tenant
) -> None:
    await post(signed_in, EARN_RULES, {"type": "birthday", "points": "100"}, EARN_RULES)
    again = await post(signed_in, EARN_RULES, {"type": "birthday", "points": "7"}, EARN_RULES)
    assert again.status_code == 422
    assert field_error(again.text, "type") == (
        "The programme already has a birthday rule; change it instead."
    )
    assert (await earn_rules(api))["birthday"]["points"] == 100


async def test_another_merchants_earn_rule_is_the_404_page(
    signed_in: AdminClient, other_shop: Tenant
) -> None:
    created = await other_shop.post("/api/v1/earn-rules", json={"type": "newsletter", "points": 10})
    assert created.status_code == 201, created.text
    path = f"{EARN_RULES}/{created.json()['data']['id']}"
    token = await signed_in.csrf(EARN_RULES)
    for response in [
        await signed_in.get(path),
        await signed_in.post(path, {"_csrf": token, "points": "99"}),
        await signed_in.post(f"{path}/active", {"_csrf": token, "active": "false"}),
    ]:
        assert response.status_code == 404
    (theirs,) = await data(other_shop, "/api/v1/earn-rules")
    assert theirs["points"] == 10
    assert theirs["active"] is True


# --- tiers -----------------------------------------------------------------------------


async def test_tiers_are_added_edited_and_share_the_basis(
    signed_in: AdminClient, shop: Shop, api: Tenant
) -> None:
    empty = await signed_in.get(TIERS)
    assert 'name="basis"' in empty.text  # the first tier sets the programme's basis
    first = {
        "name": "Silver",
        "basis": "amount_spent",
        "window_days": "365",
        "threshold": "100",
        "multiplier": "1.5",
        "retention_days": "",
    }
    assert (await post(signed_in, TIERS, first, TIERS)).status_code == 303
    second = {"name": "Gold", "threshold": "500", "multiplier": "2", "retention_days": "30"}
    assert (await post(signed_in, TIERS, second, TIERS)).status_code == 303
    silver, gold = await data(api, "/api/v1/tiers")
    assert (silver["name"], silver["basis"], silver["window_days"]) == (
        "Silver",
        "amount_spent",
        365,
    )
    assert (gold["name"], gold["threshold"], gold["multiplier"]) == ("Gold", 500, 2)
    assert gold["retention_days"] == 30
    assert gold["basis"] == "amount_spent"

    path = f"{TIERS}/{gold['id']}"
    edit = await signed_in.get(path)
    assert value_of(edit.text, "threshold") == "500"
    form = {"name": "Gold", "threshold": "750", "multiplier": "2.5", "retention_days": ""}
    assert (await post(signed_in, path, form, path)).status_code == 303
    basis = {"basis": "lifetime_points", "window_days": ""}
    assert (await post(signed_in, f"{TIERS}/basis", basis, TIERS)).status_code == 303
    silver, gold = await data(api, "/api/v1/tiers")
    assert (gold["threshold"], gold["multiplier"], gold["retention_days"]) == (750, 2.5, None)
    assert {silver["basis"], gold["basis"]} == {"lifetime_points"}
    assert {silver["window_days"], gold["window_days"]} == {None}

    trail = await changes(shop, "tier")
    assert [change.action for change in trail] == ["updated", "updated", "created", "created"]
    assert {change.actor for change in trail} == {f"user:{shop.admin_email}"}
    assert 'basis="lifetime_points"' in trail[0].summary


@pytest.mark.parametrize(
    ("form", "name", "message"),
    [
        ({"name": "Silver", "threshold": "5", "multiplier": "1"}, "name",
         "Another tier is already named 'Silver'."),
        ({"name": "Other", "threshold": "100", "multiplier": "1"}, "threshold",
         "Another tier already has this threshold."),
        ({"name": "Other", "threshold": "5", "multiplier": "20"}, "multiplier",
         "Must be at most 10."),
        ({"name": "", "threshold": "", "multiplier": "1"}, "threshold", "Is required."),
    ],
)  # fmt: skip
async def test_invalid_tier_input_shows_next_to_its_field(
    signed_in: AdminClient,
    api: Tenant,
    form: dict[str, str],
    name: str,
    message: str,
) -> None:
    silver = {"name": "Silver", "threshold": "100", "multiplier": "1"}
    assert (await post(signed_in, TIERS, silver, TIERS)).status_code == 303
    response = await post(signed_in, TIERS, form, TIERS)
    assert response.status_code == 422
    assert field_error(response.text, name) == message
    assert value_of(response.text, "multiplier") == form["multiplier"]
    assert [tier["name"] for tier in await data(api, "/api/v1/tiers")] == ["Silver"]


async def test_another_merchants_tier_is_the_404_page(
    signed_in: AdminClient, other_shop: Tenant
) -> None:
    created = await other_shop.post("/api/v1/tiers", json={"name": "Theirs", "threshold": 10})
    assert created.status_code == 201, created.text
    path = f"{TIERS}/{created.json()['data']['id']}"
    token = await signed_in.csrf(TIERS)
    get_page = await signed_in.get(path)
    changed = await signed_in.post(
        path, {"_csrf": token, "name": "Mine", "threshold": "1", "multiplier": "1"}
    )
    assert (get_page.status_code, changed.status_code) == (404, 404)
    (theirs,) = await data(other_shop, "/api/v1/tiers")
    assert theirs["name"] == "Theirs"


# --- settings --------------------------------------------------------------------------


def settings_form(**overrides: str) -> dict[str, str]:
    return {
        "points_decimals": "0",
        "default_description": "Points",
        "discount_code_prefix": "",
        "currency": "USD",
        "point_value": "0.01",
        "expiry_policy": "none",
        "expiry_days": "",
        **overrides,
    }


async def test_the_settings_form_shows_the_saved_settings(
    signed_in: AdminClient, api: Tenant
) -> None:
    saved = await data(api, "/api/v1/settings/program")
    page = await signed_in.get(SETTINGS)
    assert value_of(page.text, "point_value") == "0.01"
    assert value_of(page.text, "currency") == saved["currency"]
    assert value_of(page.text, "default_description") == saved["default_description"]
    assert '<option value="none" selected>' in page.text
    assert 'href="/admin/audit"' in page.text  # the audit log is linked from here
    assert 'hx-post="/admin/settings/preview"' in page.text
    assert 'hx-trigger="change"' in page.text
    assert 'formaction="/admin/settings/preview"' in page.text  # without JavaScript


async def test_the_expiry_preview_shows_figures_before_saving(
    signed_in: AdminClient, shop: Shop, api: Tenant, unique_id: str
) -> None:
    for number, points in enumerate((100, 250)):
        customer = f"c-{unique_id}-{number}"
        await api.enrol(customer)
        adjusted = await api.adjust(customer, points)
        assert adjusted.status_code == 201, adjusted.text
    saved = await data(api, "/api/v1/settings/program")
    typed = settings_form(
        expiry_policy="inactivity",
        expiry_days="30",
        default_description=saved["default_description"],
    )
    token = await signed_in.csrf(SETTINGS)
    fragment = await signed_in.post(
        f"{SETTINGS}/preview",
        {"_csrf": token, **typed},
        headers={"HX-Request": "true", "X-CSRF-Token": token},
    )
    assert fragment.status_code == 200, fragment.text
    assert "<h1>" not in fragment.text  # the preview alone
    assert 'id="f-expiry_days-error" hx-swap-oob="true"></p>' in fragment.text
    figures = re.sub(r"\s+", " ", re.sub(r"<[^>]+>", "", fragment.text))
    assert "350 points of 2 customers would start to expire" in figures
    assert "0 points of 0 customers would no longer expire" in figures
    assert "First expiry" in figures
    # Without JavaScript: the whole page, the form as typed, the same figures.
    page = await signed_in.post(f"{SETTINGS}/preview", {"_csrf": token, **typed})
    assert page.status_code == 200
    assert "<h1>Programme settings</h1>" in page.text
    assert value_of(page.text, "expiry_days") == "30"
    assert '<option value="inactivity" selected>' in page.text
    assert '350</span> points of <span class="figure-value">2</span> customers' in page.text
    # Nothing was saved.
    assert await data(api, "/api/v1/settings/program") == saved
    assert await changes(shop, "program_settings") == []

    same = await signed_in.post(f"{SETTINGS}/preview", {"_csrf": token, **settings_form()})
    assert "This is the current policy: saving it changes nothing." in same.text


async def test_an_invalid_expiry_preview_shows_next_to_the_days(
    signed_in: AdminClient,
) -> None:
    token = await signed_in.csrf(SETTINGS)
    response = await signed_in.post(
        f"{SETTINGS}/preview",
        {"_csrf": token, **settings_form(expiry_policy="fixed", expiry_days="")},
        headers={"HX-Request": "true", "X-CSRF-Token": token},
    )
    assert response.status_code == 422
    assert "<h1>" not in response.text
    assert (
        '<p class="field-error" id="f-expiry_days-error" hx-swap-oob="true">'
        "Is required when the expiry policy is fixed.</p>"
    ) in response.text
    # Without JavaScript: the whole page, the error next to the days.
    page = await signed_in.post(
        f"{SETTINGS}/preview",
        {"_csrf": token, **settings_form(expiry_policy="fixed", expiry_days="")},
    )
    assert page.status_code == 422
    assert field_error(page.text, "expiry_days") == "Is required when the expiry policy is fixed."
    assert '<option value="fixed" selected>' in page.text


async def test_saving_the_settings_is_seen_by_the_api_and_the_audit_trail(
    signed_in: AdminClient, shop: Shop, api: Tenant
) -> None:
    saved = await data(api, "/api/v1/settings/program")
    form = settings_form(
        point_value="0.02",
        default_description=saved["default_description"],
        discount_code_prefix="VIP",
        expiry_policy="fixed",
        expiry_days="365",
    )
    response = await post(signed_in, SETTINGS, form, SETTINGS)
    assert response.status_code == 303, response.text
    page = await signed_in.get(response.headers["location"])
    assert "Settings saved" in page.text
    assert value_of(page.text, "point_value") == "0.02"
    now = await data(api, "/api/v1/settings/program")
    assert now["point_value"] == 0.02
    assert now["discount_code_prefix"] == "VIP"
    assert (now["expiry_policy"], now["expiry_days"]) == ("fixed", 365)
    (change,) = await changes(shop, "program_settings")
    assert change.actor == f"user:{shop.admin_email}"
    assert "point_value=0.02" in change.summary
    assert "points_decimals" not in change.summary  # only what changed
    log = await signed_in.get(f"{AUDIT}?subject=program_settings")
    assert "point_value=0.02" in log.text
    assert f"user:{shop.admin_email}" in log.text

    again = await post(signed_in, SETTINGS, form, SETTINGS)
    assert "Nothing to save" in (await signed_in.get(again.headers["location"])).text
    assert len(await changes(shop, "program_settings")) == 1


@pytest.mark.parametrize(
    ("overrides", "name", "message"),
    [
        ({"point_value": "abc"}, "point_value", "Must be a number."),
        ({"point_value": "0.0000001"}, "point_value", "May have at most 6 decimal places."),
        ({"point_value": "5000"}, "point_value", "Must be at most 1000."),
        ({"currency": "XX"}, "currency", "Must be at least 3 characters."),
        ({"currency": "XYZ"}, "currency", "Is not an ISO 4217 currency code."),
        ({"default_description": " "}, "default_description", "Is required."),
        ({"expiry_policy": "fixed", "expiry_days": ""}, "expiry_days",
         "Is required when the expiry policy is fixed."),
        ({"expiry_policy": "inactivity", "expiry_days": "0"}, "expiry_days",
         "Must be at least 1."),
    ],
)  # fmt: skip
async def test_invalid_settings_show_next_to_their_field(
    signed_in: AdminClient,
    shop: Shop,
    api: Tenant,
    overrides: dict[str, str],
    name: str,
    message: str,
) -> None:
    saved = await data(api, "/api/v1/settings/program")
    form = settings_form(**{"point_value": "0.05", **overrides})
    response = await post(signed_in, SETTINGS, form, SETTINGS)
    assert response.status_code == 422, response.text
    assert field_error(response.text, name) == message
    if name != "point_value":
        assert value_of(response.text, "point_value") == "0.05"  # kept as typed
    assert await data(api, "/api/v1/settings/program") == saved
    assert await changes(shop, "program_settings") == []


# --- API keys --------------------------------------------------------------------------


async def test_a_key_is_created_shown_once_works_and_is_revoked(
    signed_in: AdminClient,
    shop: Shop,
    client: httpx.AsyncClient,
    capfd: pytest.CaptureFixture[str],
) -> None:
    page = await signed_in.get(API_KEYS)
    for scope in ("customers:read", "rewards:read", "settings:write", "webhooks:write"):
        assert f'name="scopes" type="checkbox" value="{scope}"' in page.text
    token = csrf_of(page.text)
    form = {
        "_csrf": token,
        "name": "Shop theme",
        "scopes": ["rewards:read", "settings:read"],
        "rate_limit": "600/minute",
    }
    created = await signed_in.client.post(API_KEYS, data=form)
    assert created.status_code == 200, created.text
    assert "This is the only time it is shown" in created.text
    match = TOKEN.search(created.text)
    assert match is not None
    secret = match.group(1)
    bearer = {"Authorization": f"Bearer {secret}"}
    assert (await client.get("/api/v1/rewards", headers=bearer)).status_code == 200
    assert (await client.get("/api/v1/settings/program", headers=bearer)).status_code == 200
    refused = await client.get("/api/v1/webhooks", headers=bearer)
    assert refused.status_code == 403  # a scope it was not given

    listed = await signed_in.get(API_KEYS)
    assert secret not in listed.text  # never shown again
    row = re.search(r"<tr>\s*<td>Shop theme</td>.*?</tr>", listed.text, re.S)
    assert row is not None
    assert "rewards:read, settings:read" in row.group(0)
    assert "600/minute" in row.group(0)
    revoke_link = re.search(r'href="(/admin/api-keys/[^"]+/revoke)"', row.group(0))
    assert revoke_link is not None
    confirm = await signed_in.get(revoke_link.group(1))
    assert "Revoke the key “Shop theme”" in confirm.text
    assert (await client.get("/api/v1/rewards", headers=bearer)).status_code == 200
    revoked = await post(signed_in, revoke_link.group(1), {}, revoke_link.group(1))
    assert revoked.status_code == 303
    assert (await client.get("/api/v1/rewards", headers=bearer)).status_code == 401
    listed = await signed_in.get(API_KEYS)
    assert "Revoked" in listed.text

    trail = await changes(shop, "api_key")
    mine = [change for change in trail if change.actor == f"user:{shop.admin_email}"]
    assert [change.action for change in mine] == ["revoked", "created"]
    assert all(secret not in change.summary for change in trail)
    assert secret.startswith(f"lk_{mine[0].subject_id}_")  # known by its prefix
    out, err = capfd.readouterr()
    assert secret not in out + err  # never in a log


@pytest.mark.parametrize(
    ("form", "name", "message"),
    [
        ({"name": "No scopes"}, "scopes", "At least one scope is required."),
        ({"name": "", "scopes": "rewards:read"}, "name", "Give the key a name to recognise it by."),
        ({"name": "Fast", "scopes": "rewards:read", "rate_limit": "fast"}, "rate_limit",
         "Must look like 100/minute (N from 1 to 1,000,000)."),
        ({"name": "x" * 201, "scopes": "rewards:read"}, "name", "At most 200 characters."),
    ],
)  # fmt: skip
async def test_invalid_key_input_shows_next_to_its_field(
    signed_in: AdminClient,
    shop: Shop,
    form: dict[str, str],
    name: str,
    message: str,
) -> None:
    response = await post(signed_in, API_KEYS, form, API_KEYS)
    assert response.status_code == 422
    if name == "scopes":
        assert f'<p class="field-error" id="f-scopes-error">{message}</p>' in response.text
    else:
        assert field_error(response.text, name) == message
    if "scopes" in form:  # the ticked scopes stay ticked
        assert 'value="rewards:read" checked' in response.text
    assert 'id="token"' not in response.text
    assert [c for c in await changes(shop, "api_key") if c.actor.startswith("user:")] == []


async def test_another_merchants_key_is_the_404_page(
    signed_in: AdminClient, shop: Shop, other_shop: Tenant
) -> None:
    async with shop.database.read() as connection:
        (theirs,) = await auth_service.list_keys(connection, other_shop.merchant_id)
    path = f"{API_KEYS}/{theirs.id}/revoke"
    token = await signed_in.csrf(API_KEYS)
    assert (await signed_in.get(path)).status_code == 404
    assert (await signed_in.post(path, {"_csrf": token})).status_code == 404
    assert (await other_shop.get("/api/v1/rewards")).status_code == 200


# --- the audit log ---------------------------------------------------------------------


async def test_the_audit_log_pages_newest_first_and_filters(
    signed_in: AdminClient, shop: Shop, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in ("First", "Second", "Third"):
        assert (await add_reward(signed_in, name=name)).status_code == 303
    await post(signed_in, TIERS, {"name": "Gold", "threshold": "10", "multiplier": "1"}, TIERS)
    monkeypatch.setattr(audit_page, "PAGE_SIZE", 2)
    first = await signed_in.get(AUDIT)
    assert first.status_code == 200
    rows = re.findall(r"<tr>\s*<td class=\"nowrap\">.*?</tr>", first.text, re.S)
    assert len(rows) == 2
    assert "Tier" in rows[0]
    assert 'name="Gold"' in html.unescape(rows[0])
    assert 'name="Third"' in html.unescape(rows[1])
    assert all(f"user:{shop.admin_email}" in row for row in rows)
    older = re.search(r'href="(/admin/audit\?cursor=[^"]+)">Older changes', first.text)
    assert older is not None
    second = await signed_in.get(html.unescape(older.group(1)))
    text = html.unescape(second.text)
    assert 'name="Second"' in text
    assert 'name="First"' in text
    assert "Newest changes" in second.text
    only_tiers = html.unescape((await signed_in.get(f"{AUDIT}?subject=tier")).text)
    assert 'name="Gold"' in only_tiers
    assert 'name="Third"' not in only_tiers
