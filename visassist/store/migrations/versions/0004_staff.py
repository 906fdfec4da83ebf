"""Staff pages: analytics and the home board read sessions by when they were created or ended; an
erased ticket's page says what was erased, by a keyed digest of its id (the sessions' figures stay
unlinked from it).

Revision ID: 0004
Revises: 0003
"""

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("sessions_created", "sessions", ["created_at"])
    op.create_index("sessions_ended", "sessions", ["ended_at"])
    op.create_table(
        "ticket_erasures",
        sa.Column("ticket_digest", sa.Text(), nullable=False),
        sa.Column("at", sa.Text(), nullable=False),
        sa.Column("actor", sa.Text(), nullable=False),
        sa.Column("counts", sa.Text(), nullable=False),
    )
    op.create_index("ticket_erasures_digest", "ticket_erasures", ["ticket_digest"])


def downgrade() -> None:
    op.drop_table("ticket_erasures")
    op.drop_index("sessions_ended", "sessions")
    op.drop_index("sessions_created", "sessions")
