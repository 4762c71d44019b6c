"""The ledger engine against a model, in process: a Hypothesis state machine.

Each step runs a random batch of movements (credits, debits, transfers, holds,
releases, cancellations, some under idempotency keys, some keys reused with
the same or another request) through the real planner and ``BatchTx`` on the
memory store, and a plain model of what each customer should have decides
each movement's status in arrival order. After every step: every status as
the model says, balance = sum of entries >= 0, sequences 1..n, lifetime and
pending points as the model says. The HTTP model (``tests/system``) runs the
same idea end to end against a server.
"""

from __future__ import annotations

import asyncio
import uuid
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule, run_state_machine_as_test

from loyalty.ledger.engine.protocol import Movement, Operation, Outcome
from loyalty.ledger.operations.adjust import Adjust
from loyalty.ledger.operations.holds import Cancel, Hold, Release
from loyalty.ledger.operations.transfers import TransferPoints
from tests.support.engine import MemoryLedger, body, ref

CUSTOMERS = 3


@dataclass
class Expected:
    balance: int = 0
    lifetime: int = 0
    holds: dict[uuid.UUID, int] = field(default_factory=dict)  # pending id -> points


customer_index = st.integers(0, CUSTOMERS - 1)
points = st.integers(1, 40).map(lambda p: p * 100)
keys = st.none() | st.sampled_from(["k1", "k2", "k3", "k4"])
step = st.one_of(
    st.tuples(st.just("adjust"), customer_index, points, keys),
    st.tuples(st.just("adjust"), customer_index, points.map(lambda p: -p), keys),
    st.tuples(st.just("transfer"), customer_index, st.integers(1, CUSTOMERS - 1), points, keys),
    st.tuples(st.just("hold"), customer_index, points),
    st.tuples(st.just("release"), customer_index),
    st.tuples(st.just("cancel"), customer_index, st.integers(0, 5)),
)


class EngineModel(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.ledger = MemoryLedger()
        self.customers = [self.ledger.customer(f"c{n}") for n in range(CUSTOMERS)]
        self.expected = [Expected() for _ in range(CUSTOMERS)]
        # key -> (fingerprint, the first answer's status and body)
        self.keys: dict[str, tuple[str, int, bytes]] = {}
        self.finished: set[uuid.UUID] = set()  # holds released or cancelled
        self.targets: list[uuid.UUID] = []  # the holds this batch's cancels name

    def _cancelled(self, spec: tuple[Any, ...]) -> uuid.UUID:
        """The hold a cancel names: one pending before its batch (or an unknown id)."""
        holds: list[uuid.UUID] = sorted(self.expected[spec[1]].holds) or [uuid.UUID(int=0)]
        target: uuid.UUID = holds[spec[2] % len(holds)]
        return target

    def _operation(self, spec: tuple[Any, ...]) -> tuple[Operation, str | None]:
        kind = spec[0]
        if kind == "adjust":
            _, c, amount, key = spec
            customer = ref(self.customers[c])
            return Adjust(customer, amount, apply_to_lifetime=amount > 0), key
        if kind == "transfer":
            _, a, offset, amount, key = spec
            b = (a + offset) % CUSTOMERS
            return TransferPoints(ref(self.customers[a]), ref(self.customers[b]), amount), key
        if kind == "hold":
            _, c, amount = spec
            adjust = Adjust(ref(self.customers[c]), amount, apply_to_lifetime=True)
            return Hold(adjust, self.ledger.now + timedelta(days=7)), None
        if kind == "release":
            return Release(ref(self.customers[spec[1]])), None
        return Cancel(ref(self.customers[spec[1]]), self._cancelled(spec)), None

    def _predict(self, spec: tuple[Any, ...], outcome: Outcome) -> int:
        """Apply one movement to the model; the status it must have answered."""
        kind = spec[0]
        if kind == "adjust":
            e = self.expected[spec[1]]
            if e.balance + spec[2] < 0:
                return 422
            e.balance += spec[2]
            e.lifetime += max(spec[2], 0)
            return 201
        if kind == "transfer":
            a, b = spec[1], (spec[1] + spec[2]) % CUSTOMERS
            if self.expected[a].balance < spec[3]:
                return 422
            self.expected[a].balance -= spec[3]
            self.expected[b].balance += spec[3]
            return 201
        e = self.expected[spec[1]]
        if kind == "hold":
            e.holds[uuid.UUID(body(outcome)["data"]["id"])] = spec[2]
            return 201
        if kind == "release":
            released = sum(e.holds.values())
            e.balance += released
            e.lifetime += released
            self.finished.update(e.holds)
            e.holds.clear()
            return 200
        target = self.targets.pop(0)
        if e.holds.pop(target, None) is not None:
            self.finished.add(target)
            return 200
        return 409 if target in self.finished else 404

    @rule(specs=st.lists(step, min_size=1, max_size=8))
    def run_a_batch(self, specs: list[tuple[Any, ...]]) -> None:
        movements: list[Movement] = []
        self.targets = [self._cancelled(spec) for spec in specs if spec[0] == "cancel"]
        for spec in specs:
            operation, key = self._operation(spec)
            movements.append(self.ledger.movement(operation, key=key, fingerprint=repr(spec)))
        outcomes = asyncio.run(self.ledger.batch(movements))
        for spec, movement, outcome in zip(specs, movements, outcomes, strict=True):
            key = movement.idempotency_key
            if key is not None and key in self.keys:
                fingerprint, status, first = self.keys[key]
                if fingerprint == movement.request_fingerprint:
                    assert (outcome.status_code, outcome.body) == (status, first)
                    assert outcome.replayed
                else:
                    assert outcome.status_code == 422
                    assert body(outcome)["error"]["code"] == "idempotency_key_reused"
                continue
            expected = self._predict(spec, outcome)
            assert outcome.status_code == expected, (spec, body(outcome))
            if key is not None:
                self.keys[key] = (movement.request_fingerprint, outcome.status_code, outcome.body)

    @invariant()
    def books_add_up(self) -> None:
        for customer, expected in zip(self.customers, self.expected, strict=True):
            stored = self.ledger.stored(customer)
            entries = self.ledger.entries(customer)
            assert [e.sequence for e in entries] == list(range(1, len(entries) + 1))
            running = 0
            for entry in entries:
                running += entry.points_minor
                assert running >= 0
                assert entry.balance_after_minor == running
            assert stored.points_balance_minor == running == expected.balance
            assert stored.lifetime_points_minor == expected.lifetime
            assert stored.pending_points_minor == sum(expected.holds.values())


def test_the_engine_agrees_with_the_model() -> None:
    run_state_machine_as_test(
        EngineModel, settings=settings(max_examples=60, stateful_step_count=20, deadline=None)
    )
