"""The native API (``/api/v1/...``) as a surface: ``Authorization: Bearer <key>``,
errors as ``{"error": {"code", "message", "details"}}`` with their own status.

Its prefix is ``/``: every path no vendor's surface claims (health, docs, an
unknown path) answers in the native shape.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import msgspec
from litestar.openapi.spec import SecurityScheme

from loyalty.customers.endpoints import CustomerController
from loyalty.customers.list_endpoints import CustomerListController
from loyalty.earning.endpoints import EarnRuleController
from loyalty.errors import UnauthorizedError
from loyalty.exports.endpoints import ExportController
from loyalty.http.surface import BEARER_CHALLENGE, Credentials, Surface, header
from loyalty.imports.endpoints import ImportController
from loyalty.ledger.endpoints import (
    ActionController,
    PendingController,
    TransactionController,
    TransferController,
)
from loyalty.merchants.endpoints import ProgramSettingsController
from loyalty.orders.endpoints import OrderController
from loyalty.rewards.endpoints import RedeemableController, RewardController
from loyalty.tiers.endpoints import TierController
from loyalty.webhooks.endpoints import EventController, WebhookController

_encoder = msgspec.json.Encoder()


def credentials(headers: Mapping[str, str], query: Mapping[str, Any]) -> Credentials:
    scheme, _, token = header(headers, "authorization").partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise UnauthorizedError("Send your API key as 'Authorization: Bearer <key>'.")
    return Credentials(token.strip())


def error_body(status_code: int, code: str, message: str, details: Any, path: str) -> bytes:
    return _encoder.encode({"error": {"code": code, "message": message, "details": details}})


SURFACE = Surface(
    name="native",
    prefix="/",
    credentials=credentials,
    error_body=error_body,
    security_schemes={
        "BearerAuth": SecurityScheme(
            type="http", scheme="bearer", description="An API key: `lk_...`"
        ),
    },
    controllers=(
        CustomerController,
        ImportController,
        CustomerListController,
        TransactionController,
        TransferController,
        PendingController,
        ActionController,
        RedeemableController,
        RewardController,
        ProgramSettingsController,
        TierController,
        EarnRuleController,
        OrderController,
        WebhookController,
        EventController,
        ExportController,
    ),
    key_refused_challenge=f'{BEARER_CHALLENGE}, error="invalid_token"',
)
