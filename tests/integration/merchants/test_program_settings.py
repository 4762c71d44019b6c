"""Programme settings (/api/v1/settings/program) and what they govern."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from tests.support.rewards import FIVE_OFF, create, funded, redeem
from tests.support.tenant import Tenant, event_types

SETTINGS = "/api/v1/settings/program"


async def patch(tenant: Tenant, body: dict[str, Any], token: str | None = None) -> httpx.Response:
    headers = {"Authorization": f"Bearer {token or tenant.token}"}
    return await tenant.client.patch(SETTINGS, json=body, headers=headers)


async def test_defaults_and_changes(tenant: Tenant, unique_id: str) -> None:
    settings = (await tenant.get(SETTINGS)).json()["data"]
    assert settings["points_decimals"] == 0
    assert settings["discount_code_prefix"] == "TESTSH"  # from the shop's name
    assert settings["default_description"] == "Points adjustment"

    response = await patch(tenant, {"discount_code_prefix": " vip26 ", "points_decimals": 2})
    assert response.status_code == 200, response.text
    changed = response.json()["data"]
    assert (changed["discount_code_prefix"], changed["points_decimals"]) == ("VIP26", 2)
    assert (await tenant.get(SETTINGS)).json()["data"] == changed
    assert (await event_types(tenant))[-1] == "settings.updated"

    five = await create(tenant, FIVE_OFF)
    await funded(tenant, unique_id, 500)
    code = (await redeem(tenant, unique_id, five["id"])).json()["data"]["discount_code"]
    assert code.startswith("VIP26-")

    assert (await patch(tenant, {"discount_code_prefix": ""})).status_code == 200
    await tenant.adjust(unique_id, 500)
    code = (await redeem(tenant, unique_id, five["id"])).json()["data"]["discount_code"]
    assert len(code) == 9
    assert code[4] == "-"


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"discount_code_prefix": "TOO-LONG"}, "discount_code_prefix"),
        ({"discount_code_prefix": "ÄBC"}, "discount_code_prefix"),
        ({"discount_code_prefix": "ABCDEFGHIJKLM"}, "discount_code_prefix"),
        ({"points_decimals": 3}, "points_decimals"),
        ({"points_decimals": "1"}, "points_decimals"),
        ({"default_description": "<b></b>"}, "default_description"),
        ({"default_description": "a\x00"}, "default_description"),
        ({"currency": "XYZ"}, "currency"),
        ({"currency": "EURO"}, "currency"),
        ({"colour": "red"}, "colour"),
    ],
)
async def test_bad_settings_are_422(tenant: Tenant, body: dict[str, Any], field: str) -> None:
    before = (await tenant.get(SETTINGS)).json()["data"]
    response = await patch(tenant, body)
    assert response.status_code == 422, response.text
    assert response.json()["error"]["details"][0]["field"] == field
    assert (await tenant.get(SETTINGS)).json()["data"] == before


async def test_settings_need_their_scopes(tenant: Tenant) -> None:
    reader = await tenant.new_key("settings:read")
    assert (await patch(tenant, {"points_decimals": 1}, token=reader)).status_code == 403
    other = await tenant.new_key("rewards:read")
    response = await tenant.client.get(SETTINGS, headers={"Authorization": f"Bearer {other}"})
    assert response.status_code == 403
