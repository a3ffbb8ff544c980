"""Run leases: one process executes a run at a time, on SQLite and PostgreSQL alike.

A lease is two columns of the run's row (owner, expiry) taken with one conditional UPDATE, so
the database decides between two processes resuming one run. While runs execute, one heartbeat
per process renews all of its leases with one UPDATE and checks that the database is still the
one it opened; a lease past its expiry belongs to a process that died, and may be taken over.
A failed heartbeat (storage gone, file replaced, lease lost) cancels the runs it covers with the
reason, so they stop instead of writing into the void.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

from sqlalchemy import bindparam, or_, select, update
from sqlalchemy.engine import Connection

from orchestrator.errors import RunBusy
from orchestrator.store.db import Store, storage_error
from orchestrator.store.models import RunRow, as_utc

__all__ = ["LEASE_TTL", "LeaseKeeper", "acquire", "new_owner", "release"]

LEASE_TTL = timedelta(seconds=30)
"""How long a lease holds without renewal (renewed every third of it while the run executes)."""


def new_owner() -> str:
    """This process's lease-holder name: host, pid and a random instance id."""
    return f"{socket.gethostname()[:60]}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


def holder_is_dead(holder: str | None) -> bool:
    """Whether ``holder`` names a process of this host that no longer exists (a killed process's
    lease need not be waited out)."""
    if not holder:
        return True
    parts = holder.rsplit(":", 2)
    if len(parts) != 3 or parts[0] != socket.gethostname()[:60] or not parts[1].isdigit():
        return False
    try:
        os.kill(int(parts[1]), 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False


# Built once (SQLAlchemy caches their compiled form): two per run on the hot path.
_HOLDER = select(RunRow.lease_owner).where(RunRow.id == bindparam("b_id"))
_TAKE = (update(RunRow)
         .where(RunRow.id == bindparam("b_id"),
                or_(RunRow.lease_owner.is_(None), RunRow.lease_owner == bindparam("b_owner"),
                    RunRow.lease_expires_at < bindparam("b_now"),
                    RunRow.lease_owner == bindparam("b_dead")))  # NULL where no dead holder: never true
         .values(lease_owner=bindparam("b_owner"), lease_expires_at=bindparam("b_until")))
_RELEASE = (update(RunRow).where(RunRow.id == bindparam("b_id"), RunRow.lease_owner == bindparam("b_owner"))
            .values(lease_owner=None, lease_expires_at=None))


def acquire(conn: Connection, run_id: str, owner: str) -> tuple[str, datetime] | None:
    """Take the lease of ``run_id`` for ``owner`` (free, expired, or held by a dead process of
    this host); None when taken, else (holder, expiry) of the live process that holds it."""
    now = datetime.now(UTC)
    holder = conn.execute(_HOLDER, {"b_id": run_id}).scalar_one_or_none()
    dead = holder if holder and holder_is_dead(holder) else None
    taken = conn.execute(_TAKE, {"b_id": run_id, "b_owner": owner, "b_now": now, "b_dead": dead,
                                 "b_until": now + LEASE_TTL}).rowcount
    if taken == 1:
        return None
    holder, until = conn.execute(select(RunRow.lease_owner, RunRow.lease_expires_at).where(RunRow.id == run_id)).one()
    assert until is not None  # every write sets the owner and the expiry together
    return str(holder), until


def effective_status(status: str, holder: str | None, expires_at: datetime | None) -> str:
    """A run's status as users should see it: a "running" run whose process is gone (lease
    expired, or its process on this host is dead) is "interrupted"."""
    if status != "running":
        return status
    if holder is None or (expires_at is not None and as_utc(expires_at) < datetime.now(UTC)) or holder_is_dead(holder):
        return "interrupted"
    return status


def renew_all(conn: Connection, owner: str) -> set[str]:
    """Extend every lease ``owner`` holds; returns the runs it still holds."""
    conn.execute(update(RunRow).where(RunRow.lease_owner == owner)
                 .values(lease_expires_at=datetime.now(UTC) + LEASE_TTL))
    return set(conn.execute(select(RunRow.id).where(RunRow.lease_owner == owner)).scalars())


def release(conn: Connection, run_id: str, owner: str) -> None:
    conn.execute(_RELEASE, {"b_id": run_id, "b_owner": owner})


class LeaseKeeper:
    """The leases of one runtime: taken per run, renewed together, given back at the end."""

    def __init__(self, store: Store, owner: str | None = None) -> None:
        self.store = store
        self.owner = owner or new_owner()
        self._active: dict[str, tuple[asyncio.Task[object], list[BaseException]]] = {}
        self._beat: asyncio.Task[None] | None = None

    @contextlib.asynccontextmanager
    async def hold(self, run_id: str, *, taken: bool = False) -> AsyncIterator[list[BaseException]]:
        """Hold ``run_id``'s lease while the body runs; yields the list the heartbeat puts the
        reason in when it cancels the body. Raises RunBusy when another live process holds it.
        ``taken``: the lease is this keeper's already (a run created with it, ``runs.create_run``)."""
        holder = None if taken else await self.store.transact(lambda conn: acquire(conn, run_id, self.owner))
        if holder is not None:
            raise RunBusy(run_id, holder[0], holder[1].isoformat())
        task = asyncio.current_task()
        assert task is not None
        faults: list[BaseException] = []
        self._active[run_id] = (task, faults)
        if self._beat is None or self._beat.done():
            self._beat = asyncio.create_task(self._heartbeat())
        try:
            yield faults
        finally:
            self._active.pop(run_id, None)
            with contextlib.suppress(Exception):
                await asyncio.shield(self.store.transact(lambda conn: release(conn, run_id, self.owner)))

    async def _heartbeat(self) -> None:
        while self._active:
            await asyncio.sleep(LEASE_TTL.total_seconds() / 3)
            covered = list(self._active)  # runs that start during the renewal are not judged by it
            try:
                self.store.check_file()
                held = await self.store.transact(lambda conn: renew_all(conn, self.owner))
            except Exception as exc:
                self._cancel([r for r in covered if r in self._active], storage_error(exc, self.store.db_url) or exc)
                return
            lost = [run_id for run_id in covered if run_id in self._active and run_id not in held]
            for run_id in lost:
                self._cancel([run_id], RunBusy(run_id, "another process", "now"))

    def _cancel(self, run_ids: list[str], reason: BaseException) -> None:
        for run_id in run_ids:
            task, faults = self._active[run_id]
            faults.append(reason)
            task.cancel()

    async def aclose(self) -> None:
        if self._beat is not None:
            self._beat.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._beat
