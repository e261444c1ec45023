"""How every page writes a number: one formatter for run tables, paper pages, claims and notes."""
from __future__ import annotations

import math


def fmt(x: float | None) -> str:
    """The one number format of every page (run tables, paper pages, claims, notes): three significant
    digits (0.00531, 0.0198, 0.229, 4.75, 71.3), one decimal from 100 on (335.4), whole numbers from
    10 on without decimals (594624), and ``n/a`` for a missing or NaN value."""
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "n/a"
    if x == 0:
        return "0"
    if float(x).is_integer() and abs(x) >= 10:
        return str(int(x))
    if abs(x) >= 100:
        return f"{x:.1f}"
    return f"{x:#.3g}".rstrip(".")
