"""Calendar months on the office's wall clock, without dateutil.

"Three months after" a moment is the same wall-clock time on the same day of the month three months later, in the
office's time zone. When that month is shorter, the moment falls on its last day at the same time:

    2024-01-15 10:00 + 3 months = 2024-04-15 10:00
    2024-11-30 10:00 + 3 months = 2025-02-28 10:00   (2024-08-31 + 3 months = 2024-11-30)
    2023-11-29 10:00 + 3 months = 2024-02-29 10:00   (leap year)
"""

from __future__ import annotations

import calendar
from datetime import datetime, tzinfo

__all__ = ["add_months", "month_key"]


def add_months(moment: datetime, months: int, tz: tzinfo) -> datetime:
    """``moment`` plus ``months`` calendar months on the wall clock of ``tz``; the day is clamped to the month's end.

    The result is timezone-aware (in ``tz``); ``moment`` must be aware too.
    """
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise ValueError("add_months needs a timezone-aware moment")
    local = moment.astimezone(tz)
    years, month_index = divmod(local.month - 1 + months, 12)
    year, month = local.year + years, month_index + 1
    day = min(local.day, calendar.monthrange(year, month)[1])
    return local.replace(year=year, month=month, day=day)


def month_key(moment: datetime, tz: tzinfo) -> str:
    """``YYYY-MM`` of ``moment`` on the wall clock of ``tz``: the month a ledger line counts in."""
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise ValueError("month_key needs a timezone-aware moment")
    return moment.astimezone(tz).strftime("%Y-%m")
