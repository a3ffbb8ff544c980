"""Errors of the budget package.

    BudgetError
    ├── LimitReached      a reservation would take an account past its limit
    ├── BudgetSpecError   a budget string that does not parse
    └── PriceTableError   a price table that cannot be read or has the wrong shape

``budget`` is the bottom layer of QuotaFlow and imports nothing of it; the runtime maps these
onto QuotaFlow's error tree (``orchestrator.errors``) where a user sees them.
"""

from __future__ import annotations


class BudgetError(Exception):
    """Base class of the budget package's errors."""


class LimitReached(BudgetError):
    """Reserving ``requested`` would take ``resource`` in ``scope`` past ``limit``."""

    def __init__(self, scope: str, resource: str, limit: float, used: float, requested: float) -> None:
        self.scope = scope
        self.resource = resource
        self.limit = limit
        self.used = used
        self.requested = requested
        super().__init__(f"{resource} in scope {scope!r}: limit {limit:g}, {used:g} used or reserved, "
                         f"{requested:g} more requested")


class BudgetSpecError(BudgetError, ValueError):
    """``what`` (an item of a budget string) is not valid; ``expected`` says what would be."""

    def __init__(self, what: str, expected: str) -> None:
        self.what = what
        self.expected = expected
        super().__init__(f"{what}: expected {expected}")


class PriceTableError(BudgetError, ValueError):
    """A price table that cannot be read or does not have the documented shape."""
