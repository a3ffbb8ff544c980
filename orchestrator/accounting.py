"""What one call costs against the budget ledger (pure: values in, charges out).

The ``run:<id>`` scope, the charges of an LLM call and of a tool call, the upper-bound input
estimate used to reserve before a call, and the mapping of the budget package's errors onto
QuotaFlow's error tree. No I/O here.
"""

from __future__ import annotations

from collections.abc import Sequence

from budget.costs import PriceTable
from budget.errors import BudgetSpecError, LimitReached
from budget.ledger import Charge
from budget.limits import DOLLARS, Limit, parse_budget, tool_resource
from orchestrator.errors import BadInputError, BudgetExhausted
from orchestrator.types import Message, Usage

__all__ = [
    "RUN_SCOPE_PREFIX",
    "budget_exhausted",
    "estimate_input_tokens",
    "run_limits",
    "run_scope",
    "token_charges",
    "tool_charges",
]

RUN_SCOPE_PREFIX = "run:"

# Token reservations must be upper bounds. Without the model's tokenizer, a character count
# over this ratio over-estimates real tokenizers on English and code; the ledger settles the
# real count the server reports.
CHARS_PER_TOKEN_BOUND = 2.0
TOKENS_PER_MESSAGE = 8


def run_scope(run_id: str) -> str:
    """The budget scope every call of run ``run_id`` is charged to."""
    return f"{RUN_SCOPE_PREFIX}{run_id}"


def run_limits(budget: str | Sequence[Limit] | None, run_id: str) -> list[Limit]:
    """The limits of a budget string or list, with ``run`` (the default scope) as ``run:<id>``."""
    if isinstance(budget, str):
        try:
            limits = parse_budget(budget, run_scope(run_id))
        except BudgetSpecError as exc:
            raise BadInputError(exc.what, exc.expected) from None
    else:
        limits = list(budget or [])
    return [lim if lim.scope != "run" else Limit(run_scope(run_id), lim.resource, lim.amount, lim.relative)
            for lim in limits]


def budget_exhausted(exc: LimitReached) -> BudgetExhausted:
    """The ledger's refusal as QuotaFlow's error (pauses the run, exit code 3)."""
    return BudgetExhausted(exc.scope, exc.resource, exc.limit, exc.used, exc.requested)


def estimate_input_tokens(messages: Sequence[Message]) -> int:
    """An upper bound of the prompt tokens of ``messages`` from their characters."""
    text = "".join(m.content for m in messages)
    return int(len(text) / CHARS_PER_TOKEN_BOUND) + TOKENS_PER_MESSAGE * (len(messages) + 1)


def token_charges(scopes: Sequence[str], pricing: PriceTable, model: str, input_tokens: int, output_tokens: int,
                  max_output: int, *, cost: float | None = None, cached: int = 0, reasoning: int = 0) -> list[Charge]:
    """Charges of one LLM call; with ``max_output`` (a reservation) output is bounded by it."""
    out = output_tokens or max_output
    if cost is None:
        cost = pricing.price_for(model).cost(Usage(input_tokens, 0, out))
    amounts = {"tokens": input_tokens + out, "tokens:input": input_tokens, "tokens:output": out,
               "tokens:cached_input": cached, "tokens:reasoning": reasoning if not max_output else out,
               DOLLARS: cost}
    return [Charge(sc, res, amt) for sc in scopes for res, amt in amounts.items()]


def tool_charges(scopes: Sequence[str], tool: str, units: float, cost: float) -> list[Charge]:
    """Charges of one tool call of ``units`` in the tool's own unit, costing ``cost`` dollars."""
    return [Charge(sc, tool_resource(tool), units) for sc in scopes] + [Charge(sc, DOLLARS, cost) for sc in scopes]
