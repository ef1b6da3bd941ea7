"""Declarative base with a naming convention Alembic can rely on."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import MetaData
from sqlalchemy.orm import DeclarativeBase

from authgate.ids import new_uuid

__all__ = ["Base", "NAMING_CONVENTION", "new_uuid", "utcnow"]

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)


def utcnow() -> dt.datetime:
    """Naive UTC: both SQLite and PostgreSQL columns store UTC without a zone."""
    return dt.datetime.now(dt.UTC).replace(tzinfo=None)

