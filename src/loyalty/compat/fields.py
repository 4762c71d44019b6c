"""Errors in a vendor's field names."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from loyalty.errors import ValidationFailedError


@contextmanager
def renamed_fields(names: dict[str, str]) -> Iterator[None]:
    """Re-raise validation errors with the vendor's names for our fields (all in the body)."""
    try:
        yield
    except ValidationFailedError as error:
        details = error.details if isinstance(error.details, list) else []
        renamed = []
        message = error.message
        for item in details:
            field = str(item.get("field", ""))
            vendor = names.get(field, field)
            if vendor != field:
                message = message.replace(field, vendor)
            renamed.append({**item, "field": vendor, "location": "body"})
        raise ValidationFailedError(message, renamed) from error
