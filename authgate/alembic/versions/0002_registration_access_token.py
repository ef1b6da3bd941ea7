"""oauth_clients.registration_access_token_hash (RFC 7592 registration access token)

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-04 10:00:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("oauth_clients", schema=None) as batch_op:
        batch_op.add_column(sa.Column("registration_access_token_hash", sa.String(length=64),
                                      nullable=False, server_default=""))


def downgrade() -> None:
    with op.batch_alter_table("oauth_clients", schema=None) as batch_op:
        batch_op.drop_column("registration_access_token_hash")
