"""the API's results tables: log chunks and output records

The root of the `results` branch: the API migrates it into its results database
(`results_database_url`), which is the store's database itself on PostgreSQL by default and a
file of its own beside a SQLite store. Tables the API made itself before this migration existed
(with create_all) are taken as they are.

Revision ID: r0001
Revises:
Create Date: 2026-12-03 12:50:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "r0001"
down_revision = None
branch_labels = ("results",)
depends_on = None


def upgrade() -> None:
    existing = sa.inspect(op.get_bind())
    if not existing.has_table("log_chunks"):
        op.create_table(
            "log_chunks",
            sa.Column("job_id", sa.BigInteger(), autoincrement=False, nullable=False),
            sa.Column("seq", sa.Integer(), autoincrement=False, nullable=False),
            sa.Column("digest", sa.String(length=66), nullable=False),
            sa.Column("header", sa.JSON(), nullable=False),
            sa.Column("ciphertext", sa.LargeBinary(), nullable=False),
            sa.Column("signature", sa.LargeBinary(), nullable=False),
            sa.Column("final", sa.Boolean(), nullable=False),
            sa.Column("received_at", sa.Float(), nullable=False),
            sa.PrimaryKeyConstraint("job_id", "seq", name=op.f("pk_log_chunks")),
        )
    if not existing.has_table("job_outputs"):
        op.create_table(
            "job_outputs",
            sa.Column("job_id", sa.BigInteger(), autoincrement=False, nullable=False),
            sa.Column("key", sa.String(length=255), nullable=False),
            sa.Column("state", sa.String(length=16), nullable=False),
            sa.Column("declared_size", sa.BigInteger(), nullable=False),
            sa.Column("size", sa.BigInteger(), nullable=True),
            sa.Column("sha256", sa.String(length=66), nullable=True),
            sa.Column("upload_id", sa.String(length=255), nullable=True),
            sa.Column("updated_at", sa.Float(), nullable=False),
            sa.PrimaryKeyConstraint("job_id", name=op.f("pk_job_outputs")),
        )


def downgrade() -> None:
    op.drop_table("job_outputs")
    op.drop_table("log_chunks")
