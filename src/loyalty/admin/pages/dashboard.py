"""Dashboard (admin only): what the programme issued, cost and owes, over 30, 90 or 365 days.

Every figure comes from ``loyalty.dashboard.service.dashboard`` (daily rollups kept
in the ledger's transactions, so they equal the sums of the entries). The chart's
data goes in a ``<script type="application/json" id="chart-data">`` element that
``admin.js`` draws with uPlot (no inline script: the CSP allows ``'self'`` only);
the same daily figures are in a table under it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from litestar import Response, get
from markupsafe import Markup

from loyalty.admin.web import AdminRequest, current_user, database, render
from loyalty.dashboard import service as dashboard_service
from loyalty.dashboard.service import Dashboard
from loyalty.points import MINOR_PER_POINT

PERIOD_DEFAULT = 30
PERIOD_LABELS = {30: "30 days", 90: "90 days", 365: "12 months"}
# Characters that could end the JSON's <script> element or start markup inside it.
_SCRIPT_ESCAPES = {ord("<"): "\\u003c", ord(">"): "\\u003e", ord("&"): "\\u0026"}
SERIES_COLORS = {
    "issued": "#2454d6",
    "redeemed": "#0b7a3e",
    "expired": "#b42318",
    "outstanding": "#8a5cf5",
}


def points_text(minor: int) -> str:
    """Minor units as people read points: ``12,345`` or ``12,345.50``."""
    whole, fraction = divmod(abs(minor), MINOR_PER_POINT)
    sign = "-" if minor < 0 else ""
    if fraction == 0:
        return f"{sign}{whole:,}"
    return f"{sign}{whole:,}.{fraction:02d}"


def points_number(minor: int) -> float:
    """Minor units as a chart value (points)."""
    return minor / MINOR_PER_POINT


def money_text(currency: str, amount: Decimal) -> str:
    return f"{currency} {amount:,.2f}"


def point_value_text(value: Decimal) -> str:
    """``0.01`` (never ``1E-2``), at least two decimals."""
    text = format(value.normalize(), "f")
    whole, _, fraction = text.partition(".")
    return f"{whole}.{fraction.ljust(2, '0')}"


def rate_text(rate: Decimal | None) -> str:
    if rate is None:
        return "—"
    return f"{(rate * 100).quantize(Decimal('0.1'))}%"


def script_json(value: Any) -> Markup:
    """JSON safe inside a ``<script>`` element: no ``<``, ``>`` or ``&`` left as is."""
    text = json.dumps(value, separators=(",", ":")).translate(_SCRIPT_ESCAPES)
    return Markup(text)  # noqa: S704 (no character that could end the element is left)


def chart_data(figures: Dashboard) -> dict[str, Any]:
    """What admin.js's chart reads: the days and one series per line."""
    days = figures.chart

    def series(label: str, key: str, values: list[float], axis: str = "left") -> dict[str, Any]:
        return {"label": label, "values": values, "color": SERIES_COLORS[key], "axis": axis}

    return {
        "days": [day.day.isoformat() for day in days],
        "series": [
            series("Issued", "issued", [points_number(day.issued_minor) for day in days]),
            series("Redeemed", "redeemed", [points_number(day.redeemed_minor) for day in days]),
            series("Expired", "expired", [points_number(day.expired_minor) for day in days]),
            series(
                "Outstanding",
                "outstanding",
                [points_number(day.outstanding_minor) for day in days],
                axis="right",
            ),
        ],
    }


@dataclass(frozen=True, slots=True)
class Row:
    """One day of the table under the chart, as shown."""

    day: str
    issued: str
    redeemed: str
    expired: str
    outstanding: str


def parse_period(text: str | None) -> tuple[int, str | None]:
    """The period asked for, or the default and a message saying why."""
    if text is None or text == "":
        return PERIOD_DEFAULT, None
    try:
        days = int(text)
    except ValueError:
        days = 0
    if days in dashboard_service.PERIODS:
        return days, None
    return PERIOD_DEFAULT, "The period can be 30, 90 or 365 days: showing the last 30 days."


@get("/")
async def dashboard_page(request: AdminRequest) -> Response[str]:
    staff = current_user(request)
    days, alert = parse_period(request.query_params.get("days"))
    async with database(request).read() as connection:
        figures = await dashboard_service.dashboard(connection, staff.merchant_id, days)
    rows = [
        Row(
            day=day.day.isoformat(),
            issued=points_text(day.issued_minor),
            redeemed=points_text(day.redeemed_minor),
            expired=points_text(day.expired_minor),
            outstanding=points_text(day.outstanding_minor),
        )
        for day in reversed(figures.chart)
    ]
    return render(
        request,
        "dashboard/index.html",
        figures=figures,
        days=days,
        periods=[(period, PERIOD_LABELS[period]) for period in dashboard_service.PERIODS],
        points=points_text,
        outstanding_value=money_text(figures.currency, figures.outstanding_value),
        point_value=point_value_text(figures.point_value),
        redemption_rate=rate_text(figures.redemption_rate),
        chart_json=script_json(chart_data(figures)),
        rows=rows,
        alert=alert,
    )


ROUTES = [dashboard_page]
