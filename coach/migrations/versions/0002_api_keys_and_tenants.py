"""api keys and tenants

Revision ID: 0002
Revises: 0001

Rows from before this revision belong to tenant 'default'. SQLite cannot add a foreign key to
an existing table: batch mode rebuilds questions there (PostgreSQL alters in place); nothing
references questions, so the rebuild loses nothing.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

FK_QUESTIONS_API_KEY = "fk_questions_api_key_id_api_keys"


def upgrade() -> None:
    op.create_table(
        "api_keys",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("prefix", sa.String(length=16), nullable=False),
        sa.Column("key_hash", sa.String(length=64), nullable=False),
        sa.Column("tenant", sa.String(length=64), nullable=False),
        sa.Column("name", sa.String(length=100), nullable=False),
        sa.Column("scopes", sa.JSON(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("revoked_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("key_hash"),
    )
    op.create_index(op.f("ix_api_keys_prefix"), "api_keys", ["prefix"])
    op.create_index(op.f("ix_api_keys_tenant"), "api_keys", ["tenant"])

    with op.batch_alter_table("snippets") as batch:
        batch.add_column(
            sa.Column("tenant", sa.String(length=64), server_default="default", nullable=False)
        )
        batch.create_index("ix_snippets_tenant_created_at", ["tenant", "created_at"])

    with op.batch_alter_table("questions") as batch:
        batch.add_column(
            sa.Column("tenant", sa.String(length=64), server_default="default", nullable=False)
        )
        batch.add_column(sa.Column("api_key_id", sa.Uuid(), nullable=True))
        batch.create_foreign_key(
            FK_QUESTIONS_API_KEY, "api_keys", ["api_key_id"], ["id"], ondelete="SET NULL"
        )
        batch.create_index("ix_questions_api_key_id_created_at", ["api_key_id", "created_at"])


def downgrade() -> None:
    with op.batch_alter_table("questions") as batch:
        batch.drop_index("ix_questions_api_key_id_created_at")
        batch.drop_constraint(FK_QUESTIONS_API_KEY, type_="foreignkey")
        batch.drop_column("api_key_id")
        batch.drop_column("tenant")

    # Never a rebuild of snippets: dropping it (SQLite's copy-and-rename) would cascade to
    # chunks and null questions.snippet_id. SQLite >= 3.35 drops the column in place.
    with op.batch_alter_table("snippets", recreate="never") as batch:
        batch.drop_index("ix_snippets_tenant_created_at")
        batch.drop_column("tenant")

    op.drop_index(op.f("ix_api_keys_tenant"), table_name="api_keys")
    op.drop_index(op.f("ix_api_keys_prefix"), table_name="api_keys")
    op.drop_table("api_keys")
