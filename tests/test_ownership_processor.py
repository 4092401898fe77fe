"""The attribution processor on the real broker, on SQLite and PostgreSQL: one scenario per [CORE][P1] OWN/COM
rule of rules.md, all published by one module fixture in phases (a phase is what must be decided before the next
one is published: inputs reach the processor on three topics, ordered only within each), with a FrozenClock so
the 3-month expiry takes milliseconds. Each test asserts one rule on the shared result."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from projections.runner import ProjectionProcessor
from services.core.catalog import Catalogue
from services.core.clock import FrozenClock
from services.core.codec import EventCodec
from services.core.config import Settings
from services.ownership.processor import FACTS_TOPIC, Attribution
from services.ownership.service import build_attribution_processor
from services.staff import frontdesk_read
from services.staff.policy import DEFAULT_STAFF_POLICY
from tests.support import read_topic
from tests.test_ownership_support import (
    T0,
    Office,
    decision,
    fact_types,
    facts,
    ledger,
    owner,
    performance,
    reports,
)

pytestmark = pytest.mark.kafka

HOUR, DAY = timedelta(hours=1), timedelta(days=1)
ARRIVAL = T0 + HOUR  # first visits arrive at 11:00 office time
THREE_MONTHS_LATER = T0 + timedelta(days=31 + 28 + 31)  # 2026-04-05 10:00 office time: T0 + 3 calendar months


@dataclass
class World:
    office: Office
    processor: ProjectionProcessor
    keys: dict[str, str] = field(default_factory=dict)  # scenario → customer key
    ids: dict[str, str] = field(default_factory=dict)  # name → input event id / deal id
    seen: dict[str, Any] = field(default_factory=dict)  # snapshots taken between phases

    @property
    def engine(self) -> Any:
        return self.processor.engine

    @property
    def attribution(self) -> Attribution:
        return self.processor.projections[0]  # type: ignore[return-value]

    def customer(self, name: str) -> str:
        phone = self.office.phone()
        self.keys[name] = self.office.key(phone)
        self.keys[f"{name}.phone"] = phone
        return phone

    def run(self) -> None:
        self.office.flush()
        self.processor.run_until_caught_up()


@pytest.fixture(scope="module")
def world(
    module_database_url: str,
    broker: str,
    registry_url: str,
    codec: EventCodec,
    catalogue: Catalogue,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[World]:
    data_dir: Path = tmp_path_factory.mktemp("ownership")
    database_url = module_database_url
    settings = Settings(
        KAFKA_BOOTSTRAP_SERVERS=broker, SCHEMA_REGISTRY_URL=registry_url, DATABASE_URL=database_url,
        ANCHANG_DATA_DIR=data_dir,
    )  # fmt: skip
    clock = FrozenClock(T0)
    world = World(
        Office(settings.kafka_client_config(), codec, catalogue, clock), build_attribution_processor(settings, clock)
    )
    play(world)
    yield world


def play(w: World) -> None:
    o, ids = w.office, w.ids
    # ---- phase 1 (10:00): first contacts, and channel 报备 (they may come in any order)
    o.visit(w.customer("first"), "s-a", ARRIVAL)
    o.visit(w.customer("absent"), "s-a", ARRIVAL)
    o.visit(w.customer("referrer"), "s-a", ARRIVAL)
    o.call(w.customer("phone"), "s-c", T0)
    o.call(w.customer("named"), "s-c", T0)
    o.call(w.customer("unproven"), "s-c", T0)
    o.visit(w.customer("employee_b"), "s-a", ARRIVAL)
    o.visit(w.customer("employee_c"), "s-a", ARRIVAL)
    o.visit(w.customer("expires"), "s-a", ARRIVAL)
    o.visit(w.customer("renewed"), "s-a", ARRIVAL)
    o.visit(w.customer("switch"), "s-a", ARRIVAL)
    o.visit(w.customer("dispute"), "s-a", ARRIVAL)
    o.visit(w.customer("natural"), "s-a", ARRIVAL)
    # 报备: after arrival, 29 min before, exactly 30 min before, wrong name, two channels, not mentioned, poached
    ids["after"] = o.report(w.customer("after_arrival"), "ch-x", "ag-1", ARRIVAL + timedelta(minutes=1))
    o.visit(w.keys["after_arrival.phone"], "s-a", ARRIVAL, channel_mentioned="ch-x")
    ids["late29"] = o.report(w.customer("late29"), "ch-x", "ag-1", ARRIVAL - timedelta(minutes=29))
    o.visit(w.keys["late29.phone"], "s-a", ARRIVAL, channel_mentioned="ch-x")
    ids["exact30"] = o.report(w.customer("exact30"), "ch-x", "ag-1", ARRIVAL - timedelta(minutes=30))
    o.visit(w.keys["exact30.phone"], "s-a", ARRIVAL, channel_mentioned="ch-x")
    ids["mismatch"] = o.report(w.customer("mismatch"), "ch-x", "ag-1", ARRIVAL - HOUR, name="李先生")
    o.visit(w.keys["mismatch.phone"], "s-a", ARRIVAL, channel_mentioned="ch-x")
    ids["second"] = o.report(w.customer("two"), "ch-y", "ag-2", ARRIVAL - timedelta(minutes=45))
    ids["first"] = o.report(w.keys["two.phone"], "ch-x", "ag-1", ARRIVAL - HOUR)
    o.visit(w.keys["two.phone"], "s-a", ARRIVAL, channel_mentioned="ch-y")
    ids["unmentioned"] = o.report(w.customer("unmentioned"), "ch-x", "ag-1", ARRIVAL - HOUR)
    o.visit(w.keys["unmentioned.phone"], "s-a", ARRIVAL)
    ids["poached"] = o.report(w.customer("poached"), "ch-p", "ag-p", ARRIVAL - HOUR)
    o.visit(w.keys["poached.phone"], "s-a", ARRIVAL, channel_mentioned="ch-p")
    ids["dumped"] = o.report(w.customer("dumped"), "ch-x", "ag-1", ARRIVAL - timedelta(minutes=10))
    o.visit(w.keys["dumped.phone"], "s-a", ARRIVAL, channel_mentioned="ch-x")
    ids["bad_phone"] = o.visit("12345", "s-a", ARRIVAL)
    w.run()

    # ---- phase 2 (12:00): second visits and the office's decisions about phase 1
    o.clock.at = T0 + 2 * HOUR
    o.visit(w.keys["first.phone"], "s-b", ARRIVAL + DAY)
    o.visit(w.keys["absent.phone"], "s-b", ARRIVAL + DAY)
    o.visit(w.keys["named.phone"], "s-d", ARRIVAL, prior_consultant_named="s-c")
    o.visit(w.keys["unproven.phone"], "s-d", ARRIVAL)
    ids["referral"] = o.command("RECORD_REFERRAL", "s-a", T0 + 2 * HOUR, phone=w.customer("referred"),
                                referring_customer_key=w.keys["referrer"])  # fmt: skip
    ids["employee_b"] = o.command("REPORT_EMPLOYEE_REFERRAL", "s-a", ARRIVAL + timedelta(minutes=20),
                                  customer_key=w.keys["employee_b"], employee_id="e-1",
                                  recommended_staff_id="s-e")  # fmt: skip
    o.command("START_PRICE_NEGOTIATION", "s-a", ARRIVAL + timedelta(minutes=30), customer_key=w.keys["employee_c"],
              visit_id="v-c", staff_id="s-a")  # fmt: skip
    ids["employee_c"] = o.command("REPORT_EMPLOYEE_REFERRAL", "s-a", ARRIVAL + timedelta(minutes=40),
                                  customer_key=w.keys["employee_c"], employee_id="e-1",
                                  recommended_staff_id="s-e")  # fmt: skip
    ids["renew_early"] = o.command("APPROVE_RENEWAL", "sup-1", customer_key=w.keys["renewed"], staff_id="s-a")
    ids["switch_by_staff"] = o.command("REQUEST_SWITCH", "s-b", customer_key=w.keys["switch"], from_staff_id="s-a",
                                       to_staff_id="s-b", requested_by_customer=False)  # fmt: skip
    ids["switch"] = o.command("REQUEST_SWITCH", "fd-1", customer_key=w.keys["switch"], from_staff_id="s-a",
                              to_staff_id="s-b", requested_by_customer=True)  # fmt: skip
    o.command("REQUEST_SWITCH", "fd-1", customer_key=w.keys["dispute"], from_staff_id="s-a", to_staff_id="s-b",
              requested_by_customer=True)  # fmt: skip
    ids["dispute"] = o.command("RAISE_DISPUTE", "s-a", customer_key=w.keys["dispute"], raised_by="s-a")
    ids["poaching"] = o.command("CONFIRM_POACHING", "mgr-1", customer_key=w.keys["poached"], channel_id="ch-p",
                                agent_id="ag-p")  # fmt: skip
    ids["slip"] = o.command("SIGN_VISIT_CONFIRMATION_SLIP", "s-a", customer_key=w.keys["dumped"], channel_id="ch-x",
                            agent_id="ag-1", staff_id="s-a")  # fmt: skip
    ids["dumping"] = o.command("CONFIRM_ORDER_DUMPING", "mgr-1", customer_key=w.keys["dumped"], staff_id="s-a",
                               channel_id="ch-x")  # fmt: skip
    ids["target"] = o.command("SET_SALES_TARGET", "mgr-1", staff_id="s-a", month="2026-01",
                              target_amount_fen=400_000_000)  # fmt: skip
    ids["intruder"] = o.publisher.publish(
        {"event_type": "OwnershipCommandIssued", "actor": {"staff_id": "sup-9", "role": "SALES_SUPERVISOR"},
         "payload": {"command_type": "APPROVE_RENEWAL", "customer_key": w.keys["first"], "staff_id": "s-9"}},
        office_id="office-intruder",
    )  # fmt: skip
    ids["unknown_deal"] = o.deal(f"{o.id}:{'0' * 32}", "s-a")
    w.run()

    # ---- phase 3 (13:00): deals, the referred customer's visit, a barred agent's next 报备
    o.clock.at = T0 + 3 * HOUR
    o.visit(w.keys["referred.phone"], "s-c", ARRIVAL + DAY)
    ids["barred_report"] = o.report(w.customer("after_bar"), "ch-p", "ag-p", T0 + 3 * HOUR)
    o.visit(w.keys["after_bar.phone"], "s-a", T0 + 5 * HOUR, channel_mentioned="ch-p")
    ids["deal_absent"] = o.deal(w.keys["absent"], "s-b", 200_000_000)
    ids["deal_dispute"] = o.deal(w.keys["dispute"], "s-b", 300_000_001)
    ids["deal_exact30"] = o.deal(w.keys["exact30"], "s-a", 100_000_000)
    ids["deal_late29"] = o.deal(w.keys["late29"], "s-a", 100_000_000)
    ids["deal_poached"] = o.deal(w.keys["poached"], "s-a", 100_000_000)
    ids["deal_natural"] = o.deal(w.keys["natural"], "s-a", 150_000_000)
    w.run()

    # ---- phase 4 (next day): a refund
    o.clock.at = T0 + DAY
    o.refund(ids["deal_natural"], T0 + DAY)
    w.run()

    # ---- phase 5 (3 months minus 2 days): the 售楼部主管 renews one ownership, a consultant tries another
    o.clock.at = THREE_MONTHS_LATER - 2 * DAY
    ids["renew_by_consultant"] = o.command("APPROVE_RENEWAL", "s-a", customer_key=w.keys["renewed"], staff_id="s-a")
    ids["renew"] = o.command("APPROVE_RENEWAL", "sup-1", customer_key=w.keys["renewed"], staff_id="s-a")
    w.run()

    w.seen["owners"] = {name: owner(w.engine, key) for name, key in w.keys.items() if not name.endswith(".phone")}

    # ---- phase 6 (3 months and a day later): the timer expires what was not renewed, then new visits
    o.clock.at = THREE_MONTHS_LATER + DAY
    w.seen["expiries_sent"] = w.attribution.fire_due_expiries(w.engine)
    w.seen["expiries_resent"] = w.attribution.fire_due_expiries(w.engine)
    w.run()
    w.seen["expires_owner_before_visit"] = owner(w.engine, w.keys["expires"])
    o.visit(w.keys["expires.phone"], "s-b", THREE_MONTHS_LATER + DAY)
    o.visit(w.keys["renewed.phone"], "s-b", THREE_MONTHS_LATER + DAY)
    w.run()


def rules(w: World, name: str) -> list[tuple[str, str | None]]:
    return [(event_type, rule_id) for event_type, rule_id, _ in facts(w.engine, w.keys[name]) if rule_id]


def owner_of(w: World, name: str, live: bool = False) -> tuple[str, str, str] | None:
    """The customer's owner before the 3-month timer freed everyone (or now, ``live``)."""
    row = owner(w.engine, w.keys[name]) if live else w.seen["owners"][name]
    return (row["staff_id"], row["basis"], row["rule_id"]) if row else None


def line(w: World, deal: str, party: str, party_id: str | None = None) -> dict[str, Any]:
    (found,) = [
        row
        for row in ledger(w.engine, w.ids[deal])
        if row["party"] == party and row["entry"] == "credit" and (party_id is None or row["party_id"] == party_id)
    ]
    return found


def test_OWN_01_first_contact_owns_and_a_later_receiver_does_not(world: World) -> None:
    assert owner_of(world, "first") == ("s-a", "first_contact", "OWN-01")


def test_OWN_02_a_helper_serves_the_absent_owner(world: World) -> None:
    assert ("ServedForAbsentOwner", "OWN-02") in rules(world, "absent")
    assert owner_of(world, "absent")[0] == "s-a"  # type: ignore[index]


def test_COM_02_the_helper_who_signed_gets_no_credit(world: World) -> None:
    staff = line(world, "deal_absent", "staff")
    assert (staff["party_id"], staff["share"], staff["sales_fen"], staff["rule_id"]) == (
        "s-a",
        "1",
        200_000_000,
        "COM-02",
    )


def test_OWN_03_a_recorded_referral_gives_the_newcomer_to_the_referrers_owner(world: World) -> None:
    assert owner_of(world, "referred") == ("s-a", "referral_chain", "OWN-03")
    assert ("ServedForAbsentOwner", "OWN-02") in rules(world, "referred")  # s-c received them for s-a


def test_OWN_05_three_months_and_a_day_later_the_customer_belongs_to_the_new_receiver(world: World) -> None:
    assert world.seen["expires_owner_before_visit"] is None  # the timer freed the customer before the visit
    assert owner_of(world, "expires", live=True) == ("s-b", "first_contact", "OWN-01")
    expired = [
        body for event_type, _, body in facts(world.engine, world.keys["expires"]) if event_type == "OwnershipExpired"
    ]
    assert [(body["staff_id"], body["actor_role"]) for body in expired] == [("s-a", "SYSTEM")]


def test_OWN_05_the_timer_fires_once_per_expiry(world: World) -> None:
    assert world.seen["expiries_sent"] >= 1
    assert world.seen["expiries_resent"] == 0


def test_OWN_06_a_renewal_signed_by_the_supervisor_keeps_the_customer(world: World) -> None:
    assert decision(world.engine, world.ids["renew_early"])["rule_id"] == "OWN-06"  # the window opens 7 days before
    assert decision(world.engine, world.ids["renew"])["outcome"] == "accepted"
    assert owner_of(world, "renewed", live=True)[0] == "s-a"  # type: ignore[index]
    assert "OwnershipRenewed" in fact_types(world.engine, world.keys["renewed"])


def test_OWN_06_a_consultant_may_not_renew(world: World) -> None:
    refused = decision(world.engine, world.ids["renew_by_consultant"])
    assert (refused["outcome"], refused["rule_id"]) == ("rejected", "OWN-06")


def test_OWN_07_the_call_answerer_owns_a_phone_lead(world: World) -> None:
    assert owner_of(world, "phone") == ("s-c", "call_answerer", "OWN-07")


def test_OWN_08_a_phone_owner_named_at_the_door_keeps_the_customer(world: World) -> None:
    assert owner_of(world, "named")[0] == "s-c"  # type: ignore[index]
    assert ("OwnershipProven", "OWN-08") in rules(world, "named")


def test_OWN_08_an_unproven_phone_contact_is_a_natural_visit(world: World) -> None:
    assert owner_of(world, "unproven") == ("s-d", "natural_visit", "OWN-08")


def test_OWN_09_a_nominee_named_before_price_negotiation_takes_the_customer(world: World) -> None:
    assert owner_of(world, "employee_b") == ("s-e", "employee_referral", "OWN-09")
    assert ("OwnershipRotationTurnReturned", "OWN-09") in rules(world, "employee_b")


def test_COM_03_after_price_negotiation_the_receiver_keeps_the_deal(world: World) -> None:
    refused = decision(world.engine, world.ids["employee_c"])
    assert (refused["outcome"], refused["rule_id"]) == ("rejected", "OWN-09")
    assert owner_of(world, "employee_c")[0] == "s-a"  # type: ignore[index]


def verdict(w: World, name: str, report: str) -> tuple[str, str | None, str | None]:
    row = reports(w.engine, w.keys[name])[w.ids[report]]
    return row["status"], row["reason"], row["rule_id"]


def test_OWN_10_a_report_after_arrival_earns_nothing(world: World) -> None:
    assert verdict(world, "after_arrival", "after") == ("rejected", "after_arrival", "OWN-10")


def test_OWN_11_report_29_minutes_before_arrival_earns_nothing(world: World) -> None:
    assert verdict(world, "late29", "late29") == ("rejected", "lt_lead_time", "OWN-11")
    channel = line(world, "deal_late29", "channel")
    assert (channel["status"], channel["commission_fen"], channel["rule_id"]) == ("not_applicable", 0, "OWN-11")
    assert "29 min before arrival" in channel["reason"]


def test_OWN_11_exactly_30_minutes_before_arrival_counts(world: World) -> None:
    assert verdict(world, "exact30", "exact30") == ("winning", None, None)


def test_OWN_12_a_report_whose_name_differs_from_the_register_earns_nothing(world: World) -> None:
    assert verdict(world, "mismatch", "mismatch") == ("rejected", "mismatch", "OWN-12")


def test_OWN_13_the_earlier_of_two_valid_reports_wins(world: World) -> None:
    assert verdict(world, "two", "first") == ("winning", None, None)
    assert verdict(world, "two", "second") == ("rejected", "earlier_report_won", "OWN-13")


def test_OWN_14_a_channel_not_mentioned_on_arrival_is_a_natural_visit(world: World) -> None:
    assert verdict(world, "unmentioned", "unmentioned") == ("rejected", "not_mentioned", "OWN-14")


def test_OWN_15_poaching_bars_the_agent_from_later_reports(world: World) -> None:
    assert ("ChannelBarred", "OWN-15") in rules(world, "poached")
    assert verdict(world, "after_bar", "barred_report") == ("rejected", "agent_barred", "OWN-15")


def test_COM_05_poaching_withholds_the_channel_commission(world: World) -> None:
    channel = line(world, "deal_poached", "channel")
    assert (channel["status"], channel["commission_fen"], channel["withheld_fen"]) == ("withheld", 0, 1_500_000)
    assert channel["rule_id"] == "COM-05"


def test_OWN_17_a_slip_for_a_channel_that_did_not_win_is_flagged_and_dumping_confirmed(world: World) -> None:
    checked = [body for event_type, _, body in facts(world.engine, world.keys["dumped"])
               if event_type == "VisitConfirmationSlipChecked"]  # fmt: skip
    assert [body["matches"] for body in checked] == [False]
    assert ("OrderDumpingFlagged", "OWN-17") in rules(world, "dumped")
    assert ("CommissionWithheld", "OWN-17") in rules(world, "dumped")


def test_OWN_19_only_the_customer_may_ask_for_another_consultant(world: World) -> None:
    assert decision(world.engine, world.ids["switch_by_staff"])["rule_id"] == "OWN-19"
    assert decision(world.engine, world.ids["switch"])["outcome"] == "accepted"
    assert ("SalespersonSwitchRecorded", "OWN-19") in rules(world, "switch")


def test_COM_01_a_disputed_switch_shows_5_5_in_the_ledger(world: World) -> None:
    old, new = line(world, "deal_dispute", "staff", "s-a"), line(world, "deal_dispute", "staff", "s-b")
    assert (old["share"], new["share"]) == ("1/2", "1/2")
    assert (old["rule_id"], new["rule_id"]) == ("COM-01", "COM-01")
    assert old["sales_fen"] + new["sales_fen"] == 300_000_001  # largest remainder: the odd fen goes to one side
    assert old["commission_fen"] + new["commission_fen"] == 900_000  # 0.3 % staff commission


def test_COM_04_only_the_valid_earliest_report_earns_the_channel_commission(world: World) -> None:
    channel = line(world, "deal_exact30", "channel")
    assert (channel["status"], channel["party_id"], channel["commission_fen"]) == ("payable", "ch-x", 1_500_000)
    natural = line(world, "deal_natural", "channel")
    assert (natural["status"], natural["party_id"], natural["commission_fen"]) == ("not_applicable", None, 0)


def test_COM_06_achievement_rate_against_the_managers_target(world: World) -> None:
    january = performance(world.engine, world.office.id, "s-a", "2026-01")
    assert january is not None
    # s-a: absent 2 亿分 + exact30 1 + late29 1 + poached 1 + natural 1.5 (refunded) + half of dispute (150_000_001)
    credited = 200_000_000 + 3 * 100_000_000 + 150_000_000 + 150_000_001 - 150_000_000
    assert (january["credited_amount_fen"], january["target_amount_fen"]) == (credited, 400_000_000)
    assert january["credited_deals"] == 5
    assert january["achievement_rate"] == pytest.approx(credited / 400_000_000)


def test_KPI_03_the_front_desk_kpis_show_the_same_achievement_rate(world: World) -> None:
    """KPI-03 (达成率) in the manager's KPI table is the COM-06 rate against the target, not a second formula."""
    january = performance(world.engine, world.office.id, "s-a", "2026-01")
    assert january is not None and january["achievement_rate"] is not None
    with world.engine.connect() as connection:
        table = frontdesk_read.kpis(connection, world.office.id, "2026-01", T0, DEFAULT_STAFF_POLICY)
    (row,) = [row for row in table["staff"] if row["staff_id"] == "s-a"]
    assert row["achievement_rate"] == pytest.approx(january["achievement_rate"]) and row["achievement_rate"] > 0


def test_SALE_19_a_processed_refund_reverses_the_credit(world: World) -> None:
    reversal = [row for row in ledger(world.engine, world.ids["deal_natural"]) if row["entry"] == "reversal"]
    assert [(row["party"], row["sales_fen"], row["rule_id"]) for row in reversal] == [
        ("channel", 0, "SALE-19"), ("staff", -150_000_000, "SALE-19"),
    ]  # fmt: skip


def test_inputs_without_an_identifiable_customer_are_skipped_with_a_reason(world: World) -> None:
    skipped = decision(world.engine, world.ids["bad_phone"])
    assert (skipped["outcome"], skipped["customer_key"]) == ("skipped", None)
    assert "12345" not in (skipped["reason"] or "")  # never a raw phone in a reason


def test_an_office_cannot_decide_about_another_offices_customer(world: World) -> None:
    skipped = decision(world.engine, world.ids["intruder"])
    assert (skipped["outcome"], skipped["fact_event_ids"]) == ("skipped", [])
    assert "another office" in skipped["reason"]


def test_facts_on_the_log_carry_masked_phones_only(world: World, broker: str, codec: EventCodec) -> None:
    phone = world.keys["late29.phone"]
    key = world.keys["late29"].encode()
    values = [message.value() for message in read_topic(broker, FACTS_TOPIC) if message.key() == key]
    assert values and all(phone.encode() not in value for value in values)
    decoded = [codec.decode(value) for value in values]
    visit = next(record for event_type, record in decoded if event_type == "OwnershipVisitRecorded")
    assert visit["phone_masked"] == f"{phone[:3]}****{phone[-4:]}"
