"""Budget specifications: parsing what users type into typed limits (pure)."""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

from budget.errors import BudgetSpecError

TOKEN_RESOURCES = {
    "tokens": "tokens",
    "input_tokens": "tokens:input",
    "cached_input_tokens": "tokens:cached_input",
    "output_tokens": "tokens:output",
    "reasoning_tokens": "tokens:reasoning",
}
DOLLARS = "usd"


def tool_resource(tool: str) -> str:
    return f"tool:{tool}"


@dataclass(frozen=True)
class Limit:
    """A limit on one resource in one scope; ``relative`` limits add to the current one
    (``--budget search=+5`` when resuming)."""

    scope: str
    resource: str
    amount: float
    relative: bool = False


_ITEM = re.compile(
    r"^(?:(?P<scope>[A-Za-z0-9_.:-]+)/)?(?P<name>[A-Za-z_][A-Za-z0-9_.-]*)=(?P<plus>\+)?(?P<amount>\d+(?:\.\d+)?)$"
)


def resource_for(name: str) -> str:
    """``search`` -> ``tool:search``, ``output_tokens`` -> ``tokens:output``, ``usd`` -> ``usd``."""
    if name in TOKEN_RESOURCES:
        return TOKEN_RESOURCES[name]
    if name in (DOLLARS, "dollars", "$"):
        return DOLLARS
    return tool_resource(name)


def parse_budget(spec: str, default_scope: str) -> list[Limit]:
    """Parse ``search=10,browse=5,tokens=20000,usd=0.5`` (optionally ``scope/name=N``).

    Names are tool names, the token kinds (tokens, input_tokens, cached_input_tokens,
    output_tokens, reasoning_tokens) or ``usd``. ``=+N`` adds to an existing limit.
    """
    limits: list[Limit] = []
    if not spec.strip():
        return limits
    seen: set[tuple[str, str]] = set()
    for raw in spec.split(","):
        item = raw.strip()
        m = _ITEM.match(item)
        if not m:
            raise BudgetSpecError(
                f"budget item {item!r}",
                "NAME=NUMBER items separated by commas, e.g. search=10,browse=5,tokens=20000,usd=0.5",
            )
        limit = Limit(
            scope=m["scope"] or default_scope,
            resource=resource_for(m["name"]),
            amount=float(m["amount"]),
            relative=bool(m["plus"]),
        )
        if (limit.scope, limit.resource) in seen:
            raise BudgetSpecError(f"budget item {item!r}", "each resource once per scope (it is named twice)")
        seen.add((limit.scope, limit.resource))
        limits.append(limit)
    return limits


def check_resources(limits: list[Limit], tools: Iterable[str]) -> None:
    """Refuse limits on resources that nothing charges: a typo such as ``serach=5`` would
    otherwise leave ``search`` unlimited."""
    tools = set(tools)
    valid = {tool_resource(t) for t in tools} | set(TOKEN_RESOURCES.values()) | {DOLLARS}
    for lim in limits:
        if lim.resource not in valid:
            name = lim.resource.removeprefix("tool:")
            names = sorted(tools) + sorted(TOKEN_RESOURCES) + [DOLLARS]
            raise BudgetSpecError(f"budget name {name!r}", f"a tool of the run or a token kind: {', '.join(names)}")
