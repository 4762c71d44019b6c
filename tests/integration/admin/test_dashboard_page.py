"""The Dashboard over HTTP: its figures equal the ledger's, the period, the chart's data."""

from __future__ import annotations

import html
import json
import re
from datetime import timedelta
from typing import Any

import httpx
import pytest

from loyalty.db.types import utc_now
from tests.support import rewards
from tests.support.browser import AdminClient, ClientFactory, Shop
from tests.support.tenant import Tenant, create_key

SETTINGS = "/api/v1/settings/program"


@pytest.fixture
async def api(shop: Shop, client: httpx.AsyncClient) -> Tenant:
    token = await create_key(shop.database, shop.merchant_id)
    return Tenant(shop.merchant_id, token, client, shop.database)


def figure(page_html: str, name: str) -> tuple[str, str]:
    """A figure card's value and detail line (as text)."""
    match = re.search(
        rf'id="figure-{name}">\s*<dt class="label">[^<]*</dt>\s*'
        r'<dd class="value">([^<]*)</dd>\s*<dd class="detail">(.*?)</dd>',
        page_html,
        re.S,
    )
    assert match is not None, f"no figure {name}"
    detail = re.sub(r"<[^>]+>", "", match.group(2))
    return html.unescape(match.group(1)), " ".join(html.unescape(detail).split())


def chart_of(page_html: str) -> dict[str, Any]:
    match = re.search(
        r'<script type="application/json" id="chart-data">(.*?)</script>', page_html, re.S
    )
    assert match is not None
    data: dict[str, Any] = json.loads(match.group(1))
    return data


def table_rows(page_html: str) -> list[list[str]]:
    body = page_html[page_html.index('id="daily-table"') :]
    body = body[: body.index("</table>")]
    return [
        [cell.strip() for cell in re.findall(r"<t[hd][^>]*>([^<]*)</t[hd]>", row)]
        for row in re.findall(r"<tr>(.*?)</tr>", body.split("<tbody>")[1], re.S)
    ]


async def test_the_figures_equal_the_ledger(
    signed_in: AdminClient, api: Tenant, unique_id: str
) -> None:
    reward = await rewards.create(api, rewards.FIVE_OFF)  # 500 points
    for number, points in enumerate((1000, 250, 1250)):
        await rewards.funded(api, f"d{number}-{unique_id}", points)
    response = await api.adjust(f"d1-{unique_id}", -50, "Correction")
    assert response.status_code == 201
    redeemed = await rewards.redeem(api, f"d0-{unique_id}", reward["id"])
    assert redeemed.status_code == 201
    held = await api.adjust(f"d2-{unique_id}", 75, "Order 9", pending_days=7)
    assert held.status_code == 201
    page = await signed_in.get("/admin/")
    assert page.status_code == 200, page.text
    text = page.text
    assert figure(text, "members") == ("3", "+3 new in the period")
    assert figure(text, "issued")[0] == "2,500"
    assert figure(text, "redeemed")[0] == "500"
    assert figure(text, "expired") == ("0", "50 removed otherwise")
    # 2,500 - 50 - 500 = 1,950 points at 0.01: 19.50 in the shop's currency.
    settings = (await api.get(SETTINGS)).json()["data"]
    assert figure(text, "outstanding") == (
        "1,950",
        f"{settings['currency']} 19.50 at 0.01 per point (change in Settings)",
    )
    assert '<a href="/admin/settings">' in text
    assert figure(text, "pending")[0] == "75"
    assert figure(text, "rate")[0] == "20.0%"  # 500 / 2,500
    # The chart's data: 30 days ending today, the same figures as the table under it.
    chart = chart_of(text)
    today = utc_now().date()
    assert len(chart["days"]) == 30
    assert chart["days"][-1] == today.isoformat()
    assert chart["days"][0] == (today - timedelta(days=29)).isoformat()
    series = {one["label"]: one["values"] for one in chart["series"]}
    assert series["Issued"][-1] == 2500
    assert series["Redeemed"][-1] == 500
    assert series["Outstanding"][-1] == 1950
    assert sum(series["Issued"]) == 2500
    rows = table_rows(text)
    assert len(rows) == 30
    assert rows[0] == [today.isoformat(), "2,500", "500", "0", "1,950"]


async def test_a_new_programme_shows_zeros_and_no_rate(signed_in: AdminClient) -> None:
    page = await signed_in.get("/admin/")
    assert figure(page.text, "members")[0] == "0"
    assert figure(page.text, "outstanding")[0] == "0"
    assert figure(page.text, "rate")[0] == "—"


@pytest.mark.parametrize("days", ["90", "365"])
async def test_the_period(signed_in: AdminClient, days: str) -> None:
    page = await signed_in.get("/admin/", params={"days": days})
    assert page.status_code == 200
    assert len(chart_of(page.text)["days"]) == int(days)
    assert len(table_rows(page.text)) == int(days)
    assert f'href="/admin/?days={days}" aria-current="page"' in page.text


@pytest.mark.parametrize("days", ["7", "abc", "-30", "30.0"])
async def test_another_period_shows_30_days_and_says_why(signed_in: AdminClient, days: str) -> None:
    page = await signed_in.get("/admin/", params={"days": days})
    assert page.status_code == 200
    assert "The period can be 30, 90 or 365 days: showing the last 30 days." in page.text
    assert len(chart_of(page.text)["days"]) == 30


async def test_the_chart_data_cannot_end_its_script_element(signed_in: AdminClient) -> None:
    page = await signed_in.get("/admin/")
    match = re.search(r'id="chart-data">(.*?)</script>', page.text, re.S)
    assert match is not None
    assert not set(match.group(1)) & set("<>&")
    # Only vendored scripts, no inline code.
    scripts = re.findall(r"<script([^>]*)>(.*?)</script>", page.text, re.S)
    for attributes, body in scripts:
        assert 'type="application/json"' in attributes or (
            body.strip() == "" and 'src="/static/' in attributes
        )
    assert 'src="/static/admin/vendor/uPlot.iife.min.js"' in page.text


async def test_support_staff_get_the_403_page(
    admin_clients: ClientFactory, shop: Shop, unique_id: str
) -> None:
    email = f"agent-{unique_id}@example.com"
    await shop.add_user(email, role="support")
    agent = await admin_clients()
    assert (await agent.login(email)).status_code == 303
    response = await agent.get("/admin/")
    assert response.status_code == 403
    assert "Not allowed" in response.text
    assert 'id="chart-data"' not in response.text
