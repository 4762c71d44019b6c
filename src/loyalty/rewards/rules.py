"""``reward_rule`` validation, one shape per ``reward_type``."""

from __future__ import annotations

from typing import Annotated, Any

import msgspec

from loyalty.decoding import validation_error
from loyalty.errors import ValidationFailedError
from loyalty.points import MAXIMUM_DECIMALS, PointsFormatError, parse_points

Positive = Annotated[float, msgspec.Meta(gt=0, le=1_000_000_000)]
Percentage = Annotated[float, msgspec.Meta(ge=1, le=100)]
ProductId = Annotated[str, msgspec.Meta(min_length=1, max_length=255)]


class _Rule(msgspec.Struct, forbid_unknown_fields=True, omit_defaults=True, kw_only=True):
    points_required: float | None = None


class FixedDiscountRule(_Rule, kw_only=True):
    discount_value: Positive


class PercentageDiscountRule(_Rule, kw_only=True):
    discount_percentage: Percentage


class FreeShippingRule(_Rule, kw_only=True):
    max_shipping_amount: Positive | None = None


class FreeProductRule(_Rule, kw_only=True):
    product_id: ProductId | None = None
    variant_id: ProductId | None = None


class StoreCreditRule(_Rule, kw_only=True):
    credit_amount: Positive


# Amounts of money in the shop's currency: cents at most.
MONEY_FIELDS = frozenset({"discount_value", "max_shipping_amount", "credit_amount"})

RULES: dict[str, type[_Rule]] = {
    "fixed_discount": FixedDiscountRule,
    "percentage_discount": PercentageDiscountRule,
    "free_shipping": FreeShippingRule,
    "free_product": FreeProductRule,
    "store_credit": StoreCreditRule,
}


def _rule_error(field: str, message: str) -> ValidationFailedError:
    return ValidationFailedError.for_field(f"reward_rule.{field}", message)


def _whole(value: Any) -> Any:
    return int(value) if isinstance(value, float) and value.is_integer() else value


def validate_rule(reward_type: str, rule: dict[str, Any], points_cost: float) -> dict[str, Any]:
    """The rule checked for its type, with ``points_required`` set to the cost."""
    try:
        parsed = msgspec.convert(rule, type=RULES[reward_type], strict=True)
    except msgspec.ValidationError as error:
        detail = validation_error(error).details[0]
        raise _rule_error(detail["field"], detail["message"]) from error
    if isinstance(parsed, FreeProductRule) and not (parsed.product_id or parsed.variant_id):
        raise _rule_error("product_id", "free_product needs a product_id or a variant_id")
    if parsed.points_required is not None and parsed.points_required != points_cost:
        raise _rule_error("points_required", "must equal points_cost when given")
    fields = {key: _whole(value) for key, value in msgspec.to_builtins(parsed).items()}
    for key in MONEY_FIELDS & fields.keys():
        try:
            parse_points(fields[key], MAXIMUM_DECIMALS)
        except PointsFormatError as error:
            raise _rule_error(key, "money has at most 2 decimal places") from error
    fields.pop("points_required", None)
    return {"points_required": _whole(points_cost), **fields}
