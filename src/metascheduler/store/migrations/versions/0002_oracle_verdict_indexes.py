"""indexes over pending jobs with and without the oracle's unplaceable verdict

The oracle reads, each tick, the pending jobs it has not judged unplaceable, and those judged
whose job changed since (by `updated_block`): partial indexes over each kind let it find the few
it needs without scanning every pending job (100,000 of them behind a flood of spam).

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-03 16:40:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

UNJUDGED = sa.text("unplaceable_reason IS NULL")
JUDGED = sa.text("unplaceable_reason IS NOT NULL")


def upgrade() -> None:
    with op.batch_alter_table("jobs", schema=None) as batch_op:
        batch_op.create_index(
            "ix_jobs_unjudged",
            ["status", "job_id"],
            unique=False,
            sqlite_where=UNJUDGED,
            postgresql_where=UNJUDGED,
        )
        batch_op.create_index(
            "ix_jobs_judged",
            ["status", "updated_block", "job_id"],
            unique=False,
            sqlite_where=JUDGED,
            postgresql_where=JUDGED,
        )


def downgrade() -> None:
    with op.batch_alter_table("jobs", schema=None) as batch_op:
        batch_op.drop_index("ix_jobs_judged")
        batch_op.drop_index("ix_jobs_unjudged")
