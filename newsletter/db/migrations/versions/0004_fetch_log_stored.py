"""fetch_log.stored: a payload counts as read only once its posts are stored

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
    with op.batch_alter_table("fetch_log", schema=None) as batch_op:
        batch_op.add_column(sa.Column("stored", sa.Boolean(), nullable=False, server_default=sa.false()))
    # Rows from before this column: their payloads were recorded in the same run.
    op.execute("UPDATE fetch_log SET stored = TRUE WHERE sha256 IS NOT NULL")


def downgrade() -> None:
    with op.batch_alter_table("fetch_log", schema=None) as batch_op:
        batch_op.drop_column("stored")
