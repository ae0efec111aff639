"""subscribers.frequency and issues.frequency (daily | weekly); issues unique per (frequency, issue_date)

Revision ID: 0008
Revises: 0006
"""

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None

# 0002 created issues.issue_date's unique constraint without a name: PostgreSQL called it issues_issue_date_key;
# SQLite keeps it nameless, so batch mode names it by this convention when it copies the table.
_SQLITE_NAMES = {"uq": "uq_%(table_name)s_%(column_0_name)s"}


def _old_unique() -> str:
    return "issues_issue_date_key" if op.get_bind().dialect.name == "postgresql" else "uq_issues_issue_date"


def upgrade() -> None:
    with op.batch_alter_table("subscribers", schema=None) as batch_op:
        batch_op.add_column(sa.Column("frequency", sa.String(length=8), nullable=False, server_default="daily"))
    with op.batch_alter_table("issues", schema=None, naming_convention=_SQLITE_NAMES) as batch_op:
        batch_op.add_column(sa.Column("frequency", sa.String(length=8), nullable=False, server_default="daily"))
        batch_op.drop_constraint(_old_unique(), type_="unique")
        batch_op.create_unique_constraint("uq_issue_frequency_date", ["frequency", "issue_date"])


def downgrade() -> None:
    # Weekly issues cannot live in the old schema (one issue per date): drop them with their rows first.
    weekly = "SELECT id FROM issues WHERE frequency = 'weekly'"
    for table in ("deliveries", "issue_variants", "issue_items"):
        op.execute(f"DELETE FROM {table} WHERE issue_id IN ({weekly})")
    op.execute("DELETE FROM issues WHERE frequency = 'weekly'")
    with op.batch_alter_table("issues", schema=None) as batch_op:
        batch_op.drop_constraint("uq_issue_frequency_date", type_="unique")
        batch_op.create_unique_constraint(_old_unique(), ["issue_date"])
        batch_op.drop_column("frequency")
    with op.batch_alter_table("subscribers", schema=None) as batch_op:
        batch_op.drop_column("frequency")
