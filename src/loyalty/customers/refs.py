"""How a request names a customer, and the error when none matches (a leaf module)."""

from __future__ import annotations

from dataclasses import dataclass

from loyalty.errors import NotFoundError


class CustomerNotFoundError(NotFoundError):
    code = "customer_not_found"


@dataclass(frozen=True, slots=True)
class CustomerRef:
    """How a request names a customer: platform id or email (exactly one)."""

    customer_id: str | None = None
    customer_email: str | None = None


def customer_not_found(ref: CustomerRef) -> CustomerNotFoundError:
    if ref.customer_id is not None:
        return CustomerNotFoundError(
            f"No enrolled customer with customer_id {ref.customer_id!r}.",
            {"customer_id": ref.customer_id},
        )
    return CustomerNotFoundError(
        "No enrolled customer with this email.", {"customer_email": ref.customer_email}
    )
