"""subscribers.keywords, subscribers.seeds, issue_variants.foryou: interests and the "For you" pick (#11)

Revision ID: 0009
Revises: 0008
"""

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("subscribers", schema=None) as batch_op:
        batch_op.add_column(sa.Column("keywords", sa.Text(), nullable=True))
        batch_op.add_column(sa.Column("seeds", sa.JSON(), nullable=True))
    with op.batch_alter_table("issue_variants", schema=None) as batch_op:
        batch_op.add_column(sa.Column("foryou", sa.JSON(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("issue_variants", schema=None) as batch_op:
        batch_op.drop_column("foryou")
    with op.batch_alter_table("subscribers", schema=None) as batch_op:
        batch_op.drop_column("seeds")
        batch_op.drop_column("keywords")
