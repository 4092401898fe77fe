"""The staff decision processor: the single writer of attendance, leave and complaint facts, and of the sanctions
they bring.

It consumes ``anchang.staff`` (keyed by staff member) and ``anchang.complaints`` (keyed by case) through the
projection runner, like the 销控 processor (services/sales/processor.py): per batch it loads each staff member's
and each case's state from SQL, runs the pure step (services/staff/staff_decide.py), produces the facts to
``anchang.staff.facts`` and every sanction as ``PenaltyIssued`` to ``anchang.discipline``, waits for the
acknowledgements, then stores the new states, the office calendar, the timers and the consumed offsets in one SQL
transaction. A crash in between re-decides the same inputs from the same state into the same ids. An office-wide
input (SpecialDayDeclared, DayEnded) is decided over every staff member of its office (ATT-05 revokes leave granted
before a blackout day was declared; ATT-01 re-judges a day closed before its DayEnded came).

Timers (a day's close, a sick certificate's window, a complaint SLA) follow the payment-deadline discipline: a
tick puts a timer *event* with a deterministic id on the input topic once it is due, so it is ordered on the log
with the person's or the case's own events, and one that fell due while the processor was down fires at the
first tick after it starts."""

from __future__ import annotations

import time
from collections.abc import Sequence
from datetime import UTC, date, datetime
from typing import Any

from prometheus_client import Counter, Gauge
from sqlalchemy import Connection, Engine, and_, delete, func, or_, select, tuple_, update

from projections.base import ConsumedEvent, upsert
from projections.timers import not_sent_recently
from services.core.catalog import Catalogue
from services.core.clock import Clock, now_in_millis, stored_utc
from services.core.codec import EventCodec
from services.ingest.events import build_system_event
from services.kafka.emitter import FactEmitter
from services.staff import staff_decide as sd
from services.staff.complaints import Stage
from services.staff.penalties import Penalty
from services.staff.penalty_wire import DISCIPLINE_TOPIC, penalty_to_record
from services.staff.policies import StaffPolicies
from services.staff.policy import DayKind
from services.staff.staff_state import ComplaintState, OfficeDay, Outcome, StaffState, Timer
from services.staff.staff_tables import complaint_states, office_days, staff_states, staff_timers
from services.staff.staff_wire import (
    COMPLAINT_EVENT_TYPES,
    COMPLAINTS_TOPIC,
    FACTS_TOPIC,
    OFFICE_EVENT_TYPES,
    STAFF_TOPIC,
    fact_event_id,
    fact_to_record,
    record_to_complaint_input,
    record_to_office_input,
    record_to_staff_input,
    timer_body,
    timer_event_id,
)

PROCESSOR_NAME = "staff-decisions"
PROCESSOR_ID = "staff-processor"  # the actor of its facts and timer events
INPUT_TOPICS = (STAFF_TOPIC, COMPLAINTS_TOPIC)
# A timer event put on the log but not decided after this long is put there again (same id: a copy is dropped).
GAUGE_EVERY_SECONDS = 10.0

PENALTIES = Counter(
    "anchang_staff_penalties_total", "Sanctions issued by the staff processor, by office, rule and kind.",
    ["office_id", "rule_id", "kind"],
)  # fmt: skip
LATE_CLOCK_INS = Counter("anchang_staff_late_clock_ins_total", "Clock-ins after 08:30 (ATT-02/03).", ["office_id"])
LEAVE_REFUSED = Counter(
    "anchang_staff_leave_refused_total", "Leave requests refused, by office and rule (ATT-05/07/08/09).",
    ["office_id", "rule_id"],
)  # fmt: skip
LEAVE_REVOKED = Counter(
    "anchang_staff_leave_revoked_total", "Granted leave days taken back by a blackout day declared later (ATT-05).",
    ["office_id"],
)  # fmt: skip
COMPLAINTS_ESCALATED = Counter(
    "anchang_staff_complaint_sla_breached_total", "Complaint deadlines missed and escalated (CMP-09, CMP-X01).",
    ["office_id", "deadline"],
)  # fmt: skip
COMPLAINTS_OPEN = Gauge("anchang_staff_complaints_open", "Complaint cases not closed, by office.", ["office_id"])


class StaffDecisions:
    """The decision step, run by a ProjectionProcessor over ``anchang.staff`` and ``anchang.complaints``."""

    tables = (staff_states, complaint_states, office_days, staff_timers)

    def __init__(
        self,
        *,
        codec: EventCodec,
        catalogue: Catalogue,
        kafka_config: dict[str, Any],
        policies: StaffPolicies,
        clock: Clock,
    ) -> None:
        self.codec = codec
        self.catalogue = catalogue
        self.policies = policies
        self.clock = clock
        self.emitter = FactEmitter(kafka_config)
        self._gauge_at = 0.0

    # ------------------------------------------------------------ deciding a batch

    def apply(self, connection: Connection, events: Sequence[ConsumedEvent]) -> None:
        # Facts go out when the SQL writes have succeeded too; a batch that raises sends none (the runner
        # then retries its records one by one and dead-letters the one that fails).
        with self.emitter.batch():
            self._apply(connection, events)

    def _apply(self, connection: Connection, events: Sequence[ConsumedEvent]) -> None:
        inputs = [event for event in events if event.topic in INPUT_TOPICS]
        if not inputs:
            return
        # Office-wide events (the calendar) come on their declarer's partition: within a batch they are applied
        # first, so that a 开盘日 declared before a leave request but fetched from another partition still counts.
        inputs.sort(key=lambda event: event.event_type not in OFFICE_EVENT_TYPES)
        recorded_at = self._now()
        calendars = self._load_calendars(connection, {event.office_id for event in inputs})
        # An office-wide event reaches every staff member of its office (ATT-01/05): all of them are loaded.
        whole_offices = {event.office_id for event in inputs if event.event_type in OFFICE_EVENT_TYPES}
        staff = self._load_staff(connection, {_staff_key(e) for e in inputs if _is_staff_input(e)}, whole_offices)
        cases = self._load_cases(connection, {_case_key(e) for e in inputs if e.topic == COMPLAINTS_TOPIC})
        changed: set[tuple[str, str]] = set()  # the staff states to store
        days_changed: set[tuple[str, date]] = set()
        timers: dict[tuple[str, str], Timer | None] = {}
        for event in inputs:
            office = event.office_id
            policy = self.policies(office)
            if event.event_type in OFFICE_EVENT_TYPES:
                office_input = record_to_office_input(event.event_type, event.record)
                if office_input is None:
                    continue
                members = {staff_id: state for (where, staff_id), state in staff.items() if where == office}
                info, revised, outcome = sd.decide_office(members, office_input, policy, calendars[office])
                calendars[office][office_input.day] = info
                days_changed.add((office, office_input.day))
                for staff_id, state in revised.items():
                    staff[(office, staff_id)] = state
                    changed.add((office, staff_id))
                self._emit(outcome, event, recorded_at)
                continue
            if event.topic == COMPLAINTS_TOPIC:
                if event.event_type not in COMPLAINT_EVENT_TYPES:
                    continue  # a type added to the topic later: not this processor's
                key = _case_key(event)
                complaint = record_to_complaint_input(event.event_type, event.record)
                case, outcome = sd.decide_complaint(cases.get(key), complaint, policy)
                if case is not None:
                    cases[key] = case
            else:
                key = _staff_key(event)
                state = staff.get(key) or StaffState(staff_id=key[1])
                command = record_to_staff_input(event.event_type, event.record)
                staff[key], outcome = sd.decide_staff(state, command, policy, calendars[office])
                changed.add(key)
            self._emit(outcome, event, recorded_at)
            for slot in outcome.cleared:
                timers[(office, slot)] = None
            for timer in outcome.timers:
                timers[(office, timer.slot)] = timer
        stored = {key: staff[key] for key in sorted(changed)}
        self._store(connection, stored, cases, calendars, days_changed, timers, recorded_at)

    def _emit(self, outcome: Outcome, event: ConsumedEvent, recorded_at: datetime) -> None:
        office = event.office_id
        for index, fact in enumerate(outcome.facts):
            record = fact_to_record(fact, event_id=fact_event_id(event.event_id, index), office_id=office,
                                    cause_id=event.event_id, processor_id=PROCESSOR_ID,
                                    recorded_at=recorded_at)  # fmt: skip
            self.emitter.produce(FACTS_TOPIC, self.codec.encode(fact.event_type, record, FACTS_TOPIC), office,
                                 fact.event_type)  # fmt: skip
            if fact.event_type == "ComplaintEscalated":
                COMPLAINTS_ESCALATED.labels(office, str(fact.payload["deadline"])).inc()
        for penalty in outcome.penalties:
            self._emit_penalty(penalty, office, recorded_at)
        if outcome.extra.get("late"):
            LATE_CLOCK_INS.labels(office).inc()
        if refused := outcome.extra.get("leave_refused"):
            LEAVE_REFUSED.labels(office, str(refused)).inc()
        if revoked := outcome.extra.get("leave_revoked"):
            LEAVE_REVOKED.labels(office).inc(int(revoked))

    def _emit_penalty(self, penalty: Penalty, office: str, recorded_at: datetime) -> None:
        record = penalty_to_record(penalty, office_id=office, processor_id=PROCESSOR_ID, recorded_at=recorded_at)
        value = self.codec.encode("PenaltyIssued", record, DISCIPLINE_TOPIC)
        self.emitter.produce(DISCIPLINE_TOPIC, value, penalty.staff_id, "PenaltyIssued")
        PENALTIES.labels(office, penalty.rule_id, str(penalty.kind)).inc()

    # ------------------------------------------------------------ state in SQL

    def _load_calendars(self, connection: Connection, offices: set[str]) -> dict[str, dict[date, OfficeDay]]:
        calendars: dict[str, dict[date, OfficeDay]] = {office: {} for office in offices}
        rows = connection.execute(select(office_days).where(office_days.c.office_id.in_(sorted(offices))))
        for row in rows:
            kind = None if row.kind is None else DayKind(row.kind)
            calendars[row.office_id][row.day] = OfficeDay(kind, stored_utc(row.last_visitor_left_at),
                                                          stored_utc(row.evening_meeting_ended_at))  # fmt: skip
        return calendars

    def _load_staff(
        self, connection: Connection, keys: set[tuple[str, str]], offices: set[str]
    ) -> dict[tuple[str, str], StaffState]:
        """The states of ``keys``, and of every staff member of ``offices``. On PostgreSQL the rows are locked (in
        key order): an office-wide event writes states of other partitions' staff, which another instance of the
        processor may be deciding at the same time."""
        if not keys and not offices:
            return {}
        columns = tuple_(staff_states.c.office_id, staff_states.c.staff_id)
        wanted = []
        if keys:
            wanted.append(columns.in_(sorted(keys)))
        if offices:
            wanted.append(staff_states.c.office_id.in_(sorted(offices)))
        query = select(staff_states).where(or_(*wanted)).order_by(staff_states.c.office_id, staff_states.c.staff_id)
        if connection.dialect.name == "postgresql":
            query = query.with_for_update()
        rows = connection.execute(query)
        return {(row.office_id, row.staff_id): StaffState.model_validate(row.state) for row in rows}

    def _load_cases(self, connection: Connection, keys: set[tuple[str, str]]) -> dict[tuple[str, str], ComplaintState]:
        if not keys:
            return {}
        columns = tuple_(complaint_states.c.office_id, complaint_states.c.complaint_id)
        rows = connection.execute(select(complaint_states).where(columns.in_(sorted(keys))))
        return {(row.office_id, row.complaint_id): ComplaintState.model_validate(row.state) for row in rows}

    def _store(
        self,
        connection: Connection,
        staff: dict[tuple[str, str], StaffState],
        cases: dict[tuple[str, str], ComplaintState],
        calendars: dict[str, dict[date, OfficeDay]],
        days_changed: set[tuple[str, date]],
        timers: dict[tuple[str, str], Timer | None],
        now: datetime,
    ) -> None:
        upsert(connection, staff_states, [
            {"office_id": office, "staff_id": staff_id, "state": state.model_dump(mode="json"), "updated_at": now}
            for (office, staff_id), state in staff.items()
        ], keys=("office_id", "staff_id"))  # fmt: skip
        upsert(connection, complaint_states, [
            {"office_id": office, "complaint_id": complaint_id, "stage": str(case.case.stage),
             "state": case.model_dump(mode="json"), "updated_at": now}
            for (office, complaint_id), case in cases.items()
        ], keys=("office_id", "complaint_id"))  # fmt: skip
        upsert(connection, office_days, [
            {"office_id": office, "day": day, "kind": None if info.kind is None else str(info.kind),
             "last_visitor_left_at": info.last_visitor_left_at,
             "evening_meeting_ended_at": info.evening_meeting_ended_at}
            for office, day in sorted(days_changed) for info in [calendars[office][day]]
        ], keys=("office_id", "day"))  # fmt: skip
        self._store_timers(connection, timers)

    def _store_timers(self, connection: Connection, timers: dict[tuple[str, str], Timer | None]) -> None:
        if not timers:
            return
        done = [key for key, timer in timers.items() if timer is None]
        for start in range(0, len(done), 400):
            chunk = done[start : start + 400]
            connection.execute(
                delete(staff_timers).where(tuple_(staff_timers.c.office_id, staff_timers.c.slot).in_(chunk))
            )
        pending = {key: timer for key, timer in timers.items() if timer is not None}
        if not pending:
            return
        current = {
            (row.office_id, row.slot): row.timer_id
            for row in connection.execute(
                select(staff_timers.c.office_id, staff_timers.c.slot, staff_timers.c.timer_id).where(
                    tuple_(staff_timers.c.office_id, staff_timers.c.slot).in_(sorted(pending))
                )
            )
        }
        rows = []
        for (office, slot), timer in pending.items():
            timer_id = timer_event_id(timer, office)
            if current.get((office, slot)) == timer_id:
                continue  # the same timer set again: keep when it was sent
            topic = self.catalogue.topic_of_type[timer.event_type].name
            rows.append({"office_id": office, "slot": slot, "timer_id": timer_id, "topic": topic, "key": timer.key,
                         "event_type": timer.event_type, "payload": _jsonable(timer.payload),
                         "due_at": timer.due_at.astimezone(UTC), "sent_at": None})  # fmt: skip
        upsert(connection, staff_timers, rows, keys=("office_id", "slot"))

    # ------------------------------------------------------------ the timers

    def fire_due_timers(self, engine: Engine) -> int:
        """Put every due timer's event on its input topic; return how many were sent."""
        now = self._now()
        with engine.begin() as connection:
            due = connection.execute(
                select(staff_timers).where(
                    staff_timers.c.due_at <= now,
                    not_sent_recently(staff_timers.c.sent_at, now),
                )
            ).all()
            for row in due:
                timer = Timer(row.slot, row.key, row.event_type, row.payload, stored_utc(row.due_at) or now)
                body = timer_body(timer, row.office_id, PROCESSOR_ID, now)
                self.emitter.produce_event(build_system_event(body, row.office_id, self.catalogue, now), self.codec)
            self.emitter.flush()
            for row in due:
                connection.execute(
                    update(staff_timers)
                    .where(and_(staff_timers.c.office_id == row.office_id, staff_timers.c.slot == row.slot))
                    .values(sent_at=now)
                )
        return len(due)

    def tick(self, engine: Engine) -> None:
        self.fire_due_timers(engine)
        if time.monotonic() - self._gauge_at >= GAUGE_EVERY_SECONDS:
            self._gauge_at = time.monotonic()
            with engine.connect() as connection:
                rows = connection.execute(
                    select(complaint_states.c.office_id, func.count())
                    .where(complaint_states.c.stage != str(Stage.CLOSED))
                    .group_by(complaint_states.c.office_id)
                )
                for office, count in rows:
                    COMPLAINTS_OPEN.labels(office).set(count)

    def _now(self) -> datetime:
        return now_in_millis(self.clock)


def _is_staff_input(event: ConsumedEvent) -> bool:
    return event.topic == STAFF_TOPIC and event.event_type not in OFFICE_EVENT_TYPES


def _staff_key(event: ConsumedEvent) -> tuple[str, str]:
    return event.office_id, str(event.record["staff_id"])


def _case_key(event: ConsumedEvent) -> tuple[str, str]:
    return event.office_id, str(event.record["complaint_id"])


def _jsonable(payload: Any) -> dict[str, Any]:
    return {key: value.isoformat() if isinstance(value, datetime | date) else value for key, value in payload.items()}
