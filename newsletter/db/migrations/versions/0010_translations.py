"""translations: English machine translations of a paper's Chinese summary and takeaways (#11)

Revision ID: 0010
Revises: 0006
"""

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "translations",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("paper_id", sa.Integer(), sa.ForeignKey("papers.id", ondelete="CASCADE"), nullable=False),
        sa.Column("source_hash", sa.String(64), nullable=False),
        sa.Column("model", sa.String(200), nullable=False),
        sa.Column("summary_en", sa.Text(), nullable=True),
        sa.Column("takeaways_en", sa.JSON(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.UniqueConstraint("paper_id", "source_hash", "model", name="uq_translation_source_model"),
    )
    op.create_index("ix_translations_paper_id", "translations", ["paper_id"])


def downgrade() -> None:
    op.drop_index("ix_translations_paper_id", table_name="translations")
    op.drop_table("translations")
