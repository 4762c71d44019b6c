"""The rewards domain's scheduled work: customer rewards past their ``expires_at``."""

from __future__ import annotations

from collections.abc import Mapping

from loyalty.rewards import service
from loyalty.scheduling import Job, JobContext


async def expire_codes(context: JobContext) -> Mapping[str, float]:
    """Discount codes past ``expires_at`` become ``expired`` (no refund)."""
    return {"rewards_expired": await service.expire_due_rewards(context.database)}


JOBS = (
    Job(
        "rewards_expiry",
        None,
        expire_codes,
        summary="expired {rewards_expired} customer reward(s)",
    ),
)
