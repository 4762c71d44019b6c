"""The document an access request answers: everything held about one customer."""

from __future__ import annotations

import uuid
from datetime import datetime

import msgspec

from loyalty.customers.schemas import Customer
from loyalty.ledger.schemas import PendingCredit, Transaction
from loyalty.orders.schemas import Order, Refund
from loyalty.rewards.schemas import CustomerRewardDetail


class ActionReward(msgspec.Struct, frozen=True):
    """An action of the customer the programme rewarded (newsletter, birthday...)."""

    id: uuid.UUID
    action: str
    points: float
    earn_rule_id: uuid.UUID
    transaction_id: uuid.UUID | None
    created_at: datetime


class CustomerReferral(msgspec.Struct, frozen=True):
    """The customer's referral code (null until it was first asked for), who referred
    it (a platform id) and when its first order completed that, and how many of its
    own referrals were completed."""

    referral_code: str | None
    referred_by: str | None
    referral_completed_at: datetime | None
    referred_completed: int


class CustomerData(msgspec.Struct, frozen=True):
    """Everything held about a customer, each item as the API shows it elsewhere,
    newest first (``transactions`` by sequence)."""

    customer: Customer
    transactions: list[Transaction]
    pending_credits: list[PendingCredit]
    customer_rewards: list[CustomerRewardDetail]
    orders: list[Order]
    refunds: list[Refund]
    actions: list[ActionReward]
    referral: CustomerReferral


class CustomerDataEnvelope(msgspec.Struct, frozen=True):
    data: CustomerData
