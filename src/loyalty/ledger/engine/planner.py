"""Planning a batch: idempotency leaders and followers, arrival order, one outcome each.

Given the movements in arrival order, what the database already holds for
their idempotency keys, and a ``BatchTx`` over the locked customers, decide
each movement on its own (an insufficient debit fails alone). The first
request of a key in the batch leads; a later one with the same request follows
(it gets the leader's answer, replayed), with another request it is refused. A key
used before the batch answers each of its requests from what it holds, whatever
else the batch sent with it. Pure: no I/O.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import msgspec

from loyalty.errors import LoyaltyError
from loyalty.idempotency.errors import (
    IdempotencyKeyReusedError,
    IdempotencyRequestInProgressError,
)
from loyalty.ledger.engine.protocol import Movement, Outcome
from loyalty.ledger.engine.rows import KeyRef, StoredKey
from loyalty.ledger.engine.tx import BatchTx

_encoder = msgspec.json.Encoder()


def key_leaders(movements: Sequence[Movement]) -> dict[KeyRef, str]:
    """Each distinct idempotency key of the batch, with its first request's fingerprint."""
    leaders: dict[KeyRef, str] = {}
    for movement in movements:
        key = movement.key_ref
        if key is not None and key not in leaders:
            leaders[key] = movement.request_fingerprint
    return leaders


def error_outcome(error: LoyaltyError) -> Outcome:
    return Outcome(error.status_code, _encoder.encode(error.to_body()))


@dataclasses.dataclass(slots=True)
class Plan:
    outcomes: list[Outcome | None]
    # Later duplicates of a key inside the batch answer with the first one's outcome.
    followers: dict[int, int] = dataclasses.field(default_factory=dict)
    # Movements whose outcome is not stored under their key (refused before running).
    unstored: set[int] = dataclasses.field(default_factory=set)

    def resolved(self) -> list[Outcome]:
        """Every outcome, duplicates inside the batch replaying their leader's."""
        outcomes: list[Outcome] = []
        for index, outcome in enumerate(self.outcomes):
            if outcome is None:
                leader = self.outcomes[self.followers[index]]
                assert leader is not None
                # A leader refused before it ran (validation) stored nothing to replay.
                replayed = self.followers[index] not in self.unstored
                outcome = Outcome(leader.status_code, leader.body, replayed=replayed)
            outcomes.append(outcome)
        return outcomes


def plan_batch(
    movements: Sequence[Movement],
    *,
    claimed: set[KeyRef],
    stored: dict[KeyRef, StoredKey],
    tx: BatchTx,
) -> list[Outcome]:
    """Decide every movement in arrival order; the changes accumulate in ``tx``."""
    plan = Plan(outcomes=[None] * len(movements))
    first_index: dict[KeyRef, int] = {}
    changes = tx.changes
    for index, movement in enumerate(movements):
        key = movement.key_ref
        if key is not None:
            if key not in claimed and key in stored:
                # Used before this batch: every request with it answers from what it holds.
                plan.outcomes[index] = _replay(movement, stored[key])
                continue
            if key in first_index:
                leader = movements[first_index[key]]
                if leader.request_fingerprint == movement.request_fingerprint:
                    plan.followers[index] = first_index[key]
                else:
                    plan.outcomes[index] = error_outcome(_key_reused(movement))
                continue
            first_index[key] = index
        tx.actor = movement.actor
        try:
            result = movement.operation.decide(movement.merchant_id, tx)
            outcome = Outcome(result.status_code, _encoder.encode(result.body))
        except LoyaltyError as error:
            outcome = error_outcome(error)
            if key is not None and not error.replayable:
                changes.keys_released.append(key)
                plan.unstored.add(index)
                key = None
        plan.outcomes[index] = outcome
        if key is not None:
            changes.keys_stored.append((key[0], key[1], outcome.status_code, outcome.body.decode()))
    tx.settle()
    return plan.resolved()


def _replay(movement: Movement, stored: StoredKey) -> Outcome:
    if stored.request_fingerprint != movement.request_fingerprint:
        return error_outcome(_key_reused(movement))
    if stored.response_status == 0:
        return error_outcome(
            IdempotencyRequestInProgressError(
                "A request with this Idempotency-Key is still in progress; retry shortly.",
                {"idempotency_key": movement.idempotency_key},
            )
        )
    return Outcome(stored.response_status, stored.response_body.encode(), replayed=True)


def _key_reused(movement: Movement) -> IdempotencyKeyReusedError:
    return IdempotencyKeyReusedError(
        "This Idempotency-Key was used with a different request.",
        {"idempotency_key": movement.idempotency_key},
    )
