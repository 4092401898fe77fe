"""An office's 轮序表 state, folded from the rotation facts the front-desk processor stored (``frontdesk_facts``).

Shared by the processor (to decide) and the API (to answer "who receives the next visitor" at the time asked).
A publication starts the day afresh except for suspensions (``rotation._published``), so the fold reads the facts
of the last published day onwards plus every suspension fact: the work per batch stays one day's worth."""

from __future__ import annotations

from sqlalchemy import Connection, func, or_, select

from services.core.codec import EventCodec
from services.staff.frontdesk_tables import frontdesk_facts
from services.staff.frontdesk_wire import ROTATION_EVENT_TYPES, SUSPENSION_EVENT_TYPES, record_to_fact
from services.staff.rotation import INITIAL, RotationState, evolve

PUBLISHED = "RotationQueuePublished"
# Refusals never change the state, and visit routings and SMS alerts are not rotation facts: neither is read.
STATE_EVENT_TYPES = sorted(ROTATION_EVENT_TYPES - {"RotationCommandRejected"})


def load_rotation_state(connection: Connection, codec: EventCodec, office_id: str) -> RotationState:
    t = frontdesk_facts
    latest = connection.execute(
        select(func.max(t.c.day)).where(t.c.office_id == office_id, t.c.event_type == PUBLISHED)
    ).scalar()
    query = select(t.c.event_type, t.c.avro).where(t.c.office_id == office_id, t.c.event_type.in_(STATE_EVENT_TYPES))
    if latest is not None:
        query = query.where(or_(t.c.day >= latest, t.c.event_type.in_(SUSPENSION_EVENT_TYPES)))
    state = INITIAL
    for _event_type, value in connection.execute(query.order_by(t.c.seq)):
        event_type, record = codec.decode(value)
        state = evolve(state, record_to_fact(event_type, record))
    return state
