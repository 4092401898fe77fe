"""Per-office settings of the staff slice, with every number of the handbook as its default (rules.md §2, §3, §4, §8,
§9, §10, §12, §13). A policy is a plain frozen value handed to the pure functions of this package; see
docs/staff-policy.md for the handbook line behind each default. TOML loading and the customer-service packs live in
services/staff/policies.py."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import time, timedelta
from enum import StrEnum
from zoneinfo import ZoneInfoNotFoundError

from services.sales.policy import Role
from services.staff.localtime import zone


class DayKind(StrEnum):
    """SpecialDayDeclared.kind: the days on which everybody works (ATT-05)."""

    HOLIDAY = "HOLIDAY"  # 节假日
    OPENING_DAY = "OPENING_DAY"  # 开盘日
    AD_DAY = "AD_DAY"  # 广告日
    MORTGAGE_DAY = "MORTGAGE_DAY"  # 集中办理按揭日


class DayEndRule(StrEnum):
    """ATT-01 / §13.1: how the end of the working day is computed."""

    LATEST = "latest"  # the later of 17:30, the last visitor leaving and the end of the 晚会
    FIXED = "fixed"  # 17:30 whatever happens


class LeaveType(StrEnum):
    PERSONAL = "PERSONAL"  # 事假
    ANNUAL = "ANNUAL"  # 年假
    SICK = "SICK"  # 病假
    COMP = "COMP"  # 调休 (a swapped rest day, ATT-04/12)


class PolicyValueError(ValueError):
    """A setting out of range; ``setting`` names the StaffPolicy field."""

    def __init__(self, setting: str, message: str) -> None:
        super().__init__(f"{setting}: {message}")
        self.setting = setting
        self.message = message


ALL_ROLES: frozenset[str] = frozenset(Role)
MANAGER: frozenset[str] = frozenset({Role.SALES_MANAGER})
SUPERVISOR: frozenset[str] = frozenset({Role.SALES_SUPERVISOR})
ISO_WEEKDAYS = frozenset(range(1, 8))  # 1 = Monday … 7 = Sunday


@dataclass(frozen=True)
class StaffPolicy:
    """Settings of one sales office (案场). Every default cites its rule; "None" means "the office has no such rule"."""

    timezone: str = "Asia/Shanghai"  # the handbook's times are office wall-clock times

    # --- attendance (rules.md §2) ---------------------------------------------------------------------------
    clock_in_by: time = time(8, 30)  # ATT-02 「每天早上8:30分前打卡」: 08:30:00.000 is on time, later is late
    clock_in_grace: timedelta = timedelta(0)  # not in the handbook: 59 s lets a minute-resolution clock show 08:30
    lateness_fine_yuan: int = 50  # ATT-03 / PEN-01 「项目内另行罚款50元」 per lateness
    day_end: time = time(17, 30)  # ATT-01 「早8:30晚17:30」
    day_end_rule: DayEndRule = DayEndRule.LATEST  # ATT-01 / §13.1: 「处最后一组客户离场并开完晚会」
    same_day_leave_cutoff: time = time(7, 30)  # ATT-07 「必须于当天7:30前请假方为有效」
    sick_notice_cutoff: time = time(7, 30)  # ATT-09 「上班当天7:30分前告知销售经理」
    leave_notice_days: int = 1  # ATT-08 「请事/年假须提前一天向销售经理提出」 (calendar days)
    leave_approvers: frozenset[str] = MANAGER  # ATT-08: the 销售经理 approves 事假/年假
    sick_notice_receivers: frozenset[str] = MANAGER  # ATT-09: the 销售经理 is told
    sick_reclassified_as: LeaveType = LeaveType.PERSONAL  # ATT-09 / §13.4 「按事假或年假处理」: 事假
    blackout_day_kinds: frozenset[DayKind] = frozenset(DayKind)  # ATT-05 「节假日、开盘日、广告日、集中办理按揭日」
    blackout_applies_to_sick_leave: bool = False  # ATT-05 vs ATT-09: illness is not refused, see the docs
    revoke_leave_on_special_day: bool = True  # ATT-05 「全体人员上班」: a blackout day declared later revokes leave
    rest_weekdays: frozenset[int] = frozenset({1, 2, 3, 4, 5})  # ATT-04 「周一至周五轮休」 (ISO weekdays)
    rest_days_per_week: int = 1  # ATT-04 「每周六天工作制」
    swap_approvers: frozenset[str] = MANAGER  # ATT-12 「向部门经理提出申请」 (S0-D says 主管: §13.3)
    premises_exit_approvers: frozenset[str] = MANAGER  # ATT-14 「除经案场销售经理同意」
    premises_exit_fine_yuan: int = 200  # ATT-14 / PEN-06 「罚款200元」
    attendance_report_day: int = 29  # ATT-13 「在每月30号前」: due by the end of the 29th (February: its last day)

    # --- calls (rules.md §4) --------------------------------------------------------------------------------
    answer_within_rings: int = 3  # CALL-01 「一般在铃响2~3声之间接听」: the 4th ring is late
    ring_period: timedelta = timedelta(seconds=5)  # not in the handbook: 1 s on + 4 s off, Chinese PSTN cadence
    late_answer_fine_yuan: int | None = None  # core: none; property pack 15 元 (PEN-C02 / CALL-X05)
    blank_field_fine_yuan: int = 10  # CALL-03 / PEN-26 「如出现漏登现象则每空10元」: per blank required field
    call_log_required_fields: frozenset[str] = frozenset(
        {
            "customer_name",
            "phone",
            "wanted_unit_type",
            "awareness_channel",
        }  # CALL-07 姓名、联系方式、需求户型、认知途径
    )
    visit_register_required_fields: frozenset[str] = frozenset(
        {"customer_name", "phone", "awareness_channel", "product_category"}  # VIS-02, KPI-02, KPI-08
    )
    missing_log_fine_yuan: int | None = None  # None: a call never logged counts as every required field blank
    sms_within: timedelta = timedelta(minutes=5)  # CALL-04 「在挂电话5分钟内给客户发信息」
    # CALL-03 / VIS-02 「内业于每天晚上下班之前收存好」: a call must be logged by the night's collection. None: local
    # midnight ending the call's day (the day may end after 17:30, §13.1); never sooner than the grace after it.
    call_log_due: time | None = None
    call_log_grace: timedelta = timedelta(minutes=30)  # not in the handbook: time to write up a late call
    call_target: timedelta = timedelta(minutes=3)  # CALL-08 「尽量控制在3分钟以内」 (a soft target)

    # --- rotation queue (rules.md §3) -----------------------------------------------------------------------
    queue_publishers: frozenset[str] = SUPERVISOR  # ROT-02 「由销售主管每天按轮序表指定顺序」
    waiver_minimum: timedelta = timedelta(minutes=30)  # ROT-03 「最短时间不得低于30分钟」
    waiver_reception_weight: int = 2  # ROT-03 「一次放弃机会相当于正常接待两组客户名额」
    supervisor_suspension_days: int = 1  # ROT-05 / PEN-24 「主管发现一次可停接其一天客户」
    manager_suspension_days: int = 3  # ROT-05 / PEN-24 「经理发现的停接客户三天」
    refusal_suspension_days: int = 1  # ROT-11 / PEN-17 「若借故不接待客户将停接客户一天」
    violation_observers: frozenset[str] = frozenset({Role.SALES_SUPERVISOR, Role.SALES_MANAGER})  # ROT-05/11
    requalifiers: frozenset[str] = frozenset({Role.PROJECT_LEAD})  # ROT-17 「经项目统一负责人考核后重新上岗」

    # --- complaints (rules.md §8) ---------------------------------------------------------------------------
    complaint_handlers: frozenset[str] = MANAGER  # CMP-02 「负责接待并处理好客户的投诉」
    complaint_callers: frozenset[str] = frozenset({Role.SALES_MANAGER, Role.CUSTOMER_SERVICE})  # CMP-09 callback
    complaint_classify_within: timedelta | None = timedelta(days=1)  # CMP-09 「有投诉即时受理」, CMP-X01 same day
    complaint_resolve_within: timedelta | None = timedelta(days=3)  # CMP-X01 「人事行政部于三日內」 (no core SLA)
    complaint_callback_within: timedelta | None = timedelta(days=3)  # CMP-09 「必须保证在三天之内回访」
    complaint_escalate_to: str = Role.COMPANY_MANAGEMENT  # the level above the 销售经理 who owns complaints

    # --- customer-service packs (rules.md §4.1, §8.3, §10.2); unused by the core defaults ---------------------
    answer_rate_target: float | None = None  # CALL-X01 / KPI-X01 「保证电话接通率在90%以上」
    min_agents_peak: int | None = None  # CALL-X01 peak seats ≥ 8
    min_agents_night: int | None = None  # CALL-X01 「夜班至少2位坐席通宵在线」
    repair_dispatch_within: timedelta | None = None  # CMP-X11 「若工程人員在20分鐘內未到達現場」
    packs: tuple[str, ...] = ()  # names of the packs applied (services/staff/policies.py)

    def __post_init__(self) -> None:
        try:
            zone(self.timezone)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise PolicyValueError("timezone", f"unknown timezone {self.timezone!r}") from exc
        for name in ("lateness_fine_yuan", "premises_exit_fine_yuan", "blank_field_fine_yuan"):
            _at_least(name, getattr(self, name), 0)
        for name in ("late_answer_fine_yuan", "missing_log_fine_yuan", "min_agents_peak", "min_agents_night"):
            if getattr(self, name) is not None:
                _at_least(name, getattr(self, name), 0)
        for name in (
            "leave_notice_days",
            "answer_within_rings",
            "waiver_reception_weight",
            "supervisor_suspension_days",
            "manager_suspension_days",
            "refusal_suspension_days",
        ):
            _at_least(name, getattr(self, name), 1)
        _at_least("attendance_report_day", self.attendance_report_day, 1)
        if self.attendance_report_day > 31:
            raise PolicyValueError("attendance_report_day", "must be a day of the month, 1–31")
        for name in ("clock_in_grace", "call_log_grace"):
            if getattr(self, name) < timedelta(0):
                raise PolicyValueError(name, "must not be negative")
        for name in ("ring_period", "sms_within", "call_target", "waiver_minimum"):
            if getattr(self, name) <= timedelta(0):
                raise PolicyValueError(name, "must be positive")
        for name in (
            "complaint_classify_within",
            "complaint_resolve_within",
            "complaint_callback_within",
            "repair_dispatch_within",
        ):
            value = getattr(self, name)
            if value is not None and value <= timedelta(0):
                raise PolicyValueError(name, "must be positive, or None for no deadline")
        if not self.rest_weekdays or not self.rest_weekdays <= ISO_WEEKDAYS:
            raise PolicyValueError("rest_weekdays", "must be ISO weekdays 1 (Monday) … 7 (Sunday), at least one")
        if not 0 <= self.rest_days_per_week <= 7:
            raise PolicyValueError("rest_days_per_week", "must be 0–7")
        if self.sick_reclassified_as not in (LeaveType.PERSONAL, LeaveType.ANNUAL):
            raise PolicyValueError("sick_reclassified_as", "must be PERSONAL (事假) or ANNUAL (年假)")
        if self.same_day_leave_cutoff >= self.clock_in_by or self.sick_notice_cutoff >= self.clock_in_by:
            raise PolicyValueError("same_day_leave_cutoff", "leave and sick-notice cut-offs must come before clock-in")
        if self.answer_rate_target is not None and not 0 < self.answer_rate_target <= 1:
            raise PolicyValueError("answer_rate_target", "must be a fraction in (0, 1]")
        for name in (
            "leave_approvers",
            "sick_notice_receivers",
            "swap_approvers",
            "premises_exit_approvers",
            "queue_publishers",
            "violation_observers",
            "requalifiers",
            "complaint_handlers",
            "complaint_callers",
        ):
            roles: frozenset[str] = getattr(self, name)
            if not roles:
                raise PolicyValueError(name, "needs at least one role")
            if unknown := roles - ALL_ROLES:
                raise PolicyValueError(name, f"unknown roles {sorted(unknown)}")
            if Role.SALES_CONSULTANT in roles and name != "complaint_callers":
                raise PolicyValueError(name, "a 置业顾问 may not authorize this (§12.1)")
        if self.complaint_escalate_to not in ALL_ROLES:
            raise PolicyValueError("complaint_escalate_to", f"unknown role {self.complaint_escalate_to!r}")

    def suspension_days_for(self, observer_role: str) -> int | None:
        """ROT-05: 1 day when the 销售主管 finds the violation, 3 when the 销售经理 does; None for other roles."""
        if observer_role == Role.SALES_MANAGER:
            return self.manager_suspension_days
        if observer_role == Role.SALES_SUPERVISOR:
            return self.supervisor_suspension_days
        return None


def _at_least(name: str, value: object, low: int) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or value < low:
        raise PolicyValueError(name, f"must be an integer ≥ {low}, got {value!r}")


DEFAULT_STAFF_POLICY = StaffPolicy()
