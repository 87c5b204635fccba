"""Tick labels for the plots' logarithmic axes that never repeat and never pile up.

matplotlib's LogFormatter with minor labels switched on printed, on an axis spanning less than
a decade (where the minor ticks become linear: 0.14, 0.15, ...), one-digit labels that all read
"2e-01", and on wide axes a label at every minor tick, overlapping.
"""

from __future__ import annotations

from matplotlib.ticker import Formatter

# Most significant digits a tick label gets to differ from its neighbours (an axis spanning
# 31.6088 to 31.6102, a parameter norm over a few epochs, needs 6).
MAX_LABEL_DIGITS = 6


class DistinctLogLabels(Formatter):
    """Major ticks (powers of ten) are always labelled; minor ticks only when fewer than two
    majors are in view. Labels get the fewest significant digits that tell the visible ones
    apart, in plain notation from 1e-3 to 1e4 and as "3e-5" outside."""

    def __init__(self, minor: bool) -> None:
        self.minor = minor

    def __call__(self, x: float, pos: int | None = None) -> str:
        return self.format_ticks([x])[0]

    def format_ticks(self, values) -> list[str]:
        lo, hi = sorted(self.axis.get_view_interval())
        if self.minor and sum(lo <= v <= hi for v in self.axis.get_majorticklocs()) >= 2:
            return [""] * len(values)
        visible = [v for v in values if lo <= v <= hi]
        digits = next((d for d in range(1, MAX_LABEL_DIGITS + 1)
                       if len({tick_text(v, d) for v in visible}) == len(visible)), MAX_LABEL_DIGITS)
        return [tick_text(v, digits) for v in values]


def tick_text(value: float, digits: int) -> str:
    """`value` with `digits` significant digits: 0.15, 1000, 3e-5, 1.5e5."""
    if value != 0 and not 1e-3 <= abs(value) < 1e4:
        mantissa, exponent = f"{value:.{digits - 1}e}".split("e")
        return f"{mantissa}e{int(exponent)}"
    rounded = float(f"{value:.{digits}g}")  # "g" alone writes 10 as "1e+01" at one digit
    return f"{rounded:.{MAX_LABEL_DIGITS + 3}f}".rstrip("0").rstrip(".")
