"""The dashboard's figures for a period, from the daily rollups.

The rollups are written in the same transaction as what they count (the
ledger's batches, enrolments, erasures), so every figure here equals the sum
over the ledger's entries for the same days; the reconciliation test checks
it after random workloads on both databases. Days are UTC days.

What each figure counts, by entry kind:

- **issued**: credits of every kind but ``transfer`` and ``revert``
  (earned, adjusted up, imported, released from pending);
- **redeemed**: ``redeem`` debits less ``revert`` credits (redemptions undone);
- **expired**: ``expire`` debits;
- **removed**: debits of every other kind but ``transfer`` (adjusted down,
  taken back by refunds, written off by erasures);
- **outstanding**: the sum of every entry ever (= the sum of the balances);
  transfers move points between members and change nothing above.
"""

from __future__ import annotations

import dataclasses
import uuid
from collections import defaultdict
from datetime import date, timedelta
from decimal import ROUND_HALF_UP, Decimal

from sqlalchemy.ext.asyncio import AsyncConnection

from loyalty.dashboard import repository
from loyalty.db.types import utc_now
from loyalty.errors import ValidationFailedError
from loyalty.ledger.engine.changes import ENTRY_METRIC_PREFIX, MEMBERS_METRIC, PENDING_METRIC
from loyalty.points import MINOR_PER_POINT

PERIODS = (30, 90, 365)
_NOT_ISSUED = frozenset({"transfer", "revert"})


@dataclasses.dataclass(frozen=True, slots=True)
class Day:
    """One day of the chart (points in minor units)."""

    day: date
    issued_minor: int
    redeemed_minor: int
    expired_minor: int
    # Outstanding at the end of the day.
    outstanding_minor: int


@dataclasses.dataclass(frozen=True, slots=True)
class Dashboard:
    """The period's figures (points in minor units, hundredths of a point)."""

    days: int
    since: date
    until: date  # inclusive: today (UTC)
    members_total: int
    members_new: int
    issued_minor: int
    redeemed_minor: int
    expired_minor: int
    removed_minor: int
    outstanding_minor: int
    pending_minor: int
    currency: str
    point_value: Decimal
    chart: list[Day]

    @property
    def outstanding_value(self) -> Decimal:
        """The points outstanding at ``point_value``, rounded to the cent."""
        value = Decimal(self.outstanding_minor) / MINOR_PER_POINT * self.point_value
        return value.quantize(Decimal("0.01"), rounding=ROUND_HALF_UP)

    @property
    def redemption_rate(self) -> Decimal | None:
        """Redeemed ÷ issued in the period (None when nothing was issued)."""
        if self.issued_minor <= 0:
            return None
        return Decimal(self.redeemed_minor) / Decimal(self.issued_minor)


@dataclasses.dataclass(slots=True)
class _Figures:
    issued: int = 0
    redeemed: int = 0
    expired: int = 0
    removed: int = 0
    net: int = 0

    def add(self, metric: str, plus: int, minus: int) -> None:
        kind = metric.removeprefix(ENTRY_METRIC_PREFIX)
        self.net += plus - minus
        if kind == "transfer":
            return
        if kind == "revert":
            self.redeemed -= plus
            self.removed += minus
            return
        self.issued += plus
        if kind == "redeem":
            self.redeemed += minus
        elif kind == "expire":
            self.expired += minus
        else:
            self.removed += minus


def _as_date(value: date | str | None) -> date | None:
    """A rollup's day (SQLite hands a UNION's dates over as text)."""
    if value is None or isinstance(value, date):
        return value
    return date.fromisoformat(value)


def check_period(days: int) -> int:
    if days not in PERIODS:
        raise ValidationFailedError.for_field(
            "days", "must be one of " + ", ".join(str(p) for p in PERIODS), location="query"
        )
    return days


async def dashboard(
    connection: AsyncConnection, merchant_id: uuid.UUID, days: int, *, today: date | None = None
) -> Dashboard:
    """The last ``days`` days up to today (UTC), today included."""
    check_period(days)
    until = today or utc_now().date()
    since = until - timedelta(days=days - 1)
    rows = await repository.figures(connection, merchant_id, since)
    money = await repository.money_settings(connection, merchant_id)
    all_time = _Figures()
    period = _Figures()
    daily: dict[date, _Figures] = defaultdict(_Figures)
    members_total = members_new = pending = after_period = 0
    for row in rows:
        plus, minus = int(row.plus), int(row.minus)
        day = _as_date(row.day)
        if day is None:  # all time
            if row.metric == MEMBERS_METRIC:
                members_total += plus - minus
            elif row.metric == PENDING_METRIC:
                pending += plus - minus
            elif row.metric.startswith(ENTRY_METRIC_PREFIX):
                all_time.add(row.metric, plus, minus)
        elif row.metric == MEMBERS_METRIC:
            if day <= until:
                members_new += plus
        elif row.metric.startswith(ENTRY_METRIC_PREFIX):
            if day > until:
                after_period += plus - minus
            else:
                period.add(row.metric, plus, minus)
                daily[day].add(row.metric, plus, minus)
    outstanding = all_time.net
    # The line ends at the period's last day: walk back from it.
    end_of_day = outstanding - after_period
    chart: list[Day] = []
    for offset in range(days - 1, -1, -1):
        day = since + timedelta(days=offset)
        figures = daily.get(day) or _Figures()
        chart.append(Day(day, figures.issued, figures.redeemed, figures.expired, end_of_day))
        end_of_day -= figures.net
    chart.reverse()
    return Dashboard(
        days=days,
        since=since,
        until=until,
        members_total=members_total,
        members_new=members_new,
        issued_minor=period.issued,
        redeemed_minor=period.redeemed,
        expired_minor=period.expired,
        removed_minor=period.removed,
        outstanding_minor=outstanding,
        pending_minor=pending,
        currency=money.currency,
        point_value=Decimal(money.point_value_micros) / 1_000_000,
        chart=chart,
    )
