"""QuotaFlow's exception tree.

    QuotaFlowError
    ├── ConfigError            bad configuration (file, option, environment)
    ├── BadInputError          bad user input: says which input and what was expected
    ├── BudgetExhausted        a reservation would overspend a budget (scope, resource, limit, used)
    │   └── BudgetOverrun      a backend reported more use than was reserved: the run pauses
    ├── EngineError            an LLM backend failed
    │   ├── EngineUnavailable  transient (connection refused, 429, 5xx): retry later
    │   └── EngineDead         permanent (4xx other than 429, malformed response): do not retry
    ├── StorageError           the database cannot be opened, read or written (exit 4)
    ├── ToolError              a tool failed; the agent sees the message as an observation
    ├── ReplayDivergence       a resumed run asked for another input than the original at that point
    ├── RunBusy                another process holds the run's lease
    ├── RunNotFound            no run with that id in the store
    ├── WorkerLost             an executor's worker died running a run every time it was retried
    └── UnknownWorkflow        no workflow registered under that name
"""

from __future__ import annotations

# Exit codes of the command line: 0 done, 1 a bug, 2 bad input, 3 a budget ran out (the run is
# paused, resumable), 4 an engine or the storage is unavailable (retry or resume later), 5 a
# dataset run some but not all of whose items succeeded.


class QuotaFlowError(Exception):
    """Base class of every error QuotaFlow raises on purpose."""

    exit_code = 1


class ConfigError(QuotaFlowError):
    exit_code = 2


class BadInputError(QuotaFlowError):
    """Input that does not have the expected shape.

    ``what`` names the input (an option, a file and line), ``expected`` says what would be valid.
    """

    exit_code = 2

    def __init__(self, what: str, expected: str, detail: str = "") -> None:
        self.what = what
        self.expected = expected
        self.detail = detail
        msg = f"{what}: expected {expected}"
        if detail:
            msg += f" ({detail})"
        super().__init__(msg)


class BudgetExhausted(QuotaFlowError):
    """A reservation was refused because it would take ``resource`` in ``scope`` past its limit."""

    exit_code = 3

    def __init__(self, scope: str, resource: str, limit: float, used: float, requested: float) -> None:
        self.scope = scope
        self.resource = resource
        self.limit = limit
        self.used = used
        self.requested = requested
        super().__init__(
            f"budget exhausted: {resource} in scope {scope!r} has limit {limit:g}, "
            f"{used:g} used or reserved, {requested:g} more requested; "
            f"resume the run with a larger budget (quotaflow resume RUN_ID --budget {resource}=+N)"
        )


class BudgetOverrun(BudgetExhausted):
    """A call used more of ``resource`` than it had reserved (a backend that reported more tokens
    than its prompt or ``max_tokens`` allowed). The truth is charged and the run pauses."""

    def __init__(self, scope: str, resource: str, limit: float, reserved: float, used: float) -> None:
        super().__init__(scope, resource, limit, used, 0.0)
        self.reserved = reserved
        self.args = (
            f"budget overrun: the backend reported {used:g} of {resource} in scope {scope!r} for a call that "
            f"reserved {reserved:g} (limit {limit:g}); the run is paused. Check the backend's usage reports, "
            f"then resume (quotaflow resume RUN_ID --budget {resource}=+N)",
        )

    def __str__(self) -> str:
        return str(self.args[0])


class EngineError(QuotaFlowError):
    exit_code = 4


class EngineUnavailable(EngineError):
    """The backend could not be reached or is overloaded; retrying later may succeed."""


class EngineDead(EngineError):
    """The backend rejected the request or answered nonsense; retrying will not help."""


class StorageError(QuotaFlowError):
    """The store cannot be used: missing, replaced, read-only, full or corrupt database, or a
    database server that is down. The run is interrupted; ``quotaflow resume`` continues it once
    the storage is back."""

    exit_code = 4


class ReplayDivergence(QuotaFlowError):
    """On resume, node ``node`` asked for a different input than the original run did at the
    same point: the workflow read something nondeterministic that is not journaled."""

    def __init__(self, node: str, journaled_kind: str, journaled: object, kind: str, request: object) -> None:
        self.node = node
        self.journaled = journaled
        self.request = request
        super().__init__(
            f"resume diverged in node {node!r}: the original run's {journaled_kind} call here was "
            f"{_short(journaled)}, the resumed run asked for {kind} {_short(request)}; the node must read "
            "nondeterministic inputs (time, budgets, randomness) through its run context (ctx.now(), "
            "ctx.tool_budgets()) so a resumed run takes the same path"
        )


def _short(value: object, limit: int = 300) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[:limit] + "..."


class RunBusy(QuotaFlowError):
    """Another process is executing the run (it holds the run's lease)."""

    exit_code = 2

    def __init__(self, run_id: str, holder: str, until: str) -> None:
        self.run_id = run_id
        self.holder = holder
        super().__init__(f"run {run_id!r} is being executed by {holder} (lease until {until}); wait for it, "
                         "or resume after its lease expires if that process died")


class ToolError(QuotaFlowError):
    """A tool could not complete; the message is shown to the agent as the observation."""


class WorkerLost(QuotaFlowError):
    """The worker running a run died on every attempt (Ray sent it again up to its retry limit)."""

    exit_code = 4

    def __init__(self, run_id: str, attempts: int, detail: str = "") -> None:
        self.run_id = run_id
        self.attempts = attempts
        why = f" ({detail})" if detail else ""
        super().__init__(f"run {run_id!r}: its worker died on each of {attempts} attempt(s){why}; it is kept at its "
                         f"last checkpoint: quotaflow resume {run_id}")


class RunNotFound(QuotaFlowError):
    exit_code = 2

    def __init__(self, run_id: str) -> None:
        self.run_id = run_id
        super().__init__(f"no run {run_id!r} in the store; `quotaflow runs list` shows the runs")


class UnknownWorkflow(QuotaFlowError):
    exit_code = 2

    def __init__(self, name: str, known: list[str]) -> None:
        self.name = name
        super().__init__(f"unknown workflow {name!r}; known workflows: {', '.join(sorted(known))}")
