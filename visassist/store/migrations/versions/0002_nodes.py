"""Several nodes on one database: the nodes, which node a session is placed on, and e-mail addresses
unique whatever their case on both databases.

Revision ID: 0002
Revises: 0001
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "nodes",
        sa.Column("id", sa.Text(), primary_key=True),
        sa.Column("url", sa.Text(), nullable=False),  # the base of the links to sessions placed here
        sa.Column("capacity", sa.Integer(), nullable=False),
        sa.Column("load", sa.Integer(), nullable=False, server_default="0"),  # its live rooms
        sa.Column("state", sa.Text(), nullable=False),  # active, draining, stopped or dead
        sa.Column("started_at", sa.Text(), nullable=False),
        sa.Column("heartbeat_at", sa.Text(), nullable=False),
    )
    with op.batch_alter_table("sessions") as batch:
        batch.add_column(sa.Column("node_id", sa.Text(), nullable=True))
    op.create_index("sessions_node", "sessions", ["node_id", "status"])
    op.create_index("users_email", "users", [sa.text("lower(email)")], unique=True)


def downgrade() -> None:
    op.drop_index("users_email", "users")
    op.drop_index("sessions_node", "sessions")
    with op.batch_alter_table("sessions") as batch:
        batch.drop_column("node_id")
    op.drop_table("nodes")
