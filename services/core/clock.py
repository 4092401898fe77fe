"""Time as an input. Business logic receives a ``Clock``; only the shell uses the system one."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import TypeVar, cast

Clock = Callable[[], datetime]
T = TypeVar("T")


def system_clock() -> datetime:
    return datetime.now(UTC)


class FrozenClock:
    """A clock tests move by hand."""

    def __init__(self, at: datetime) -> None:
        self.at = at

    def __call__(self) -> datetime:
        return self.at

    def advance(self, by: timedelta) -> None:
        self.at += by


def to_millis(moment: datetime) -> int:
    return int(moment.timestamp() * 1000)


def from_millis(millis: int) -> datetime:
    return datetime.fromtimestamp(millis / 1000, UTC)


def now_in_millis(clock: Clock) -> datetime:
    """The clock's time in UTC, cut to milliseconds: Avro keeps milliseconds, so a processor decides with the
    precision the log will replay."""
    return from_millis(to_millis(clock().astimezone(UTC)))


def stored_utc(value: T) -> T:
    """A value read back from SQL, with a naive datetime made aware: SQLite drops the offset, and everything Anchang
    stores is UTC. Anything else (aware datetimes, None, other values) is returned as it is."""
    if isinstance(value, datetime) and value.tzinfo is None:
        return cast(T, value.replace(tzinfo=UTC))
    return value
