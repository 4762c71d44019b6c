"""How a request names a customer, and the error when none matches (a leaf module)."""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from loyalty.errors import NotFoundError

# The status of a customer whose data was erased (it has no platform id or email).
ERASED = "erased"


class CustomerNotFoundError(NotFoundError):
    code = "customer_not_found"


@dataclass(frozen=True, slots=True)
class CustomerRef:
    """How a request names a customer: platform id or email (exactly one); or, for a
    customer the system found itself (an order's buyer, a reward's holder, a customer
    the scheduler has work for), its own UUID, which an erased customer keeps."""

    customer_id: str | None = None
    customer_email: str | None = None
    internal_id: uuid.UUID | None = None


def customer_not_found(ref: CustomerRef) -> CustomerNotFoundError:
    if ref.customer_id is not None:
        return CustomerNotFoundError(
            f"No enrolled customer with customer_id {ref.customer_id!r}.",
            {"customer_id": ref.customer_id},
        )
    if ref.customer_email is not None:
        return CustomerNotFoundError(
            "No enrolled customer with this email.", {"customer_email": ref.customer_email}
        )
    return CustomerNotFoundError("No such customer.", {"id": str(ref.internal_id)})
