"""The budget ledger on SQLite and PostgreSQL: limits hold under concurrency."""

from __future__ import annotations

import asyncio

import pytest
from sqlalchemy import func, select

from budget.errors import BudgetSpecError, LimitReached
from budget.ledger import Charge, Ledger
from budget.limits import Limit, parse_budget
from budget.tables import BudgetAccountRow, LedgerEntryRow
from orchestrator.store.db import Store


def test_parse_budget() -> None:
    limits = parse_budget("search=10, browse=5,tokens=20000,usd=0.5,team/search=+3", "run:x")
    assert [(lim.scope, lim.resource, lim.amount, lim.relative) for lim in limits] == [
        ("run:x", "tool:search", 10.0, False),
        ("run:x", "tool:browse", 5.0, False),
        ("run:x", "tokens", 20000.0, False),
        ("run:x", "usd", 0.5, False),
        ("team", "tool:search", 3.0, True),
    ]
    for bad in ("search", "search=ten", "=5", "search=5;browse=2"):
        with pytest.raises(BudgetSpecError):
            parse_budget(bad, "run:x")


async def _ledger(db_url: str) -> Ledger:
    store = Store(db_url)
    await store.ensure_schema()
    return Ledger(store)


def test_reserve_settle_release(db_url: str) -> None:
    async def go() -> None:
        ledger = await _ledger(db_url)
        await ledger.set_limits([Limit("run:a", "tool:search", 3)])
        r1 = await ledger.reserve("k1", [Charge("run:a", "tool:search", 2)], "a")
        with pytest.raises(LimitReached) as exc:
            await ledger.reserve("k2", [Charge("run:a", "tool:search", 2)], "a")
        assert exc.value.limit == 3 and exc.value.used == 2 and exc.value.resource == "tool:search"
        # Used less than reserved.
        await ledger.store.transact(lambda s: ledger.settle(r1, [Charge("run:a", "tool:search", 1)], s))
        r3 = await ledger.reserve("k3", [Charge("run:a", "tool:search", 2)], "a")
        await ledger.release(r3)
        [acct] = await ledger.accounts(["run:a"])
        assert (acct.spent, acct.reserved, acct.remaining) == (1.0, 0.0, 2.0)
        # Unlimited resources are not reserved at all.
        r4 = await ledger.reserve("k4", [Charge("run:a", "tool:browse", 100)], "a")
        assert r4.parts == ()
        # A crashed caller's reservation is adopted, not taken twice.
        r5 = await ledger.reserve("k5", [Charge("run:a", "tool:search", 2)], "a")
        again = await ledger.reserve("k5", [Charge("run:a", "tool:search", 2)], "a")
        assert again.adopted and again.parts == r5.parts
        [acct] = await ledger.accounts(["run:a"])
        assert acct.reserved == 2.0
        await ledger.store.aclose()

    asyncio.run(go())


def test_a_refused_reservation_holds_nothing_on_any_account(db_url: str) -> None:
    """All or nothing across accounts (on PostgreSQL, the one-statement reservation as well as
    the transaction it falls back to): the account with room is not held when another has none."""
    async def go() -> None:
        ledger = await _ledger(db_url)
        await ledger.set_limits([Limit("run:m", "tool:search", 10), Limit("team", "tool:search", 1)])
        charges = [Charge("run:m", "tool:search", 1), Charge("team", "tool:search", 2)]
        with pytest.raises(LimitReached) as exc:
            await ledger.reserve("m1", charges, "m")
        assert (exc.value.scope, exc.value.limit, exc.value.used, exc.value.requested) == ("team", 1, 0, 2)
        assert [(a.scope, a.reserved) for a in await ledger.accounts(["run:m", "team"])] == [
            ("run:m", 0.0), ("team", 0.0)]
        async with ledger.store.session() as s:
            assert (await s.execute(select(func.count()).select_from(LedgerEntryRow))).scalar_one() == 0
        held = await ledger.reserve("m2", [Charge("run:m", "tool:search", 1), Charge("team", "tool:search", 1)], "m")
        assert [(scope, amount) for _, scope, _, amount in held.parts] == [("run:m", 1.0), ("team", 1.0)]
        await ledger.store.aclose()

    asyncio.run(go())


def test_200_concurrent_calls_against_limit_50(db_url: str) -> None:
    async def go() -> None:
        ledger = await _ledger(db_url)
        await ledger.set_limits([Limit("run:c", "tool:search", 50), Limit("team", "tool:search", 1000)])

        async def call(i: int) -> bool:
            charges = [Charge("run:c", "tool:search", 1), Charge("team", "tool:search", 1)]
            try:
                r = await ledger.reserve(f"call-{i}", charges, "c")
            except LimitReached:
                return False
            await ledger.store.transact(lambda s: ledger.settle(r, charges, s))
            return True

        results = await asyncio.gather(*(call(i) for i in range(200)))
        assert sum(results) == 50
        async with ledger.store.session() as s:
            accts = {(a.scope): a for a in (await s.execute(select(BudgetAccountRow))).scalars()}
            settled = (await s.execute(
                select(func.sum(LedgerEntryRow.settled_amount)).where(LedgerEntryRow.account_id == accts["run:c"].id)
            )).scalar_one()
        assert accts["run:c"].spent == 50 and accts["run:c"].reserved == 0
        assert accts["team"].spent == 50  # a refused call charged no scope at all
        assert settled == 50
        await ledger.store.aclose()

    asyncio.run(go())
