"""Markdown tables: one format for the reports, the terminal summaries and the notebooks."""

from __future__ import annotations

import math
import numbers
from collections.abc import Sequence


def cell(value, digits: int = 3) -> str:
    """A real number to ``digits`` decimals, a missing or non-finite one as '–', whole numbers and text as
    they are."""
    if value is None:
        return "–"
    if isinstance(value, bool | str | numbers.Integral):
        return str(value)
    if isinstance(value, numbers.Real):
        return f"{float(value):.{digits}f}" if math.isfinite(value) else "–"
    return str(value)


def markdown(header: Sequence[str], rows: Sequence[Sequence]) -> list[str]:
    """``| a | b |`` lines: the header, the rule, then the rows (cells already text, or values for
    ``cell``)."""
    lines = ["| " + " | ".join(header) + " |", "|---" * len(header) + "|"]
    lines += ["| " + " | ".join(c if isinstance(c, str) else cell(c) for c in row) + " |" for row in rows]
    return lines


def records(
    rows: Sequence[dict],
    columns: Sequence[str],
    key: str,
    digits: int = 3,
    labels: dict[str, str] | None = None,
) -> list[str]:
    """A table of dicts: first column ``key``, then ``columns`` (headed by ``labels``, else their names)."""
    header = [key, *((labels or {}).get(c, c) for c in columns)]
    return markdown(header, [[str(r[key]), *(cell(r.get(c), digits) for c in columns)] for r in rows])
