"""Office-local wall-clock arithmetic. Every instant handed to this package is timezone-aware; the handbook's
times (08:30, 07:30, 17:30) are wall-clock times of the office, so they are compared in its timezone."""

from __future__ import annotations

from datetime import date, datetime, time, timedelta
from functools import cache
from zoneinfo import ZoneInfo

# Events carry timestamp-millis, so the first instant after a limit is the limit plus one millisecond.
RESOLUTION = timedelta(milliseconds=1)


@cache
def zone(name: str) -> ZoneInfo:
    return ZoneInfo(name)


def require_aware(at: datetime, what: str = "time") -> datetime:
    if at.tzinfo is None or at.utcoffset() is None:
        raise ValueError(f"{what} must be timezone-aware, got {at.isoformat()}")
    return at


def local(at: datetime, tz: str) -> datetime:
    """``at`` on the office's wall clock."""
    return require_aware(at).astimezone(zone(tz))


def local_day(at: datetime, tz: str) -> date:
    """The office-local calendar day of ``at``."""
    return local(at, tz).date()


def at_local(day: date, wall: time, tz: str) -> datetime:
    """The instant when the office's wall clock shows ``wall`` on ``day``."""
    return datetime.combine(day, wall, tzinfo=zone(tz))


def day_start(day: date, tz: str) -> datetime:
    return at_local(day, time(0), tz)


def day_last_instant(day: date, tz: str) -> datetime:
    """The last representable instant of ``day`` (23:59:59.999 local)."""
    return day_start(day + timedelta(days=1), tz) - RESOLUTION


def month_of(day: date) -> str:
    """Ledger month key, ``YYYY-MM``."""
    return f"{day.year:04d}-{day.month:02d}"
