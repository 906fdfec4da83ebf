"""Vision: how many faces were blurred in each snapshot, and the values read off snapshots
(visassist/store/sql/fields.py). Fields go with their snapshot (erasure, retention).

Revision ID: 0003
Revises: 0002
"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("snapshots") as batch:
        batch.add_column(sa.Column("faces_blurred", sa.Integer(), nullable=False, server_default="0"))
    op.create_table(
        "snapshot_fields",
        sa.Column("id", sa.Text(), primary_key=True),
        sa.Column("session_id", sa.Text(), sa.ForeignKey("sessions.id"), nullable=False),
        sa.Column("snapshot_id", sa.Text(), sa.ForeignKey("snapshots.id", ondelete="CASCADE"),
                  nullable=False),
        sa.Column("name", sa.Text(), nullable=False),
        sa.Column("value", sa.Text(), nullable=False),
        sa.Column("read_value", sa.Text(), nullable=False),
        sa.Column("confidence", sa.Float(), nullable=False),
        sa.Column("source", sa.Text(), nullable=False),
        sa.Column("box", sa.Text(), nullable=False),
        sa.Column("status", sa.Text(), nullable=False),
        sa.Column("created_at", sa.Text(), nullable=False),
        sa.Column("confirmed_by", sa.Text(), nullable=True),
        sa.Column("confirmed_at", sa.Text(), nullable=True),
    )
    op.create_index("snapshot_fields_session", "snapshot_fields", ["session_id", "created_at"])
    op.create_index("snapshot_fields_snapshot", "snapshot_fields", ["snapshot_id"])


def downgrade() -> None:
    op.drop_table("snapshot_fields")
    with op.batch_alter_table("snapshots") as batch:
        batch.drop_column("faces_blurred")
