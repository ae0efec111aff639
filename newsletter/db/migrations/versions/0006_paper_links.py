"""papers.code_url, papers.project_url: code and project links found in the abstract or comment

Revision ID: 0006
Revises: 0005
"""

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("papers", schema=None) as batch_op:
        batch_op.add_column(sa.Column("code_url", sa.Text(), nullable=True))
        batch_op.add_column(sa.Column("project_url", sa.Text(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("papers", schema=None) as batch_op:
        batch_op.drop_column("project_url")
        batch_op.drop_column("code_url")
