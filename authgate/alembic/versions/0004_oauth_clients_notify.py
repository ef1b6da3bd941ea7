"""PostgreSQL: NOTIFY authgate_clients on every change to oauth_clients

Every AuthGate process caches client rows (authgate.clientcache) and LISTENs on
this channel, so a change made anywhere (another process, `authgate` commands,
psql by hand) empties every cache when it commits.  SQLite: nothing to do (one
serving process; CLIENT_CACHE_TTL bounds anything else).

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-27 14:30:00.000000
"""

from __future__ import annotations

from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    op.execute("""
        CREATE OR REPLACE FUNCTION authgate_clients_changed() RETURNS trigger
        LANGUAGE plpgsql AS $$
        BEGIN
            PERFORM pg_notify('authgate_clients', '');
            RETURN NULL;
        END
        $$
    """)
    op.execute("""
        CREATE TRIGGER oauth_clients_changed
        AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON oauth_clients
        FOR EACH STATEMENT EXECUTE FUNCTION authgate_clients_changed()
    """)


def downgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    op.execute("DROP TRIGGER IF EXISTS oauth_clients_changed ON oauth_clients")
    op.execute("DROP FUNCTION IF EXISTS authgate_clients_changed()")
