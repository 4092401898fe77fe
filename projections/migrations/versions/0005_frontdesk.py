"""Front desk: rotation queue, visits, calls (issue 5).

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-23
"""

from collections.abc import Sequence

from alembic import op

from services.staff.frontdesk_tables import metadata

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# The tables exactly as services/staff/frontdesk_tables.py declares them (one definition, no drift). A later
# change to a table needs its own migration with explicit operations.
TABLES = (
    "frontdesk_facts",
    "frontdesk_calls",
    "frontdesk_sms",
    "frontdesk_visits",
    "frontdesk_tally",
    "frontdesk_deals",
)


def upgrade() -> None:
    bind = op.get_bind()
    for name in TABLES:
        metadata.tables[name].create(bind)


def downgrade() -> None:
    bind = op.get_bind()
    for name in reversed(TABLES):
        metadata.tables[name].drop(bind)
