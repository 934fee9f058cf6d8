"""initial schema

Revision ID: 0001
Revises:
Create Date: 2026-11-26 16:04:25.684460
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import metascheduler.store.types

revision = "0001"
down_revision = None
branch_labels = ("store",)
depends_on = None


def upgrade() -> None:
    op.create_table(
        "blocks",
        sa.Column("number", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("hash", sa.String(length=66), nullable=False),
        sa.Column("parent_hash", sa.String(length=66), nullable=False),
        sa.Column("timestamp", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("number", name=op.f("pk_blocks")),
    )
    op.create_table(
        "chain_cursor",
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("block_number", sa.BigInteger(), nullable=False),
        sa.Column("block_hash", sa.String(length=66), nullable=False),
        sa.PrimaryKeyConstraint("name", name=op.f("pk_chain_cursor")),
    )
    op.create_table(
        "events",
        sa.Column("tx_hash", sa.String(length=66), nullable=False),
        sa.Column("log_index", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("block_number", sa.BigInteger(), nullable=False),
        sa.Column("block_hash", sa.String(length=66), nullable=False),
        sa.Column("block_time", sa.BigInteger(), nullable=False),
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("job_id", sa.BigInteger(), nullable=True),
        sa.Column("customer", sa.String(length=42), nullable=True),
        sa.Column("provider", sa.String(length=42), nullable=True),
        sa.Column("args", sa.JSON(), nullable=False),
        sa.PrimaryKeyConstraint("tx_hash", "log_index", name=op.f("pk_events")),
    )
    with op.batch_alter_table("events", schema=None) as batch_op:
        batch_op.create_index("ix_events_block_number", ["block_number"], unique=False)
        batch_op.create_index(batch_op.f("ix_events_customer"), ["customer"], unique=False)
        batch_op.create_index(
            "ix_events_job_id_block", ["job_id", "block_number", "log_index"], unique=False
        )
        batch_op.create_index(batch_op.f("ix_events_provider"), ["provider"], unique=False)

    op.create_table(
        "jobs",
        sa.Column("job_id", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("customer", sa.String(length=42), nullable=False),
        sa.Column("provider", sa.String(length=42), nullable=True),
        sa.Column("status", sa.Integer(), nullable=False),
        sa.Column(
            "escrow", metascheduler.store.types.Uint256(precision=78, scale=0), nullable=False
        ),
        sa.Column(
            "max_price_per_minute",
            metascheduler.store.types.Uint256(precision=78, scale=0),
            nullable=False,
        ),
        sa.Column("cpus", sa.Integer(), nullable=False),
        sa.Column("gpus", sa.Integer(), nullable=False),
        sa.Column("mem_mb", sa.BigInteger(), nullable=False),
        sa.Column("spec", sa.LargeBinary(), nullable=False),
        sa.Column("spec_hash", sa.String(length=66), nullable=False),
        sa.Column("labels", sa.JSON(), nullable=False),
        sa.Column("time_limit_minutes", sa.Integer(), nullable=True),
        sa.Column(
            "price_per_minute",
            metascheduler.store.types.Uint256(precision=78, scale=0),
            nullable=True,
        ),
        sa.Column("fee_bps", sa.Integer(), nullable=True),
        sa.Column("requested_at", sa.BigInteger(), nullable=False),
        sa.Column("placed_at", sa.BigInteger(), nullable=True),
        sa.Column("accepted_at", sa.BigInteger(), nullable=True),
        sa.Column("started_at", sa.BigInteger(), nullable=True),
        sa.Column("ended_at", sa.BigInteger(), nullable=True),
        sa.Column("requested_block", sa.BigInteger(), nullable=False),
        sa.Column("paid", metascheduler.store.types.Uint256(precision=78, scale=0), nullable=True),
        sa.Column("fee", metascheduler.store.types.Uint256(precision=78, scale=0), nullable=True),
        sa.Column(
            "refunded", metascheduler.store.types.Uint256(precision=78, scale=0), nullable=True
        ),
        sa.Column("exit_code", sa.Integer(), nullable=True),
        sa.Column("unplaceable_reason", sa.Text(), nullable=True),
        sa.Column("last_reason", sa.Text(), nullable=True),
        sa.Column("returns", sa.Integer(), nullable=False),
        sa.Column("updated_block", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("job_id", name=op.f("pk_jobs")),
    )
    with op.batch_alter_table("jobs", schema=None) as batch_op:
        batch_op.create_index("ix_jobs_customer_job_id", ["customer", "job_id"], unique=False)
        batch_op.create_index("ix_jobs_provider_status", ["provider", "status"], unique=False)
        batch_op.create_index("ix_jobs_status_job_id", ["status", "job_id"], unique=False)

    op.create_table(
        "oracle_actions",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("tx_hash", sa.String(length=66), nullable=True),
        sa.Column("nonce", sa.BigInteger(), nullable=True),
        sa.Column("job_ids", sa.JSON(), nullable=False),
        sa.Column("providers", sa.JSON(), nullable=True),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("sent_at", sa.Float(), nullable=False),
        sa.Column("mined_block", sa.BigInteger(), nullable=True),
        sa.Column("gas_used", sa.BigInteger(), nullable=True),
        sa.Column("skipped", sa.JSON(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_oracle_actions")),
    )
    with op.batch_alter_table("oracle_actions", schema=None) as batch_op:
        batch_op.create_index("ix_oracle_actions_state", ["state"], unique=False)
        batch_op.create_index(batch_op.f("ix_oracle_actions_tx_hash"), ["tx_hash"], unique=False)

    op.create_table(
        "providers",
        sa.Column("address", sa.String(length=42), nullable=False),
        sa.Column("status", sa.Integer(), nullable=False),
        sa.Column("nodes", sa.Integer(), nullable=False),
        sa.Column("cpus", sa.Integer(), nullable=False),
        sa.Column("gpus", sa.Integer(), nullable=False),
        sa.Column("mem_mb", sa.BigInteger(), nullable=False),
        sa.Column(
            "cpu_price", metascheduler.store.types.Uint256(precision=78, scale=0), nullable=False
        ),
        sa.Column(
            "gpu_price", metascheduler.store.types.Uint256(precision=78, scale=0), nullable=False
        ),
        sa.Column(
            "gb_price", metascheduler.store.types.Uint256(precision=78, scale=0), nullable=False
        ),
        sa.Column("labels", sa.JSON(), nullable=False),
        sa.Column("registered_block", sa.BigInteger(), nullable=False),
        sa.Column("updated_block", sa.BigInteger(), nullable=False),
        sa.Column("last_heartbeat_at", sa.BigInteger(), nullable=True),
        sa.Column("last_heartbeat_seq", sa.BigInteger(), nullable=True),
        sa.Column("heartbeat", sa.JSON(), nullable=True),
        sa.PrimaryKeyConstraint("address", name=op.f("pk_providers")),
    )


def downgrade() -> None:
    op.drop_table("providers")
    with op.batch_alter_table("oracle_actions", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_oracle_actions_tx_hash"))
        batch_op.drop_index("ix_oracle_actions_state")

    op.drop_table("oracle_actions")
    with op.batch_alter_table("jobs", schema=None) as batch_op:
        batch_op.drop_index("ix_jobs_status_job_id")
        batch_op.drop_index("ix_jobs_provider_status")
        batch_op.drop_index("ix_jobs_customer_job_id")

    op.drop_table("jobs")
    with op.batch_alter_table("events", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_events_provider"))
        batch_op.drop_index("ix_events_job_id_block")
        batch_op.drop_index(batch_op.f("ix_events_customer"))
        batch_op.drop_index("ix_events_block_number")

    op.drop_table("events")
    op.drop_table("chain_cursor")
    op.drop_table("blocks")
