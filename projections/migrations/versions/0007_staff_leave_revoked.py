"""Staff: leave days revoked by a blackout day declared after the grant (ATT-05, LeaveRevoked).

One nullable column on the staff read side's leave requests (projections/staff_tables.py); rows written before
it read as "no day revoked".

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-23
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("staff_leave_requests", sa.Column("revoked_days", sa.JSON))


def downgrade() -> None:
    with op.batch_alter_table("staff_leave_requests") as batch:  # SQLite drops a column by copying the table
        batch.drop_column("revoked_days")
