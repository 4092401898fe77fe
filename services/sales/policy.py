"""Per-office settings of the 销控 decider, with defaults taken from the handbook (rules.md §6, §12, §13).

Nothing here does I/O; a policy is a plain value handed to ``decide``. See docs/sales-policy.md for the
reasoning behind every default.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from enum import StrEnum


class Role(StrEnum):
    """Symbols of schemas/types/Role.avsc (the role catalogue of rules.md §12.2)."""

    UNKNOWN = "UNKNOWN"
    SALES_CONSULTANT = "SALES_CONSULTANT"  # 置业顾问
    SALES_SUPERVISOR = "SALES_SUPERVISOR"  # 销售主管 / 售楼部主管
    SALES_MANAGER = "SALES_MANAGER"  # 销售经理 / 案场销售经理
    DEPUTY_SALES_MANAGER = "DEPUTY_SALES_MANAGER"  # 销售副经理
    FRONT_DESK = "FRONT_DESK"  # 导台秘书
    ADMIN_CLERK = "ADMIN_CLERK"  # 内业
    FINANCE = "FINANCE"  # 财务 / 出纳
    TITLE_OFFICER = "TITLE_OFFICER"  # 权证专员
    DUTY_LEAD = "DUTY_LEAD"  # 总值
    MARKETING_PLANNER = "MARKETING_PLANNER"  # 企划主管
    CUSTOMER_SERVICE = "CUSTOMER_SERVICE"
    PROJECT_LEAD = "PROJECT_LEAD"  # 项目统一负责人
    PROJECT_MANAGER = "PROJECT_MANAGER"  # 专案经理
    MORTGAGE_SPECIALIST = "MORTGAGE_SPECIALIST"  # 按揭专员
    HR_ADMIN = "HR_ADMIN"
    COMPANY_MANAGEMENT = "COMPANY_MANAGEMENT"
    DEVELOPER = "DEVELOPER"  # 开发商
    CHANNEL_AGENT = "CHANNEL_AGENT"  # 渠道
    CUSTOMER = "CUSTOMER"
    SYSTEM = "SYSTEM"  # Anchang's own processors (the payment-deadline timer)


class PaymentKind(StrEnum):
    """Symbols of PaymentKind in schemas/events/PaymentReceived.avsc."""

    UNKNOWN = "UNKNOWN"
    DEPOSIT = "DEPOSIT"  # 定金
    DOWN_PAYMENT = "DOWN_PAYMENT"  # 首付
    PURCHASE_PRICE = "PURCHASE_PRICE"  # 楼款
    BALANCE = "BALANCE"  # 尾款
    DEED_TAX = "DEED_TAX"  # 契税
    MAINTENANCE_FUND = "MAINTENANCE_FUND"  # 维修基金
    MORTGAGE_FEE = "MORTGAGE_FEE"  # 抵押费


# Staff who sell: they ask for locks, sign orders with customers and report refund applications
# (§12.2: 置业顾问 and the sales chain above them; 专案经理 "sells ≥1 unit a month").
SALES_STAFF: frozenset[str] = frozenset(
    {
        Role.SALES_CONSULTANT,
        Role.SALES_SUPERVISOR,
        Role.DEPUTY_SALES_MANAGER,
        Role.SALES_MANAGER,
        Role.PROJECT_MANAGER,
    }
)

# Money towards the unit's price. Fees (契税, 维修基金, 抵押费) are collected for third parties and say nothing
# about the customer keeping the order, so they never stop the SALE-09 clock.
PRICE_PAYMENT_KINDS: frozenset[str] = frozenset(
    {PaymentKind.DEPOSIT, PaymentKind.DOWN_PAYMENT, PaymentKind.PURCHASE_PRICE, PaymentKind.BALANCE}
)

# Hard rules a policy may not relax: only finance touches money (SALE-10/11), salespeople never lock or
# release on their own (SALE-02/07), only the developer approves refunds (SALE-19).
_MONEY_ROLES = frozenset({Role.FINANCE})
_NEVER_LOCK_OR_RELEASE = frozenset({Role.SALES_CONSULTANT})


def _roles(*roles: Role) -> frozenset[str]:
    return frozenset(roles)


@dataclass(frozen=True)
class SalesPolicy:
    """Settings of one sales office (案场). Every default cites its basis in rules.md."""

    # SALE-09: 「签好订单后,必须于10分钟内到财务部交款,否则视为放弃」. A payment is late when
    # ``at >= signed_at + payment_deadline`` (the instant of the deadline itself is already late).
    payment_deadline: timedelta = timedelta(minutes=10)
    # SALE-09 / §13.14: which payment stops the clock is not stated; the rules' default is "a 定金 amount ≥ the
    # configured minimum". Our default minimum is 1 fen, i.e. any positive amount of a price kind. Partial payments
    # add up (SubscriptionAbandoned.amount_paid_fen is "below the configured minimum").
    minimum_deposit_fen: int = 1
    clock_stopping_kinds: frozenset[str] = PRICE_PAYMENT_KINDS
    # No rule gives a lock request (UnitLockRequested) a time limit, so by default it never lapses. When set, a
    # request the manager has not confirmed within this time stops blocking the unit (LockRequestLapsed).
    lock_request_expiry: timedelta | None = None

    # §12.1 authorization matrix: which roles may issue each command.
    lock_requesters: frozenset[str] = SALES_STAFF  # SALE-02: a consultant asks (UnitLockRequested{by 置业顾问})
    lock_confirmers: frozenset[str] = _roles(Role.SALES_MANAGER)  # SALE-01/02: only the 销售经理 does 销控
    subscription_signers: frozenset[str] = SALES_STAFF  # the consultant signs the order with the customer
    payment_receivers: frozenset[str] = _roles(Role.FINANCE)  # SALE-10/11: 财务/出纳 only
    lock_releasers: frozenset[str] = _roles(Role.SALES_MANAGER)  # SALE-04/07: only the manager releases
    deadline_expirers: frozenset[str] = _roles(Role.SYSTEM)  # SALE-09: the payment-deadline timer
    refund_requesters: frozenset[str] = SALES_STAFF  # SALE-17: reported by sales staff to the manager
    refund_reviewers: frozenset[str] = _roles(Role.SALES_MANAGER)  # SALE-18
    refund_submitters: frozenset[str] = _roles(Role.SALES_MANAGER)  # SALE-19: the manager passes it on
    refund_approvers: frozenset[str] = _roles(Role.DEVELOPER)  # SALE-19: approve or reject once submitted
    # RefundRejected.avsc: an application may also be turned down "at the sales manager's review" (before it is
    # submitted to the developer).
    refund_review_rejecters: frozenset[str] = _roles(Role.SALES_MANAGER)
    refund_processors: frozenset[str] = _roles(Role.FINANCE)  # §12: 财务 is the only role that handles money
    # §12.2: the 销售经理 is "responsible for contract signing"; the 权证专员 works only after signing.
    contract_signers: frozenset[str] = _roles(Role.SALES_MANAGER)

    # Actor named on facts the decider emits on its own account (released_by "the processor name", SALE-07).
    processor_id: str = "anchang-sales"

    def __post_init__(self) -> None:
        if self.payment_deadline <= timedelta(0):
            raise ValueError("payment_deadline must be positive (SALE-09)")
        if self.minimum_deposit_fen < 1:
            raise ValueError("minimum_deposit_fen must be at least 1 fen (SALE-09)")
        if self.lock_request_expiry is not None and self.lock_request_expiry <= timedelta(0):
            raise ValueError("lock_request_expiry must be positive or None")
        if not (self.payment_receivers | self.refund_processors) <= _MONEY_ROLES:
            raise ValueError("only FINANCE may take or pay back money (SALE-10/11)")
        if (self.lock_confirmers | self.lock_releasers) & _NEVER_LOCK_OR_RELEASE:
            raise ValueError("sales consultants may not lock or release units (SALE-02/07)")
        if self.refund_approvers != {Role.DEVELOPER}:
            raise ValueError("only the developer approves refunds (SALE-19)")


DEFAULT_POLICY = SalesPolicy()
