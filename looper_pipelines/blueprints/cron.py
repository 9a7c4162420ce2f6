"""Cron expressions of blueprint schedules, checked without importing Dagster.

The accepted syntax is a subset of what Dagster 1.13 accepts (``dagster._utils.schedules.
is_valid_cron_string``; ``assets_tests/test_hostile_inputs.py`` checks the two agree on
every expression accepted here), so a blueprint that validates never makes the Dagster code
location fail to load:

- ``@hourly``, ``@daily``, ``@midnight``, ``@weekly``, ``@monthly``, ``@yearly``, ``@annually``;
- or five fields separated by spaces -- minute (0-59), hour (0-23), day of month (1-31),
  month (1-12 or jan-dec), day of week (0-7, 0 and 7 are Sunday, or sun-sat) -- each a
  comma-separated list of ``*``, ``*/step``, ``value``, ``low-high`` or ``low-high/step``.

A schedule that can never fire (``0 3 30 2 *``, the 30th of February) is refused.
"""

from __future__ import annotations

import re

MAX_CRON_CHARS = 100
ALIASES = {"@hourly", "@daily", "@midnight", "@weekly", "@monthly", "@yearly", "@annually"}
_MONTHS = ["jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"]
_DAYS = ["sun", "mon", "tue", "wed", "thu", "fri", "sat"]
# name, low, high, names (index + low = value)
_FIELDS: list[tuple[str, int, int, list[str]]] = [
    ("minute", 0, 59, []),
    ("hour", 0, 23, []),
    ("day of month", 1, 31, []),
    ("month", 1, 12, _MONTHS),
    ("day of week", 0, 7, _DAYS),
]
_ITEM = re.compile(r"^(?:(\*)|([0-9a-z]{1,3})(?:-([0-9a-z]{1,3}))?)(?:/([0-9]{1,2}))?$")
_DAYS_IN_MONTH = [31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31]


def _value(text: str, field: str, low: int, high: int, names: list[str]) -> int:
    if text.isdigit():
        v = int(text)
    elif text in names:
        v = names.index(text) + (1 if field == "month" else 0)
    else:
        raise ValueError(f"{field} {text!r} is not a number{' or a name' if names else ''}")
    if not low <= v <= high:
        raise ValueError(f"{field} {v} is outside {low}-{high}")
    return v


def _expand(part: str, field: str, low: int, high: int, names: list[str]) -> set[int]:
    out: set[int] = set()
    for item in part.split(","):
        m = _ITEM.match(item)
        if m is None:
            raise ValueError(f"{field} {item!r} is not *, */step, a value or a range low-high[/step]")
        star, first, last, step_text = m.groups()
        step = int(step_text) if step_text else 1
        if not 1 <= step <= high - low + 1:
            raise ValueError(f"{field} step {step} is outside 1-{high - low + 1}")
        if star:
            a, b = low, high
        else:
            a = _value(first, field, low, high, names)
            b = _value(last, field, low, high, names) if last else a
            if step_text and not last:
                raise ValueError(f"{field} {item!r}: a step needs * or a range (low-high/step)")
            if a > b:
                raise ValueError(f"{field} range {item!r} runs backwards")
        out.update(range(a, b + 1, step))
    return out


def check_cron(expression: str) -> str:
    """``expression`` if it is an accepted cron expression (see the module), else ValueError."""
    if len(expression) > MAX_CRON_CHARS:
        raise ValueError(f"a cron expression has at most {MAX_CRON_CHARS} characters, got {len(expression)}")
    text = expression.strip().lower()
    if text in ALIASES:
        return expression
    parts = text.split()
    if len(parts) != 5:
        raise ValueError(
            f"{expression!r} is not a cron expression: expected 5 fields (minute hour day-of-month month "
            f"day-of-week, e.g. '0 3 * * *') or one of {', '.join(sorted(ALIASES))}, got {len(parts)} field(s)"
        )
    sets = [_expand(p, f, lo, hi, nm) for p, (f, lo, hi, nm) in zip(parts, _FIELDS, strict=True)]
    days, months = sets[2], sets[3]
    if parts[4] == "*" and all(d > _DAYS_IN_MONTH[m - 1] for m in months for d in days):
        raise ValueError(f"{expression!r} never fires: no listed month has the listed day(s) of month")
    return expression
