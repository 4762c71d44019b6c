"""The dashboard's daily rollups equal the ledger, after random work, on both databases.

A random workload over several days (enrolments, credits and debits, holds
approved, cancelled and released by the job, orders and refunds, redemptions
and reverts, transfers, expiry, erasures, an import) is followed by a check
that every rollup equals the sums over the rows it counts: each day's entries
by kind, the members enrolled and erased, the points pending; and that the
dashboard's figures equal the same figures computed from the entries.
"""

from __future__ import annotations

import random
import uuid
from collections import defaultdict
from collections.abc import Awaitable, Callable
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any

from sqlalchemy import Uuid, bindparam, text

from loyalty.dashboard import service as dashboard_service
from loyalty.db.types import utc_now
from loyalty.imports import service as imports_service
from loyalty.jobs import JobsRun
from tests.support import rewards
from tests.support.clock import Clock
from tests.support.tenant import Tenant

CUSTOMERS = "/api/v1/public/customers"
ORDERS = "/api/v1/public/orders"
PENDING = f"{CUSTOMERS}/pending"
SETTINGS = "/api/v1/settings/program"
DAYS = 6
STEPS_PER_DAY = 30
# Random steps in all (besides each day's jobs and the import).
WORKLOAD_STEPS = DAYS * STEPS_PER_DAY


async def _rows(tenant: Tenant, sql: str) -> list[Any]:
    async with tenant.database.read() as connection:
        statement = text(sql).bindparams(bindparam("m", type_=Uuid))
        result = await connection.execute(statement, {"m": tenant.merchant_id})
        return list(result.all())


async def _entries(tenant: Tenant) -> list[tuple[date, str, int]]:
    rows = await _rows(
        tenant, "SELECT created_at, kind, points_minor FROM ledger_entries WHERE merchant_id = :m"
    )
    return [(_day(row[0]), row[1], int(row[2])) for row in rows]


def _day(value: Any) -> date:
    if isinstance(value, str):  # SQLite hands raw text to text() queries
        return datetime.fromisoformat(value).date()
    assert isinstance(value, datetime)
    assert value.tzinfo is not None
    return value.astimezone(UTC).date()


async def _rollups(tenant: Tenant) -> dict[tuple[date, str], tuple[int, int, int]]:
    rows = await _rows(
        tenant,
        "SELECT day, metric, SUM(plus_minor), SUM(minus_minor), SUM(count) "
        "FROM daily_rollups WHERE merchant_id = :m GROUP BY day, metric",
    )
    found = {}
    for day, metric, plus, minus, count in rows:
        as_date = date.fromisoformat(day) if isinstance(day, str) else day
        found[(as_date, metric)] = (int(plus), int(minus), int(count))
    return found


async def _workload(
    tenant: Tenant, clock: Clock, run_jobs: Callable[[], Awaitable[JobsRun]], seed: str
) -> None:
    rng = random.Random(seed)
    patched = await tenant.client.patch(
        SETTINGS, json={"expiry_policy": "fixed", "expiry_days": 2}, headers=tenant.headers
    )
    assert patched.status_code == 200, patched.text
    rule = await tenant.post(
        "/api/v1/earn-rules",
        json={"type": "purchase", "points_per_currency_unit": 1, "pending_days": 1},
    )
    assert rule.status_code == 201, rule.text
    reward = await rewards.create(tenant, {**rewards.FIVE_OFF, "points_cost": 30})
    customers: list[str] = []
    orders: list[str] = []
    redeemed: list[str] = []
    held: list[tuple[str, str]] = []
    await _every_kind_once(tenant, seed, reward["id"], customers, orders)
    step = 0
    for _day_number in range(DAYS):
        for _ in range(STEPS_PER_DAY):
            step += 1
            action = rng.choice(
                ["enrol", "credit", "credit", "debit", "hold", "order", "refund", "redeem",
                 "revert", "cancel", "approve", "transfer", "erase"]
            )  # fmt: skip
            if action == "enrol" or len(customers) < 3:
                customer_id = f"{seed}-{step}"
                await tenant.enrol(customer_id)
                customers.append(customer_id)
                continue
            who = rng.choice(customers)
            if action in ("credit", "debit", "hold"):
                points = rng.randint(1, 80) * (-1 if action == "debit" else 1)
                extra: dict[str, Any] = {"pending_days": 1} if action == "hold" else {}
                response = await tenant.adjust(who, points, **extra)
                assert response.status_code in (201, 404, 422), response.text
                if action == "hold" and response.status_code == 201:
                    held.append((who, response.json()["data"]["id"]))
            elif action == "order":
                order_id = f"{seed}-o{step}"
                body = {"order_id": order_id, "customer_id": who, "total": rng.randint(5, 90)}
                response = await tenant.post(ORDERS, json={**body, "currency": "USD"})
                assert response.status_code in (201, 409), response.text
                if response.status_code == 201:
                    orders.append(order_id)
            elif action == "refund" and orders:
                # The latest order is often still on hold: a refund then shrinks the hold.
                order_id = orders[-1] if rng.random() < 0.5 else rng.choice(orders)
                body = rng.choice([{}, {"amount": rng.randint(1, 5)}])
                response = await tenant.post(f"{ORDERS}/{order_id}/refunds", json=body)
                assert response.status_code in (201, 404, 409, 422), response.text
            elif action == "redeem":
                response = await rewards.redeem(tenant, who, reward["id"])
                assert response.status_code in (201, 404, 409, 422), response.text
                if response.status_code == 201:
                    redeemed.append(response.json()["data"]["id"])
            elif action == "revert" and redeemed:
                held_id = redeemed.pop(rng.randrange(len(redeemed)))
                response = await tenant.post(f"{rewards.CUSTOMER_REWARDS}/{held_id}/revert")
                assert response.status_code in (200, 404, 409), response.text
            elif action in ("cancel", "approve") and held:
                owner, pending_id = held.pop(rng.randrange(len(held)))
                if action == "cancel":
                    response = await tenant.post(f"{PENDING}/{pending_id}/cancel")
                else:
                    response = await tenant.post(
                        f"{PENDING}/approve", params={"customer_id": owner},
                        json={"pending_id": pending_id},
                    )  # fmt: skip
                assert response.status_code in (200, 404, 409), response.text
            elif action == "transfer":
                to = rng.choice(customers)
                response = await tenant.post(
                    f"{CUSTOMERS}/transfers",
                    json={"from_customer_id": who, "to_customer_id": to, "points": 5},
                )
                assert response.status_code in (201, 404, 409, 422), response.text
            elif action == "erase" and rng.random() < 0.3:
                response = await tenant.client.delete(
                    CUSTOMERS, params={"customer_id": who}, headers=tenant.headers
                )
                assert response.status_code in (204, 404), response.text
                customers.remove(who)
        if _day_number == 2:
            csv = "customer_id,email,points\n" + "".join(
                f"{seed}-imp{n},imp{n}-{seed}@example.com,{n + 1}\n" for n in range(20)
            )
            summary = await imports_service.apply(
                tenant.database,
                tenant.merchant_id,
                [csv.encode()],
                file_sha256=uuid.uuid4().hex,
                decimals=0,
            )
            assert summary.rows == 20
        clock.advance(days=1)
        await run_jobs()  # releases due holds, expires lots


async def _every_kind_once(
    tenant: Tenant, seed: str, reward_id: str, customers: list[str], orders: list[str]
) -> None:
    """Whatever the random steps do, the workload holds one movement of each kind the
    dashboard tells apart: an order (earned once its hold is released), a transfer, a
    redemption and its revert, an erasure with a balance to write off (credits expire
    later, by the jobs)."""
    first, second, gone = f"{seed}-first", f"{seed}-second", f"{seed}-gone"
    for customer_id in (first, second, gone):
        await tenant.enrol(customer_id)
    customers.extend([first, second])
    for customer_id in (first, gone):
        assert (await tenant.adjust(customer_id, 100)).status_code == 201
    order_id = f"{seed}-first-order"
    order = {"order_id": order_id, "customer_id": first, "total": 40, "currency": "USD"}
    assert (await tenant.post(ORDERS, json=order)).status_code == 201
    orders.append(order_id)
    transfer = await tenant.post(
        f"{CUSTOMERS}/transfers",
        json={"from_customer_id": first, "to_customer_id": second, "points": 5},
    )
    assert transfer.status_code == 201, transfer.text
    redeemed = await rewards.redeem(tenant, first, reward_id)
    assert redeemed.status_code == 201, redeemed.text
    revert = await tenant.post(f"{rewards.CUSTOMER_REWARDS}/{redeemed.json()['data']['id']}/revert")
    assert revert.status_code == 200, revert.text
    erased = await tenant.client.delete(
        CUSTOMERS, params={"customer_id": gone}, headers=tenant.headers
    )
    assert erased.status_code == 204, erased.text


def _classify(entries: list[tuple[date, str, int]], since: date) -> dict[str, int]:
    """The dashboard's figures, by its documented rules, straight from the entries."""
    figures = dict.fromkeys(("issued", "redeemed", "expired", "removed", "outstanding"), 0)
    for day, kind, points in entries:
        figures["outstanding"] += points
        if day < since or kind == "transfer":
            continue
        if kind == "revert":
            if points > 0:
                figures["redeemed"] -= points
            else:
                figures["removed"] -= points
        elif points > 0:
            figures["issued"] += points
        elif kind == "redeem":
            figures["redeemed"] -= points
        elif kind == "expire":
            figures["expired"] -= points
        else:
            figures["removed"] -= points
    return figures


async def test_rollups_equal_the_ledger_after_random_work(
    tenant: Tenant,
    clock: Clock,
    run_jobs: Callable[[], Awaitable[JobsRun]],
    unique_id: str,
) -> None:
    await _workload(tenant, clock, run_jobs, unique_id)
    entries = await _entries(tenant)
    kinds = {kind for _, kind, _ in entries}
    # The workload reached every kind the dashboard tells apart.
    assert {"adjustment", "earn", "redeem", "revert", "expire", "erase", "transfer"} <= kinds, kinds
    rollups = await _rollups(tenant)

    expected: dict[tuple[date, str], list[int]] = defaultdict(lambda: [0, 0, 0])
    for day, kind, points in entries:
        figures = expected[(day, f"entry:{kind}")]
        figures[0 if points > 0 else 1] += abs(points)
        figures[2] += 1
    entry_rollups = {key: value for key, value in rollups.items() if key[1].startswith("entry:")}
    assert entry_rollups == {key: tuple(value) for key, value in expected.items()}

    customers = await _rows(
        tenant, "SELECT created_at, status FROM customers WHERE merchant_id = :m"
    )
    enrolled: dict[date, int] = defaultdict(int)
    for created_at, _status in customers:
        enrolled[_day(created_at)] += 1
    members = {key[0]: value for key, value in rollups.items() if key[1] == "members"}
    assert {day: plus for day, (plus, _, _) in members.items() if plus} == dict(enrolled)
    live = sum(1 for _, status in customers if status != "erased")
    erased = sum(1 for _, status in customers if status == "erased")
    assert erased > 0
    assert sum(plus - minus for plus, minus, _ in members.values()) == live

    (pending_now,) = (
        await _rows(
            tenant,
            "SELECT COALESCE(SUM(pending_points_minor), 0) FROM customer_balances "
            "WHERE merchant_id = :m",
        )
    )[0]
    pending = [value for key, value in rollups.items() if key[1] == "pending"]
    assert sum(plus - minus for plus, minus, _ in pending) == int(pending_now)
    assert any(plus for plus, _, _ in pending)

    (balances,) = (
        await _rows(
            tenant,
            "SELECT COALESCE(SUM(points_balance_minor), 0) FROM customer_balances "
            "WHERE merchant_id = :m",
        )
    )[0]
    today = utc_now().date()
    for days in dashboard_service.PERIODS:
        async with tenant.database.read() as connection:
            board = await dashboard_service.dashboard(connection, tenant.merchant_id, days)
        since = today - timedelta(days=days - 1)
        wanted = _classify(entries, since)
        assert (
            board.issued_minor,
            board.redeemed_minor,
            board.expired_minor,
            board.removed_minor,
            board.outstanding_minor,
        ) == (
            wanted["issued"],
            wanted["redeemed"],
            wanted["expired"],
            wanted["removed"],
            wanted["outstanding"],
        )
        assert board.outstanding_minor == int(balances)
        assert board.pending_minor == int(pending_now)
        assert board.members_total == live
        assert board.members_new == sum(n for day, n in enrolled.items() if day >= since)
        assert board.outstanding_value == (Decimal(int(balances)) / 100 * Decimal("0.01")).quantize(
            Decimal("0.01")
        )
        # The chart's line ends at today's outstanding and moves by each day's net.
        assert len(board.chart) == days
        assert board.chart[-1].outstanding_minor == int(balances)
        net_by_day: dict[date, int] = defaultdict(int)
        for day, _kind, points in entries:
            net_by_day[day] += points
        for before, after in zip(board.chart, board.chart[1:], strict=False):
            assert after.outstanding_minor - before.outstanding_minor == net_by_day[after.day]
        chart_issued = sum(day.issued_minor for day in board.chart)
        assert chart_issued == board.issued_minor
