"""The Customers pages over HTTP: search, sort, pages, the customer's page and its forms
(adjust, status, pending credits, rewards), roles, CSRF, idempotency, escaping."""

from __future__ import annotations

import asyncio
import html
import re
import uuid
from typing import Any

import httpx
import pytest

from tests.support import rewards
from tests.support.browser import AdminClient, ClientFactory, Shop, csrf_of
from tests.support.tenant import Tenant, create_key, create_merchant

TRANSACTIONS = "/api/v1/public/customers/transactions"
PENDING = "/api/v1/public/customers/pending"
KEY_PATTERN = re.compile(r'name="idempotency_key" value="([^"]*)"')


@pytest.fixture
async def api(shop: Shop, client: httpx.AsyncClient) -> Tenant:
    """The shop's merchant through the API (an all-scopes key)."""
    token = await create_key(shop.database, shop.merchant_id)
    return Tenant(shop.merchant_id, token, client, shop.database)


def customer_path(customer: dict[str, Any]) -> str:
    return f"/admin/customers/{customer['id']}"


def adjust_form_of(page_html: str) -> dict[str, str]:
    """The adjust form's hidden fields: the CSRF token and the submission key."""
    section = page_html[page_html.index('id="adjust-form"') :]
    match = KEY_PATTERN.search(section)
    assert match is not None, "the adjust form has no idempotency key"
    return {"_csrf": csrf_of(page_html), "idempotency_key": match.group(1)}


async def open_adjust(admin: AdminClient, customer: dict[str, Any]) -> dict[str, str]:
    page = await admin.get(customer_path(customer))
    assert page.status_code == 200, page.text
    return adjust_form_of(page.text)


async def post_adjust(
    admin: AdminClient, customer: dict[str, Any], form: dict[str, str], **fields: str
) -> httpx.Response:
    data = {"description": "", "internal_note": "", **form, **fields}
    return await admin.post(f"{customer_path(customer)}/adjust", data)


async def entries(api: Tenant, customer_id: str) -> list[dict[str, Any]]:
    response = await api.get(TRANSACTIONS, params={"customer_id": customer_id, "limit": 100})
    assert response.status_code == 200, response.text
    data: list[dict[str, Any]] = response.json()["data"]
    return data


def listed_ids(page_html: str) -> list[str]:
    """The platform ids in the customer list, in order."""
    return [
        html.unescape(found)
        for found in re.findall(
            r'<a href="/admin/customers/[0-9a-f-]{36}" class="row-link">([^<]*)</a>', page_html
        )
    ]


def field_error(page_html: str, name: str) -> str | None:
    match = re.search(rf'<p class="field-error" id="f-{name}-error">([^<]*)</p>', page_html)
    return None if match is None else html.unescape(match.group(1))


# --- the list ------------------------------------------------------------------------------


async def test_search_by_platform_id_email_prefix_and_name(
    signed_in: AdminClient, api: Tenant, unique_id: str
) -> None:
    await api.enrol(f"ada-{unique_id}", email=f"ada.{unique_id}@example.com", first_name="Ada")
    await api.enrol(f"bob-{unique_id}", email=f"bob.{unique_id}@example.com", last_name="Lovel")
    await api.enrol(f"cy-{unique_id}", email=f"cy.{unique_id}@example.org", first_name="Cyril")

    async def found(search: str) -> list[str]:
        response = await signed_in.get("/admin/customers", params={"search": search})
        assert response.status_code == 200, response.text
        return sorted(listed_ids(response.text))

    assert await found(f"bob-{unique_id}") == [f"bob-{unique_id}"]  # platform id, exactly
    assert await found(f"ADA.{unique_id[:6]}") == [f"ada-{unique_id}"]  # email prefix
    assert await found("cyr") == [f"cy-{unique_id}"]  # first name prefix
    assert await found("lov") == [f"bob-{unique_id}"]  # last name prefix
    assert await found(f"ada-{unique_id[:4]}") == []  # a platform id never by prefix
    everyone = await signed_in.get("/admin/customers")
    assert sorted(listed_ids(everyone.text)) == sorted(
        [f"ada-{unique_id}", f"bob-{unique_id}", f"cy-{unique_id}"]
    )
    row = re.search(rf"<tr>\s*<td><a [^>]*>bob-{unique_id}</a></td>(.*?)</tr>", everyone.text, re.S)
    assert row is not None
    assert "Lovel" in row.group(1)
    assert f"bob.{unique_id}@example.com" in row.group(1)
    assert "Active" in row.group(1)


async def test_sort_by_balance_and_join_date_and_pages(
    signed_in: AdminClient, api: Tenant, unique_id: str
) -> None:
    balances = [300, 100, 500, 200, 0] * 6  # 30 customers: two pages of 25
    for number, points in enumerate(balances):
        await api.enrol(f"c{number:02d}-{unique_id}")
        if points:
            assert (await api.adjust(f"c{number:02d}-{unique_id}", points)).status_code == 201
    by_balance = await signed_in.get("/admin/customers", params={"sort": "-points_balance"})
    shown = listed_ids(by_balance.text)
    assert len(shown) == 25
    assert [balances[int(customer_id[1:3])] for customer_id in shown[:6]] == [500] * 6
    assert 'aria-sort="descending"' in by_balance.text
    next_link = re.search(
        r'<a class="button" href="([^"]+)" rel="next">Next page</a>', by_balance.text
    )
    assert next_link is not None
    second = await signed_in.get(html.unescape(next_link.group(1)))
    rest = listed_ids(second.text)
    assert len(rest) == 5
    assert [balances[int(customer_id[1:3])] for customer_id in rest] == [0] * 5
    assert set(shown).isdisjoint(rest)
    assert "Next page" not in second.text
    assert "First page" in second.text
    # Oldest first: in the order they enrolled.
    oldest = await signed_in.get("/admin/customers", params={"sort": "created_at"})
    assert listed_ids(oldest.text)[:3] == [f"c{n:02d}-{unique_id}" for n in range(3)]
    lowest = await signed_in.get("/admin/customers", params={"sort": "points_balance"})
    assert [balances[int(c[1:3])] for c in listed_ids(lowest.text)[:6]] == [0] * 6


async def test_the_status_filter_and_bad_parameters(
    signed_in: AdminClient, api: Tenant, unique_id: str
) -> None:
    await api.enrol(f"on-{unique_id}")
    await api.enrol(f"off-{unique_id}")
    response = await api.client.patch(
        "/api/v1/public/customers/status",
        params={"customer_id": f"off-{unique_id}"},
        json={"status": "excluded"},
        headers=api.headers,
    )
    assert response.status_code == 200, response.text
    excluded = await signed_in.get("/admin/customers", params={"status": "excluded"})
    assert listed_ids(excluded.text) == [f"off-{unique_id}"]
    bad_sort = await signed_in.get("/admin/customers", params={"sort": "name"})
    assert bad_sort.status_code == 422
    assert "Must be one of" in bad_sort.text
    bad_cursor = await signed_in.get("/admin/customers", params={"cursor": "nonsense"})
    assert bad_cursor.status_code == 422
    assert "start again from the first page" in bad_cursor.text


async def test_htmx_refreshes_the_results_only(
    signed_in: AdminClient, api: Tenant, unique_id: str
) -> None:
    await api.enrol(f"htmx-{unique_id}", first_name="Hannah")
    fragment = await signed_in.get(
        "/admin/customers", params={"search": "hann"}, headers={"HX-Request": "true"}
    )
    assert fragment.status_code == 200
    assert "<html" not in fragment.text
    assert listed_ids(fragment.text) == [f"htmx-{unique_id}"]
    restore = await signed_in.get(
        "/admin/customers",
        params={"search": "hann"},
        headers={"HX-Request": "true", "HX-History-Restore-Request": "true"},
    )
    assert "<html" in restore.text
    page = await signed_in.get("/admin/customers")
    # The search box refreshes the list as one types; the form is a plain GET without JS.
    assert 'hx-trigger="keyup changed delay:300ms, search"' in page.text
    assert 'hx-target="#customer-results"' in page.text
    assert '<form method="get" action="/admin/customers"' in page.text


# --- the customer's page ------------------------------------------------------------------


async def test_the_page_shows_balances_profile_and_entries_with_their_actor(
    signed_in: AdminClient, api: Tenant, unique_id: str
) -> None:
    customer = await api.enrol(
        f"page-{unique_id}",
        email=f"page.{unique_id}@example.com",
        first_name="Grace",
        last_name="Hopper",
        date_of_birth="1980-12-09",
    )
    response = await api.adjust(
        f"page-{unique_id}", 1200, "Welcome gift", internal_note="VIP from the fair"
    )
    assert response.status_code == 201
    assert (await api.adjust(f"page-{unique_id}", -200, "Correction")).status_code == 201
    page = await signed_in.get(customer_path(customer))
    assert page.status_code == 200, page.text
    text = page.text
    assert "Grace Hopper" in text
    assert f"page.{unique_id}@example.com" in text
    assert "1980-12-09" in text
    assert re.search(
        r'id="balance-points">\s*<dt class="label">Points balance</dt>\s*'
        r'<dd class="value">1,000</dd>',
        text,
    )
    assert re.search(
        r'id="balance-lifetime">\s*<dt class="label">Lifetime</dt>\s*'
        r'<dd class="value">1,200</dd>',
        text,
    )
    assert "Welcome gift" in text
    assert "VIP from the fair" in text
    actors = re.findall(r'<td class="actor mono">([^<]*)</td>', text)
    assert len(actors) == 2
    assert all(actor.startswith("api_key:") for actor in actors), actors
    # Newest first: the correction, then the gift.
    assert text.index("Correction") < text.index("Welcome gift")


async def test_the_activity_log_has_pages(
    signed_in: AdminClient, api: Tenant, unique_id: str
) -> None:
    customer = await api.enrol(f"log-{unique_id}")
    for number in range(1, 23):
        assert (await api.adjust(f"log-{unique_id}", number, f"Entry {number}.")).status_code == 201
    first = await signed_in.get(customer_path(customer))
    assert first.text.count('<td class="actor mono">') == 20
    assert "Entry 22." in first.text
    assert "Entry 2." not in first.text
    older = re.search(r'<a class="button" href="([^"]+)" rel="next">Older entries</a>', first.text)
    assert older is not None
    second = await signed_in.get(html.unescape(older.group(1)))
    assert second.text.count('<td class="actor mono">') == 2
    assert "Entry 2." in second.text
    assert "Entry 1." in second.text
    assert "Older entries" not in second.text


async def test_another_merchants_customer_or_a_bad_address_is_the_404_page(
    signed_in: AdminClient, shop: Shop, client: httpx.AsyncClient, unique_id: str
) -> None:
    other_id = await create_merchant(shop.database, "Another shop")
    other = Tenant(other_id, await create_key(shop.database, other_id), client, shop.database)
    theirs = await other.enrol(f"theirs-{unique_id}")
    for path in (
        customer_path(theirs),
        f"/admin/customers/{uuid.uuid4()}",
        "/admin/customers/not-a-uuid",
    ):
        response = await signed_in.get(path)
        assert response.status_code == 404, path
        assert "Page not found" in response.text
    token = await signed_in.csrf("/admin/customers")
    response = await signed_in.post(
        f"{customer_path(theirs)}/adjust",
        {"_csrf": token, "points": "100", "idempotency_key": str(uuid.uuid4())},
    )
    assert response.status_code == 404
    assert (await other.customer(f"theirs-{unique_id}"))["points_balance"] == 0


async def test_a_customers_name_is_shown_as_text(
    signed_in: AdminClient, api: Tenant, unique_id: str
) -> None:
    payload = "<script>alert(1)</script>"
    # Enrolment strips tags but decodes entities: this stores the payload itself.
    customer = await api.enrol(f"xss-{unique_id}", first_name=html.escape(payload))
    assert (await api.customer(f"xss-{unique_id}"))["first_name"] == payload
    response = await api.adjust(f"xss-{unique_id}", 10, "Gift", internal_note='"><img src=x>')
    assert response.status_code == 201
    for path in (customer_path(customer), f"/admin/customers?search=xss-{unique_id}"):
        page = await signed_in.get(path)
        assert "<script>alert" not in page.text
        assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page.text
    page = await signed_in.get(customer_path(customer))
    assert "<img src=x>" not in page.text
    assert "&#34;&gt;&lt;img src=x&gt;" in page.text  # the internal note, as text


# --- the adjust form ------------------------------------------------------------------------


async def test_adjust_creates_one_entry_by_the_user(
    signed_in: AdminClient, shop: Shop, api: Tenant, unique_id: str
) -> None:
    customer = await api.enrol(f"adj-{unique_id}")
    form = await open_adjust(signed_in, customer)
    response = await post_adjust(
        signed_in,
        customer,
        form,
        points="250",
        description="Sorry for the late parcel",
        internal_note="Ticket 4411",
        apply_to_lifetime="true",
    )
    assert response.status_code == 303, response.text
    location = response.headers["location"]
    assert location.startswith(customer_path(customer) + "?notice=")
    shown = await signed_in.get(location)
    assert "+250 points added. New balance: 250 points." in shown.text
    assert re.search(r'<dd class="value">250</dd>', shown.text)
    logged = await entries(api, f"adj-{unique_id}")
    assert len(logged) == 1
    assert logged[0]["points"] == 250
    assert logged[0]["description"] == "Sorry for the late parcel"
    assert logged[0]["internal_note"] == "Ticket 4411"
    assert logged[0]["apply_to_lifetime"] is True
    assert logged[0]["actor"] == f"user:{shop.admin_email}"
    assert f"user:{shop.admin_email}" in shown.text
    # A debit, not counted in lifetime (the box left unticked).
    form = adjust_form_of(shown.text)
    response = await post_adjust(signed_in, customer, form, points="-50", description="Fix")
    assert response.status_code == 303
    customer_now = await api.customer(f"adj-{unique_id}")
    assert customer_now["points_balance"] == 200
    assert customer_now["lifetime_points"] == 250


async def test_the_same_submission_twice_moves_points_once(
    signed_in: AdminClient, api: Tenant, unique_id: str
) -> None:
    customer = await api.enrol(f"twice-{unique_id}")
    form = await open_adjust(signed_in, customer)
    first = await post_adjust(signed_in, customer, form, points="100", description="Gift")
    second = await post_adjust(signed_in, customer, form, points="100", description="Gift")
    assert first.status_code == second.status_code == 303
    assert first.headers["location"] == second.headers["location"]  # the same answer
    assert len(await entries(api, f"twice-{unique_id}")) == 1
    assert (await api.customer(f"twice-{unique_id}"))["points_balance"] == 100
    # The same key with other values is refused, and moves nothing.
    changed = await post_adjust(signed_in, customer, form, points="900", description="Gift")
    assert changed.status_code == 422
    assert "already submitted with other values" in changed.text
    assert (await api.customer(f"twice-{unique_id}"))["points_balance"] == 100


async def test_concurrent_double_submits_move_points_once(
    signed_in: AdminClient, api: Tenant, unique_id: str
) -> None:
    customer = await api.enrol(f"race-{unique_id}")
    form = await open_adjust(signed_in, customer)
    answers = await asyncio.gather(
        *(post_adjust(signed_in, customer, form, points="70", description="Race") for _ in range(4))
    )
    assert [answer.status_code for answer in answers] == [303] * 4
    assert len({answer.headers["location"] for answer in answers}) == 1
    assert len(await entries(api, f"race-{unique_id}")) == 1
    assert (await api.customer(f"race-{unique_id}"))["points_balance"] == 70


async def test_an_erased_customer_is_read_only(
    signed_in: AdminClient, api: Tenant, unique_id: str
) -> None:
    customer = await api.enrol(f"gone-{unique_id}", first_name="Gone")
    assert (await api.adjust(f"gone-{unique_id}", 30, "Before")).status_code == 201
    erased = await api.client.delete(
        "/api/v1/public/customers", params={"customer_id": f"gone-{unique_id}"}, headers=api.headers
    )
    assert erased.status_code == 204, erased.text
    listed = await signed_in.get("/admin/customers", params={"status": "erased"})
    assert "(erased)" in listed.text
    page = await signed_in.get(customer_path(customer))
    assert page.status_code == 200, page.text
    assert "This customer was erased" in page.text
    assert 'id="adjust-form"' not in page.text
    assert page.text.count('<td class="actor mono">') == 2  # the credit and the write-off
    token = csrf_of(page.text)
    refused = await signed_in.post(
        f"{customer_path(customer)}/adjust",
        {"_csrf": token, "points": "5", "idempotency_key": str(uuid.uuid4())},
    )
    assert refused.status_code == 422
    assert "can no longer change" in refused.text


async def test_errors_show_next_to_the_field_with_the_values_kept(
    signed_in: AdminClient, api: Tenant, unique_id: str
) -> None:
    customer = await api.enrol(f"err-{unique_id}")
    form = await open_adjust(signed_in, customer)
    zero = await post_adjust(
        signed_in, customer, form, points="0", description="Typed text", internal_note="kept"
    )
    assert zero.status_code == 422
    assert field_error(zero.text, "points") == "Must not be zero."
    assert 'value="Typed text"' in zero.text
    assert ">kept</textarea>" in zero.text
    assert 'aria-invalid="true"' in zero.text
    words = await post_adjust(signed_in, customer, adjust_form_of(zero.text), points="lots")
    assert words.status_code == 422
    assert field_error(words.text, "points") == "Enter a number of points, e.g. 250 or -100."
    too_many = await post_adjust(signed_in, customer, adjust_form_of(words.text), points="-40")
    assert too_many.status_code == 422
    assert "The customer does not have enough points for this debit." in too_many.text
    assert "The balance is 0 points." in too_many.text
    assert 'class="form-error" role="alert"' in too_many.text
    # Each page carries a fresh key: the corrected form goes through.
    credit = await post_adjust(signed_in, customer, adjust_form_of(too_many.text), points="40")
    assert credit.status_code == 303
    assert (await api.customer(f"err-{unique_id}"))["points_balance"] == 40
    missing_key = await post_adjust(
        signed_in, customer, {"_csrf": form["_csrf"], "idempotency_key": ""}, points="5"
    )
    assert missing_key.status_code == 422
    assert "out of date" in missing_key.text
    assert (await api.customer(f"err-{unique_id}"))["points_balance"] == 40


@pytest.mark.parametrize("token", [None, "forged"])
async def test_without_a_valid_csrf_token_nothing_moves(
    signed_in: AdminClient, api: Tenant, unique_id: str, token: str | None
) -> None:
    customer = await api.enrol(f"csrf-{unique_id}")
    form = await open_adjust(signed_in, customer)
    data = {"idempotency_key": form["idempotency_key"], "points": "100", "description": "x"}
    if token is not None:
        data["_csrf"] = token
    response = await signed_in.post(f"{customer_path(customer)}/adjust", data)
    assert response.status_code == 403
    assert "nothing was changed" in response.text
    assert await entries(api, f"csrf-{unique_id}") == []


# --- status, pending credits, rewards --------------------------------------------------------


async def test_the_status_form(signed_in: AdminClient, api: Tenant, unique_id: str) -> None:
    customer = await api.enrol(f"st-{unique_id}")
    token = await signed_in.csrf(customer_path(customer))
    path = f"{customer_path(customer)}/status"
    response = await signed_in.post(
        path, {"_csrf": token, "status": "excluded", "reason": "Chargeback fraud"}
    )
    assert response.status_code == 303
    changed = await api.customer(f"st-{unique_id}")
    assert (changed["status"], changed["status_reason"]) == ("excluded", "Chargeback fraud")
    shown = await signed_in.get(response.headers["location"])
    assert "Status set to Excluded." in shown.text
    bad = await signed_in.post(path, {"_csrf": token, "status": "erased", "reason": "x"})
    assert bad.status_code == 422
    assert field_error(bad.text, "status") == "Choose one of the statuses."
    long = await signed_in.post(path, {"_csrf": token, "status": "active", "reason": "r" * 501})
    assert long.status_code == 422
    assert field_error(long.text, "reason") == "Must be at most 500 characters."
    assert (await api.customer(f"st-{unique_id}"))["status"] == "excluded"


async def hold(api: Tenant, customer_id: str, points: int) -> str:
    response = await api.adjust(customer_id, points, "Order 7", pending_days=14)
    assert response.status_code == 201, response.text
    pending_id: str = response.json()["data"]["id"]
    return pending_id


async def test_admins_approve_and_cancel_pending_credits(
    signed_in: AdminClient, api: Tenant, unique_id: str
) -> None:
    customer = await api.enrol(f"pend-{unique_id}")
    first = await hold(api, f"pend-{unique_id}", 70)
    second = await hold(api, f"pend-{unique_id}", 30)
    page = await signed_in.get(customer_path(customer))
    assert f"/pending/{first}/approve" in page.text
    token = csrf_of(page.text)
    key = str(uuid.uuid4())
    approve = f"{customer_path(customer)}/pending/{first}/approve"
    response = await signed_in.post(approve, {"_csrf": token, "idempotency_key": key})
    assert response.status_code == 303, response.text
    again = await signed_in.post(approve, {"_csrf": token, "idempotency_key": key})
    assert again.status_code == 303  # a double click: the same answer
    now = await api.customer(f"pend-{unique_id}")
    assert (now["points_balance"], now["pending_points"]) == (70, 30)
    cancel = f"{customer_path(customer)}/pending/{second}/cancel"
    response = await signed_in.post(cancel, {"_csrf": token, "idempotency_key": str(uuid.uuid4())})
    assert response.status_code == 303
    now = await api.customer(f"pend-{unique_id}")
    assert (now["points_balance"], now["pending_points"]) == (70, 0)
    # Approving it now is refused in words (it is no longer pending).
    refused = await signed_in.post(
        f"{customer_path(customer)}/pending/{second}/approve",
        {"_csrf": token, "idempotency_key": str(uuid.uuid4())},
    )
    assert refused.status_code == 409
    assert 'role="alert"' in refused.text
    # Another customer's pending credit through this customer's address: 404.
    other = await api.enrol(f"pend2-{unique_id}")
    theirs = await hold(api, f"pend2-{unique_id}", 10)
    wrong = await signed_in.post(
        f"{customer_path(customer)}/pending/{theirs}/approve",
        {"_csrf": token, "idempotency_key": str(uuid.uuid4())},
    )
    assert wrong.status_code == 404
    assert (await api.customer(f"pend2-{unique_id}"))["pending_points"] == 10
    assert other["id"] != customer["id"]


async def test_admins_use_and_revert_rewards(
    signed_in: AdminClient, api: Tenant, unique_id: str
) -> None:
    reward = await rewards.create(api, rewards.FIVE_OFF)
    await rewards.funded(api, f"rw-{unique_id}", 1000)
    customer = await api.customer(f"rw-{unique_id}")
    redeemed = []
    for _ in range(2):
        response = await rewards.redeem(api, f"rw-{unique_id}", reward["id"])
        assert response.status_code == 201, response.text
        redeemed.append(response.json()["data"])
    page = await signed_in.get(customer_path(customer))
    assert redeemed[0]["discount_code"] in page.text
    token = csrf_of(page.text)
    used = await signed_in.post(
        f"{customer_path(customer)}/rewards/{redeemed[0]['id']}/use",
        {"_csrf": token, "idempotency_key": str(uuid.uuid4())},
    )
    assert used.status_code == 303, used.text
    reverted = await signed_in.post(
        f"{customer_path(customer)}/rewards/{redeemed[1]['id']}/revert",
        {"_csrf": token, "idempotency_key": str(uuid.uuid4())},
    )
    assert reverted.status_code == 303, reverted.text
    shown = await signed_in.get(reverted.headers["location"])
    assert "500 points given back" in shown.text
    assert (await api.customer(f"rw-{unique_id}"))["points_balance"] == 500
    statuses = {
        detail["id"]: detail["status"]
        for detail in [
            (await api.get(f"{rewards.CUSTOMER_REWARDS}/{item['id']}")).json()["data"]
            for item in redeemed
        ]
    }
    assert statuses == {redeemed[0]["id"]: "used", redeemed[1]["id"]: "revert"}


# --- the support role ----------------------------------------------------------------------


async def test_support_staff_adjust_but_do_not_approve(
    admin_clients: ClientFactory, shop: Shop, api: Tenant, unique_id: str
) -> None:
    email = f"agent-{unique_id}@example.com"
    await shop.add_user(email, role="support")
    agent = await admin_clients()
    assert (await agent.login(email)).status_code == 303
    customer = await api.enrol(f"sup-{unique_id}", first_name="Sam")
    pending_id = await hold(api, f"sup-{unique_id}", 40)
    listing = await agent.get("/admin/customers", params={"search": "sam"})
    assert listing.status_code == 200
    assert listed_ids(listing.text) == [f"sup-{unique_id}"]
    page = await agent.get(customer_path(customer))
    assert page.status_code == 200
    assert "/approve" not in page.text  # no buttons for support
    assert (await agent.get("/admin/")).status_code == 403
    form = adjust_form_of(page.text)
    response = await post_adjust(agent, customer, form, points="15", description="Goodwill")
    assert response.status_code == 303
    logged = await entries(api, f"sup-{unique_id}")
    assert [entry["actor"] for entry in logged] == [f"user:{email}"]
    status = await agent.post(
        f"{customer_path(customer)}/status",
        {"_csrf": form["_csrf"], "status": "inactive", "reason": ""},
    )
    assert status.status_code == 303
    refused = await agent.post(
        f"{customer_path(customer)}/pending/{pending_id}/approve",
        {"_csrf": form["_csrf"], "idempotency_key": str(uuid.uuid4())},
    )
    assert refused.status_code == 403
    assert "Not allowed" in refused.text
    now = await api.customer(f"sup-{unique_id}")
    assert (now["points_balance"], now["pending_points"], now["status"]) == (15, 40, "inactive")
