"""Statements over ``records``: namespaced, versioned JSON values that workflows keep.

The core has no table of any method: a workflow names a namespace (``"priordynaflow.qtable"``)
and keys within it; a value is either run-scoped (``run_id``) or shared (``run_id=""``), and
every write is a new version. Statements are built here and executed by the caller in its own
session or connection, sync or async alike.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, cast

from sqlalchemy import Delete, Insert, Select, Table, Update, delete, func, insert, select, update

from orchestrator.store.models import RecordRow

__all__ = ["SHARED", "delete_key", "insert_version", "keys", "latest", "next_version", "set_data"]

SHARED = ""
"""``run_id`` of records shared by every run (not run-scoped)."""

_t = cast(Table, RecordRow.__table__)


def latest(namespace: str, key: str, *, run_id: str = SHARED, version: int | None = None) -> Select[Any]:
    """The newest version of (namespace, key) (or ``version``): columns version, data, created_at."""
    stmt = select(_t.c.version, _t.c.data, _t.c.created_at).where(
        _t.c.namespace == namespace, _t.c.key == key, _t.c.run_id == run_id)
    if version is not None:
        stmt = stmt.where(_t.c.version == version)
    return stmt.order_by(_t.c.version.desc()).limit(1)


def next_version(namespace: str, key: str, *, run_id: str = SHARED) -> Select[Any]:
    """One scalar: the version the next write of (namespace, key) gets."""
    return select(func.coalesce(func.max(_t.c.version), 0) + 1).where(
        _t.c.namespace == namespace, _t.c.key == key, _t.c.run_id == run_id)


def insert_version(namespace: str, key: str, version: int, data: Any, *, run_id: str = SHARED) -> Insert:
    return insert(_t).values(namespace=namespace, key=key, version=version, run_id=run_id, data=data,
                             created_at=datetime.now(UTC))


def set_data(namespace: str, key: str, version: int, data: Any, *, run_id: str = SHARED) -> Update:
    """Replace the value of one stored version."""
    return update(_t).where(_t.c.namespace == namespace, _t.c.key == key, _t.c.run_id == run_id,
                            _t.c.version == version).values(data=data)


def delete_key(namespace: str, key: str, *, run_id: str = SHARED) -> Delete:
    """Every version of (namespace, key)."""
    return delete(_t).where(_t.c.namespace == namespace, _t.c.key == key, _t.c.run_id == run_id)


def keys(namespace: str, *, run_id: str = SHARED) -> Select[Any]:
    """(key, newest version, number of versions) of every key in ``namespace``, by key."""
    return (select(_t.c.key, func.max(_t.c.version), func.count())
            .where(_t.c.namespace == namespace, _t.c.run_id == run_id)
            .group_by(_t.c.key).order_by(_t.c.key))
