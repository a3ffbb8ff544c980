"""What one call costs against the budget ledger (pure: values in, charges out).

The ``run:<id>`` scope, the charges of an LLM call and of a tool call, how many output tokens a
call may be allowed so that it cannot overspend, the upper bound of a prompt's tokens where the
backend cannot count them exactly, and the mapping of the budget package's errors onto
QuotaFlow's error tree. No I/O here.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence

from budget.costs import ModelPrice, PriceTable
from budget.errors import BudgetSpecError, LimitReached
from budget.ledger import Charge
from budget.limits import DOLLARS, Limit, check_resources, parse_budget, tool_resource
from orchestrator.errors import BadInputError, BudgetExhausted
from orchestrator.types import Message, Usage

__all__ = [
    "RUN_SCOPE_PREFIX",
    "budget_exhausted",
    "input_tokens_upper_bound",
    "named_scopes",
    "output_allowance",
    "run_limits",
    "run_scope",
    "token_charges",
    "tool_charges",
]

RUN_SCOPE_PREFIX = "run:"

# Reservations must be upper bounds. Byte-level BPE and byte-fallback tokenizers never make more
# tokens of a text than it has UTF-8 bytes; a chat template adds a few special tokens and role
# names per message (at most 16 for the templates in use: ChatML, Llama 3, SmolLM2).
TEMPLATE_TOKENS_PER_MESSAGE = 16


def run_scope(run_id: str) -> str:
    """The budget scope every call of run ``run_id`` is charged to."""
    return f"{RUN_SCOPE_PREFIX}{run_id}"


def run_limits(budget: str | Sequence[Limit] | None, run_id: str, tools: Iterable[str] | None = None) -> list[Limit]:
    """The limits of a budget string or list, with ``run`` (the default scope) as ``run:<id>``.
    With ``tools`` (the run's tool names), a limit on anything no call charges is refused."""
    try:
        limits = parse_budget(budget, run_scope(run_id)) if isinstance(budget, str) else list(budget or [])
        if tools is not None:
            check_resources(limits, tools)
    except BudgetSpecError as exc:
        raise BadInputError(exc.what, exc.expected) from None
    return [lim if lim.scope != "run" else Limit(run_scope(run_id), lim.resource, lim.amount, lim.relative)
            for lim in limits]


def named_scopes(limits: Iterable[Limit], run_id: str) -> list[str]:
    """The user-named scopes of ``limits`` (``team/search=5`` names ``team``): every call of the
    run is charged to them too."""
    return sorted({lim.scope for lim in limits} - {run_scope(run_id)})


def budget_exhausted(exc: LimitReached) -> BudgetExhausted:
    """The ledger's refusal as QuotaFlow's error (pauses the run, exit code 3)."""
    return BudgetExhausted(exc.scope, exc.resource, exc.limit, exc.used, exc.requested)


def input_tokens_upper_bound(messages: Sequence[Message]) -> int:
    """At least as many tokens as any byte-level tokenizer makes of ``messages`` in a chat
    template: their UTF-8 bytes plus the template's tokens (the reservation where the backend
    cannot count the prompt exactly)."""
    size = sum(len(m.to_wire()["content"].encode("utf-8", "surrogatepass")) for m in messages)
    return size + TEMPLATE_TOKENS_PER_MESSAGE * (len(messages) + 1)


def output_allowance(remaining: Mapping[tuple[str, str], float | None], scopes: Sequence[str], price: ModelPrice,
                     input_tokens: int, requested: int) -> int:
    """The most output tokens a call with ``input_tokens`` of prompt may generate within every
    limit of ``scopes`` (``remaining`` by (scope, resource); None or absent: no limit), at most
    ``requested``. Output counts against ``tokens``, ``output_tokens``, ``reasoning_tokens``
    (reasoning is part of the output) and ``usd`` (prompt priced as uncached)."""
    allowed = float(requested)
    input_usd = price.cost_of(input_tokens, 0, 0)
    per_output_usd = price.cost_of(0, 0, 1)
    for scope in scopes:
        for resource, room in (("tokens", input_tokens), ("tokens:output", 0), ("tokens:reasoning", 0),
                               (DOLLARS, input_usd)):
            left = remaining.get((scope, resource))
            if left is None:
                continue
            if resource == DOLLARS:
                if per_output_usd > 0:
                    allowed = min(allowed, (left - room) / per_output_usd)
            else:
                allowed = min(allowed, left - room)
    return max(0, math.floor(allowed + 1e-9))


def token_charges(scopes: Sequence[str], pricing: PriceTable, model: str, input_tokens: int, output_tokens: int,
                  max_output: int, *, cost: float | None = None, cached: int = 0, reasoning: int = 0) -> list[Charge]:
    """Charges of one LLM call. With ``max_output`` (a reservation) they are upper bounds: output
    at its limit, every prompt token possibly cached and priced as uncached."""
    out = output_tokens or max_output
    if cost is None:
        cost = pricing.price_for(model).cost(Usage(input_tokens, 0, out))
    reserving = bool(max_output)
    amounts = {"tokens": input_tokens + out, "tokens:input": input_tokens, "tokens:output": out,
               "tokens:cached_input": input_tokens if reserving else cached,
               "tokens:reasoning": out if reserving else reasoning, DOLLARS: cost}
    return [Charge(sc, res, amt) for sc in scopes for res, amt in amounts.items()]


def tool_charges(scopes: Sequence[str], tool: str, units: float, cost: float) -> list[Charge]:
    """Charges of one tool call of ``units`` in the tool's own unit, costing ``cost`` dollars."""
    return [Charge(sc, tool_resource(tool), units) for sc in scopes] + [Charge(sc, DOLLARS, cost) for sc in scopes]
