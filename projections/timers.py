"""What the decision processors' timers share: when a timer event counts as lost and is sent again.

A processor's tick puts a timer event (deterministic id) on its input topic and notes when; the event is decided
in log order. One still undecided after ``TIMER_RESEND_AFTER`` was evidently lost (a crash before the send was
acknowledged) and is sent again; the copy has the same id, so it is decided at most once."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import ColumnElement, or_

TIMER_RESEND_AFTER = timedelta(seconds=5)


def not_sent_recently(sent_at: ColumnElement[Any], now: datetime) -> ColumnElement[bool]:
    """The timer's event was never sent, or sent so long ago that it was lost."""
    return or_(sent_at.is_(None), sent_at <= now - TIMER_RESEND_AFTER)
