"""Errors of the rewards domain."""

from __future__ import annotations

from loyalty.errors import BusinessRuleError, ConflictError, NotFoundError


class RewardNotFoundError(NotFoundError):
    code = "reward_not_found"


class CustomerRewardNotFoundError(NotFoundError):
    code = "customer_reward_not_found"


class RewardInactiveError(BusinessRuleError):
    code = "reward_inactive"


class CustomerExcludedError(BusinessRuleError):
    code = "customer_excluded"


class RewardLimitReachedError(BusinessRuleError):
    code = "reward_limit_reached"


class InvalidRewardStateError(ConflictError):
    code = "invalid_reward_state"
