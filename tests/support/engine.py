"""The ledger engine in this process, on the memory store: no database, no server.

``MemoryLedger`` seeds merchants, customers, rewards and rules as typed rows,
runs movements as one batch (``batch``) or through the group-commit queue
(``submit``), with the clock, ids and discount codes injected.
"""

from __future__ import annotations

import itertools
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import msgspec

from loyalty.customers.refs import CustomerRef
from loyalty.ledger.engine.batch import run_batch
from loyalty.ledger.engine.protocol import Movement, Operation, Outcome
from loyalty.ledger.engine.queue import GroupCommitQueue
from loyalty.ledger.engine.rows import (
    EarnRuleRow,
    EntryRow,
    LockedCustomer,
    RewardRow,
    TierRow,
)
from loyalty.ledger.storage.memory import MemoryStore

START = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)


def body(outcome: Outcome) -> dict[str, Any]:
    decoded: dict[str, Any] = msgspec.json.decode(outcome.body)
    return decoded


class MemoryLedger:
    def __init__(self) -> None:
        self.store = MemoryStore()
        self.now = START
        self._ids = itertools.count(1)
        self._codes = itertools.count(1)
        self.codes_drawn: list[str] = []
        self.merchant_id = self.merchant()

    # Injected: the clock, ids, discount codes ----------------------------------------

    def new_id(self) -> uuid.UUID:
        return uuid.UUID(int=next(self._ids))

    def draw_code(self, prefix: str) -> str:
        code = f"{prefix}-{next(self._codes):04d}"
        self.codes_drawn.append(code)
        return code

    def advance(self, **delta: float) -> None:
        self.now += timedelta(**delta)

    # Seeding ------------------------------------------------------------------------

    def merchant(self) -> uuid.UUID:
        return uuid.uuid4()

    def customer(
        self,
        external_id: str,
        points: int = 0,
        *,
        merchant_id: uuid.UUID | None = None,
        email: str | None = None,
        **fields: Any,
    ) -> LockedCustomer:
        """A customer with ``points`` (whole points) and the given settings/columns."""
        merchant_id = merchant_id or self.merchant_id
        customer = LockedCustomer(
            merchant_id=merchant_id,
            customer_id=uuid.uuid4(),
            external_id=external_id,
            email=email,
            points_balance_minor=0,
            lifetime_points_minor=0,
            points_spent_minor=0,
            points_expired_minor=0,
            last_sequence=0,
            **{
                "default_description": "Points adjustment",
                "discount_code_prefix": "SHOP",
                **fields,
            },
        )
        self.store.tables.customers[customer.key] = customer
        if points:
            self.store.tables.customers[customer.key].points_balance_minor = points * 100
            self.store.tables.customers[customer.key].lifetime_points_minor = points * 100
            self.store.tables.customers[customer.key].last_sequence = 1
            self.store.tables.entries.append(
                EntryRow(merchant_id, self.new_id(), customer.customer_id, 1, points * 100,
                         "adjustment", "opening", None, True, True, points * 100, points * 100,
                         None, None, "system", self.now)
            )  # fmt: skip
        return customer

    def stored(self, customer: LockedCustomer) -> LockedCustomer:
        return self.store.tables.customers[customer.key]

    def balance(self, customer: LockedCustomer) -> float:
        return self.stored(customer).points_balance_minor / 100

    def reward(self, name: str, cost: int, **fields: Any) -> RewardRow:
        values: dict[str, Any] = {
            "merchant_id": self.merchant_id, "id": uuid.uuid4(), "name": name,
            "reward_type": "fixed_discount", "points_cost_minor": cost * 100,
            "reward_rule": '{"discount_value": 5}', "active": True, "deleted": False,
            "code_validity_days": None, "per_customer_limit": None,
        }  # fmt: skip
        reward = RewardRow(**{**values, **fields})
        self.store.tables.rewards[(reward.merchant_id, reward.id)] = reward
        return reward

    def earn_rule(self, rule_type: str, points: int = 0, **fields: Any) -> EarnRuleRow:
        values: dict[str, Any] = {
            "merchant_id": self.merchant_id, "type": rule_type, "id": uuid.uuid4(),
            "points_minor": points * 100, "active": True, "points_per_currency_unit_minor": None,
            "rounding": None, "min_order_total_minor": None, "pending_days": None,
            "referee_points_minor": None, "max_per_customer": None, "period_days": None,
        }  # fmt: skip
        rule = EarnRuleRow(**{**values, **fields})
        self.store.tables.earn_rules[(rule.merchant_id, rule.type)] = rule
        return rule

    def tier(
        self, name: str, threshold: int, retention_days: int | None = None, multiplier: int = 100
    ) -> TierRow:
        tier = TierRow(
            self.merchant_id, uuid.uuid4(), name, threshold * 100, retention_days, multiplier
        )
        self.store.tables.tiers.setdefault(self.merchant_id, []).append(tier)
        return tier

    # Running ------------------------------------------------------------------------

    def movement(
        self, operation: Operation, *, key: str | None = None, fingerprint: str = "f"
    ) -> Movement:
        return Movement(self.merchant_id, operation, key, fingerprint)

    async def batch(self, movements: Sequence[Movement]) -> list[Outcome]:
        """The movements as one batch, in this order."""
        async with self.store.batch() as session:
            return await run_batch(
                session, movements, now=self.now, new_id=self.new_id, draw_code=self.draw_code
            )

    async def one(self, operation: Operation, **kwargs: Any) -> Outcome:
        (outcome,) = await self.batch([self.movement(operation, **kwargs)])
        return outcome

    def queue(self, **kwargs: Any) -> GroupCommitQueue:
        return GroupCommitQueue(
            self.store,
            clock=lambda: self.now,
            new_id=self.new_id,
            draw_code=self.draw_code,
            **kwargs,
        )

    def entries(self, customer: LockedCustomer) -> list[EntryRow]:
        return [e for e in self.store.tables.entries if e.customer_id == customer.customer_id]

    def event_types(self) -> list[str]:
        return [event.type for event in self.store.tables.events]


def ref(customer: LockedCustomer) -> CustomerRef:
    return CustomerRef(customer_id=customer.external_id)
