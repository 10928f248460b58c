"""Journey reports (pure): rows per journey, step and variant, uplift with its interval, CSV.

Uplift of a variant over the holdout (control) is the difference of conversion rates,
``d = p_v - p_c`` with ``p = converted / entered``, and its 95% confidence interval is
Newcombe's hybrid score interval (his method 10) built from each group's Wilson interval
``[l, u]``:

    [d - sqrt((p_v - l_v)² + (u_c - p_c)²),  d + sqrt((u_v - p_v)² + (p_c - l_c)²)]

Unlike the Wald interval it does not collapse to [0, 0] when both groups convert 0% (or 100%),
and it stays within [-1, 1]. It is reported only when both groups have entrants.
"""

from __future__ import annotations

import csv
import io
import math
from collections import defaultdict
from dataclasses import dataclass, field

Z_95 = 1.959963984540054


@dataclass
class Row:
    step_id: str = ""
    variant: str = ""
    entered: int = 0
    sent: int = 0
    delivered: int = 0
    failed: int = 0
    suppressed: int = 0
    suppressed_by_reason: dict[str, int] = field(default_factory=dict)
    converted: int = 0
    revenue_minor: int = 0


@dataclass(frozen=True)
class UpliftResult:
    variant: str
    control: str
    conversion_rate: float
    control_conversion_rate: float
    uplift: float
    ci_low: float
    ci_high: float


def wilson(converted: int, entered: int) -> tuple[float, float]:
    """The Wilson score 95% interval of one proportion."""
    p, z2 = converted / entered, Z_95 * Z_95
    centre = (p + z2 / (2 * entered)) / (1 + z2 / entered)
    half = Z_95 * math.sqrt(p * (1 - p) / entered + z2 / (4 * entered * entered)) / (1 + z2 / entered)
    return centre - half, centre + half


def uplift(variant: str, control: str, converted: int, entered: int, control_converted: int, control_entered: int):
    p_v = converted / entered
    p_c = control_converted / control_entered
    diff = p_v - p_c
    (l_v, u_v), (l_c, u_c) = wilson(converted, entered), wilson(control_converted, control_entered)
    low = diff - math.sqrt((p_v - l_v) ** 2 + (u_c - p_c) ** 2)
    high = diff + math.sqrt((u_v - p_v) ** 2 + (p_c - l_c) ** 2)
    return UpliftResult(variant, control, p_v, p_c, diff, low, high)


def build(
    instance_groups, delivery_groups, conversion_groups, *, holdout: str | None
) -> tuple[list[Row], list[UpliftResult]]:
    """``instance_groups``: (variant, entered, converted, revenue); ``delivery_groups``:
    (step, variant, status, reason, n); ``conversion_groups``: (step, variant, converted, revenue)."""
    rows: dict[tuple[str, str], Row] = defaultdict(Row)

    def row(step: str, variant: str) -> Row:
        r = rows[(step, variant)]
        r.step_id, r.variant = step, variant
        return r

    for variant, entered, converted, revenue in instance_groups:
        for r in [row("", "")] + ([row("", variant)] if variant else []):
            r.entered += entered
            r.converted += converted
            r.revenue_minor += revenue
    for step, variant, status, reason, n in delivery_groups:
        targets = [row("", ""), row(step, "")]
        if variant:
            targets += [row("", variant), row(step, variant)]
        for r in targets:
            if r.step_id:
                r.entered += n  # a step's entrants: the instances that reached it
            if status in ("sent", "delivered"):
                r.sent += n
            if status == "delivered":
                r.delivered += n
            if status in ("failed", "dead"):
                r.failed += n
            if status == "suppressed":
                r.suppressed += n
                r.suppressed_by_reason[reason] = r.suppressed_by_reason.get(reason, 0) + n
    for step, variant, converted, revenue in conversion_groups:
        for r in [row(step, "")] + ([row(step, variant)] if variant else []):
            r.converted += converted
            r.revenue_minor += revenue
    ordered = sorted(rows.values(), key=lambda r: (r.step_id != "", r.step_id, r.variant))
    uplifts: list[UpliftResult] = []
    by_variant = {r.variant: r for r in ordered if not r.step_id and r.variant}
    if holdout and holdout in by_variant and by_variant[holdout].entered:
        control = by_variant[holdout]
        for name, r in sorted(by_variant.items()):
            if name != holdout and r.entered:
                uplifts.append(uplift(name, holdout, r.converted, r.entered, control.converted, control.entered))
    return ordered, uplifts


def to_csv(rows: list[Row], uplifts: list[UpliftResult]) -> str:
    reasons = sorted({reason for r in rows for reason in r.suppressed_by_reason})
    by_variant = {u.variant: u for u in uplifts}
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(
        ["step_id", "variant", "entered", "sent", "delivered", "failed", "suppressed"]
        + [f"suppressed_{reason}" for reason in reasons]
        + ["converted", "revenue_minor", "uplift", "uplift_ci_low", "uplift_ci_high"]
    )
    for r in rows:
        u = by_variant.get(r.variant) if not r.step_id else None
        writer.writerow(
            [r.step_id, r.variant, r.entered, r.sent, r.delivered, r.failed, r.suppressed]
            + [r.suppressed_by_reason.get(reason, 0) for reason in reasons]
            + [r.converted, r.revenue_minor]
            + ([f"{u.uplift:.6f}", f"{u.ci_low:.6f}", f"{u.ci_high:.6f}"] if u else ["", "", ""])
        )
    return out.getvalue()
