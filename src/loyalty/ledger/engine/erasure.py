"""What an erased customer's past events keep: pure functions the stores apply.

An erasure blanks, in every event that carried the customer's platform id
(``events.customer_ref``), the personal values of its JSON payload: the
profile fields wherever they appear, the platform id wherever it names this
customer (``customer_id`` and ``*_customer_id`` keys, ``referred_by``), the
email wherever it appears, and a status change's staff note. Everything else
(ids, amounts, dates, kinds, descriptions) is kept.
"""

from __future__ import annotations

from typing import Any

import msgspec

# Keys whose values are personal data, whoever they are about.
PERSONAL_FIELDS = frozenset(
    {"email", "first_name", "last_name", "date_of_birth", "status_reason", "referral_code"}
)
# The staff note of a status change (the customer's status_reason).
_NOTES = {"customer.status_changed": "reason"}

_encoder = msgspec.json.Encoder()


def _names_a_customer(key: str) -> bool:
    return key == "customer_id" or key.endswith("_customer_id") or key == "referred_by"


def _personal(key: str, item: Any, external_id: str | None, email: str | None) -> bool:
    """Whether ``item``, under ``key``, is the erased customer's personal data."""
    if key in PERSONAL_FIELDS:
        return True
    if not isinstance(item, str):
        return False
    if external_id is not None and item == external_id and _names_a_customer(key):
        return True
    return email is not None and item.strip().lower() == email


def _scrub(value: Any, external_id: str | None, email: str | None) -> Any:
    if isinstance(value, dict):
        return {
            key: None
            if _personal(key, item, external_id, email)
            else _scrub(item, external_id, email)
            for key, item in value.items()
        }
    if isinstance(value, list):
        return [_scrub(item, external_id, email) for item in value]
    return value


def scrub_payload(event_type: str, payload: str, external_id: str | None, email: str | None) -> str:
    """The event's payload (its ``data``, JSON text) without the erased customer's
    personal data; ``email`` as stored (lower case)."""
    data = _scrub(msgspec.json.decode(payload), external_id, email)
    note = _NOTES.get(event_type)
    if note is not None and isinstance(data, dict) and note in data:
        data[note] = None
    return _encoder.encode(data).decode()
