"""The front desk's read side: what the API answers, computed from the processor's tables (frontdesk_tables.py) with
the pure core (rotation.py, calls.py, kpi.py). Synchronous functions of a connection: the router runs them in a
thread, tests call them directly. Time is an argument: nothing here reads a clock."""

from __future__ import annotations

import calendar
from collections import defaultdict
from dataclasses import asdict
from datetime import date, datetime
from typing import Any

from sqlalchemy import Connection, column, inspect, select, table

from services.core.clock import stored_utc
from services.core.codec import EventCodec
from services.staff import kpi
from services.staff.calls import CallerClass, SmsState, needs_sms, sms_state
from services.staff.frontdesk_state import load_rotation_state
from services.staff.frontdesk_tables import (
    frontdesk_call_logs,
    frontdesk_calls,
    frontdesk_deals,
    frontdesk_tally,
    frontdesk_visits,
)
from services.staff.localtime import local_day
from services.staff.policy import StaffPolicy
from services.staff.rotation import PostStatus, RotationState, first_post_check, next_receiver, queue_view

_performance = table(
    "sales_performance",
    column("office_id"),
    column("staff_id"),
    column("month"),
    column("credited_deals"),
    column("credited_amount_fen"),
    column("target_amount_fen"),
    column("achievement_rate"),
)  # fmt: skip  -- created by the ownership slice; read only, and only when it exists
UNSPECIFIED_CATEGORY = "UNSPECIFIED"


def _rows(connection: Connection, query: Any) -> list[dict[str, Any]]:
    return [{k: stored_utc(v) for k, v in row._mapping.items()} for row in connection.execute(query)]


def month_days(month: str) -> tuple[date, date]:
    """The first and last day of ``YYYY-MM``; ValueError for anything else."""
    year, _, mon = month.partition("-")
    if len(year) != 4 or len(mon) != 2:
        raise ValueError(f"month must be YYYY-MM, got {month!r}")
    first = date(int(year), int(mon), 1)
    return first, date(first.year, first.month, calendar.monthrange(first.year, first.month)[1])


# ---------------------------------------------------------------------------------------------------------------
# Who receives the next visitor (ROT-02/03/05/07/09)


def _why_not(state: RotationState, staff: str, at: datetime) -> str:
    if (suspension := state.suspension(staff, at)) is not None:
        return f"停接 ({suspension.rule_id})"
    if state.waiving(staff, at):
        return "waived the turn (ROT-03)"
    status = state.status[staff]
    return {
        PostStatus.BUSY: "busy with work, keeps the place (ROT-09)",
        PostStatus.AWAY: "away from the post (ROT-07)",
        PostStatus.RECEIVING: "receiving a customer",
    }.get(status, "not available")


def next_receiver_view(connection: Connection, codec: EventCodec, office_id: str, at: datetime) -> dict[str, Any]:
    """The answer to "who receives the next (new, unowned) visitor at ``at``", why, and the 轮序表 as it stands."""
    state = load_rotation_state(connection, codec, office_id)
    staff = next_receiver(state, at)
    if not state.in_force(at):
        why, rule = "no 轮序表 published for today", "ROT-02"
    elif staff is None:
        why, rule = "nobody on the 轮序表 is available", "ROT-02"
    else:
        ahead = state.order[: state.order.index(staff)]
        skipped = "; ".join(f"{s}: {_why_not(state, s, at)}" for s in ahead)
        why = f"first available in today's 轮序表 (position {state.order.index(staff) + 1})"
        why += f", ahead of them {skipped}" if skipped else ""
        rule = "ROT-09" if ahead else "ROT-02"
    finding = first_post_check(state, at)
    return {
        "at": at,
        "day": state.day,
        "staff_id": staff,
        "why": why,
        "rule_id": rule,
        "published_by": state.published_by,
        "queue": [{**asdict(entry), "status": str(entry.status)} for entry in queue_view(state, at)],
        "first_post_empty": None if finding is None else {
            "accountable": finding.accountable, "since": finding.since, "chain": list(finding.chain),
            "rule_id": finding.rule_id, "sanction_id": finding.sanction_id,
        },
    }  # fmt: skip


# ---------------------------------------------------------------------------------------------------------------
# The day's call register (CALL-01/03/04/05/07/08, CALL-06 the manager's check after the 晚会)


def call_register(
    connection: Connection, office_id: str, day: date, at: datetime, policy: StaffPolicy
) -> dict[str, Any]:
    calls = _rows(
        connection,
        select(frontdesk_calls)
        .where(frontdesk_calls.c.office_id == office_id, frontdesk_calls.c.day == day)
        .order_by(frontdesk_calls.c.ring_started_at, frontdesk_calls.c.call_id),
    )
    logs = {
        row["call_id"]: row
        for row in _rows(connection, select(frontdesk_call_logs.c.call_id, frontdesk_call_logs.c.deadline_at,
                                            frontdesk_call_logs.c.status)
                         .where(frontdesk_call_logs.c.office_id == office_id, frontdesk_call_logs.c.day == day))
    }  # fmt: skip
    for call in calls:
        call.pop("timer_sent_at", None)
        # CALL-03 / PEN-26: an answered call's log deadline, and PENDING / LOGGED / MISSING (the 漏登 was fined).
        log = logs.get(call["call_id"]) or {}
        call["log_deadline_at"], call["log_status"] = log.get("deadline_at"), log.get("status")
        if call["sms_required"] and call["sms_state"] != str(SmsState.OVERDUE):
            hung_up = call["ended_at"] or call["logged_at"]
            klass = CallerClass(call["caller_class"] or CallerClass.UNKNOWN)
            call["sms_state"] = str(sms_state(klass, hung_up, call["sms_sent_at"], at, policy))
    in_time, decided = sms_counts(calls, at)
    return {
        "day": day,
        "calls": calls,
        "totals": {
            "calls": len(calls),
            "answered": sum(1 for c in calls if c["answered_at"] is not None),
            "answered_late": sum(1 for c in calls if c["answered_in_time"] is False),
            "unlogged": sum(1 for c in calls if c["answered_at"] is not None and c["logged_at"] is None),
            "log_missing": sum(1 for c in calls if c["log_status"] == "MISSING"),  # fined at the deadline (CALL-03)
            "fines_yuan": sum(c["fine_yuan"] or 0 for c in calls),
            "over_target": sum(1 for c in calls if c["over_target"]),
            "sms_required": sum(1 for c in calls if c["sms_required"]),
            "sms_in_time": in_time,
            "sms_overdue": sum(1 for c in calls if c["sms_state"] in (str(SmsState.OVERDUE), str(SmsState.LATE))),
            "sms_compliance": kpi.sms_compliance_rate(in_time, decided),  # KPI-09
        },
    }


def sms_counts(calls: list[dict[str, Any]], at: datetime) -> tuple[int, int]:
    """KPI-09 counts: (SMS in time, genuine calls decided). A call is decided once an SMS was sent or its deadline
    passed; calls still inside their 5 minutes are left out of both."""
    in_time = decided = 0
    for call in calls:
        deadline, sent = call["sms_deadline_at"], call["sms_sent_at"]
        if not call["sms_required"] or deadline is None:
            continue
        if sent is not None:
            decided += 1
            in_time += sent <= deadline
        elif deadline < at:
            decided += 1
    return in_time, decided


# ---------------------------------------------------------------------------------------------------------------
# Receptions (KPI-07, ROT-06/12/13/14)


def reception_counts(
    connection: Connection, office_id: str, first: date, last: date, policy: StaffPolicy
) -> dict[str, Any]:
    tally = _rows(
        connection,
        select(frontdesk_tally).where(
            frontdesk_tally.c.office_id == office_id, frontdesk_tally.c.day >= first, frontdesk_tally.c.day <= last
        ),
    )
    per: dict[str, dict[str, int]] = defaultdict(lambda: {"counted": 0, "uncounted": 0, "waivers": 0})
    for row in tally:
        per[row["staff_id"]][{"RECEPTION": "counted", "UNCOUNTED": "uncounted", "WAIVER": "waivers"}[row["kind"]]] += 1
    registered = set(
        connection.execute(
            select(frontdesk_visits.c.visit_id).where(frontdesk_visits.c.office_id == office_id)
        ).scalars()
    )
    unregistered = [
        {"staff_id": row["staff_id"], "visit_id": row["ref_id"], "at": row["at"], "rule_id": "ROT-06"}
        for row in sorted(tally, key=lambda row: row["at"])
        if row["kind"] != "WAIVER" and row["ref_id"] not in registered
    ]
    staff = [
        {"staff_id": s, **counts, "receptions": kpi.reception_count(counts["counted"], counts["waivers"], policy)}
        for s, counts in sorted(per.items())
    ]
    return {"from": first, "to": last, "staff": staff, "unregistered_receptions": unregistered}


# ---------------------------------------------------------------------------------------------------------------
# KPIs of a month (KPI-01/02/03/07/09/10)


def kpis(connection: Connection, office_id: str, month: str, at: datetime, policy: StaffPolicy) -> dict[str, Any]:
    first, last = month_days(month)
    calls = _rows(connection, select(frontdesk_calls).where(frontdesk_calls.c.office_id == office_id))
    visits = _rows(
        connection,
        select(frontdesk_visits).where(
            frontdesk_visits.c.office_id == office_id, frontdesk_visits.c.day >= first, frontdesk_visits.c.day <= last
        ),
    )
    deals = _rows(connection, select(frontdesk_deals).where(frontdesk_deals.c.office_id == office_id))
    month_calls = [c for c in calls if c["day"] is not None and first <= c["day"] <= last]
    receptions = {row["staff_id"]: row for row in reception_counts(connection, office_id, first, last, policy)["staff"]}
    conversions = call_to_visit(calls, month_calls, visits)
    sms: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for call in month_calls:
        if call["callback_owner"]:
            sms[call["callback_owner"]].append(call)
    achievement = _achievement(connection, office_id, month)
    payments = payment_compliance(deals, first, last, policy)
    staff_ids = sorted({*conversions, *receptions, *sms, *achievement, *payments["staff"]})
    per_staff = []
    for staff in staff_ids:
        genuine, visited = conversions.get(staff, (0, 0))
        in_time, decided = sms_counts(sms.get(staff, []), at)
        per_staff.append({
            "staff_id": staff,
            "call_to_visit": {"genuine_calls": genuine, "visits": visited,
                              "rate": kpi.call_to_visit_rate(visited, genuine)},  # KPI-01
            "receptions": receptions.get(staff, {}).get("receptions", 0),  # KPI-07
            "sms": {"in_time": in_time, "decided": decided, "rate": kpi.sms_compliance_rate(in_time, decided)},
            "achievement_rate": achievement.get(staff),  # KPI-03: from the ownership slice's sales_performance
            "payment_deadline": payments["staff"].get(staff),  # KPI-10
        })  # fmt: skip
    office_genuine = sum(g for g, _ in conversions.values())
    office_visited = sum(v for _, v in conversions.values())
    return {
        "month": month,
        "staff": per_staff,
        "visit_to_deal": [asdict(row) for row in visit_to_deal(visits, deals)],  # KPI-02
        "office": {
            "call_to_visit_rate": kpi.call_to_visit_rate(office_visited, office_genuine),
            "sms_compliance": kpi.sms_compliance_rate(*sms_counts(month_calls, at)),
            "payment_deadline": payments["office"],
        },
    }


def call_to_visit(
    all_calls: list[dict[str, Any]], month_calls: list[dict[str, Any]], visits: list[dict[str, Any]]
) -> dict[str, tuple[int, int]]:
    """KPI-01 per staff: (genuine calls answered in the month, customers among them who then visited). A visit
    counts for the answerer of the customer's *first* call (the first contact), if it came before the visit."""
    first_call: dict[str, dict[str, Any]] = {}
    for call in all_calls:
        when = call["answered_at"] or call["logged_at"] or call["ring_started_at"]
        key = call["customer_key"]
        if key is None or when is None or call["callback_owner"] is None:
            continue
        best = first_call.get(key)
        if best is None or when < (best["answered_at"] or best["logged_at"] or best["ring_started_at"]):
            first_call[key] = call
    genuine: dict[str, set[str]] = defaultdict(set)
    for call in month_calls:
        if call["callback_owner"] and _genuine(call):
            genuine[call["callback_owner"]].add(call["call_id"])
    visited: dict[str, set[str]] = defaultdict(set)
    for visit in visits:
        contact = first_call.get(visit["customer_key"] or "")
        if contact is None or contact["call_id"] not in genuine[contact["callback_owner"]]:
            continue
        when = contact["answered_at"] or contact["logged_at"] or contact["ring_started_at"]
        if when < visit["arrived_at"]:
            visited[contact["callback_owner"]].add(visit["customer_key"])
    return {staff: (len(ids), len(visited.get(staff, set()))) for staff, ids in genuine.items()}


def _genuine(call: dict[str, Any]) -> bool:
    answered = call["answered_at"] is not None or call["logged_at"] is not None
    return answered and needs_sms(CallerClass(call["caller_class"] or CallerClass.UNKNOWN))


def visit_to_deal(visits: list[dict[str, Any]], deals: list[dict[str, Any]]) -> list[kpi.CategoryRate]:
    """KPI-02: NEW visits (ROT-12/14 exclusions out) per receiver and product category, and how many of those
    customers then made a deal: a subscription signed at or after the visit and not abandoned unpaid at the
    SALE-09 deadline. A deal is linked to a visit by customer: its customer_id is the visit's customer_id or the
    visit's customer key."""
    signed: dict[str, list[datetime]] = defaultdict(list)
    for deal in deals:
        lapsed = deal["abandoned_at"] is not None and deal["paid_at"] is None
        if deal["customer_id"] and deal["signed_at"] is not None and not lapsed:
            signed[deal["customer_id"]].append(deal["signed_at"])
    outcomes = []
    for visit in visits:
        if visit["visit_type"] != "NEW" or visit["receiver"] is None:
            continue
        ids = {visit["customer_id"], visit["customer_key"]} - {None}
        won = any(at >= visit["arrived_at"] for i in ids for at in signed.get(i, ()))
        category = visit["product_category"] or UNSPECIFIED_CATEGORY
        outcomes.append(kpi.VisitOutcome(visit["receiver"], category, 1, int(won)))
    return kpi.visit_to_deal_rates(outcomes)


def payment_compliance(deals: list[dict[str, Any]], first: date, last: date, policy: StaffPolicy) -> dict[str, Any]:
    """KPI-10 for subscriptions signed in the period, per consultant and for the office."""
    groups: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for deal in deals:
        if deal["signed_at"] is not None and first <= local_day(deal["signed_at"], policy.timezone) <= last:
            groups[deal["staff_id"] or ""].append(deal)

    def summary(items: list[dict[str, Any]]) -> dict[str, Any]:
        paid = [d for d in items if d["paid_at"] is not None]
        result = kpi.payment_deadline_compliance(
            len(paid), sum(1 for d in items if d["abandoned_at"] is not None and d["paid_at"] is None),
            [d["paid_at"] - d["signed_at"] for d in paid],
        )  # fmt: skip
        return asdict(result)

    return {
        "staff": {staff: summary(items) for staff, items in groups.items() if staff},
        "office": summary([d for items in groups.values() for d in items]),
    }


def _achievement(connection: Connection, office_id: str, month: str) -> dict[str, float | None]:
    if not inspect(connection).has_table("sales_performance"):
        return {}
    rows = connection.execute(
        select(_performance.c.staff_id, _performance.c.achievement_rate).where(
            _performance.c.office_id == office_id, _performance.c.month == month
        )
    ).all()
    return {str(staff): None if value is None else float(value) for staff, value in rows}
