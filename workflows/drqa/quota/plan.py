"""The three quota methods and the budget arithmetic of one DRQA run (pure).

A run has one total budget of output (reasoning) tokens. Every call's ``max_tokens`` comes out
of it, so the total is never exceeded:

    drqa:      probe (batch mode + quick answers, capped at a fraction of the total)
               -> quotas by difficulty over what is left: whole quotas easiest first, in waves
                  that reuse each wave's unspent part (strategy 'easiest_first', default; with
                  ``min_quota_tokens`` a floor is reserved for every question first), or
                  proportional to difficulty (strategy 'proportional')
               -> solve -> unspent budget re-allocated to unresolved / low-confidence questions
    uniform:   no probe; the same allocation with equal weights; no re-allocation
    unlimited: no probe, no stated budget; every question gets ``unlimited_max_tokens``
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal

from orchestrator.options import check_ranges
from workflows.drqa.quota.allocation import AllocationConfig, allocate, allocate_easiest_first
from workflows.drqa.quota.batch import chunk_indices
from workflows.drqa.quota.difficulty import DifficultyConfig

__all__ = [
    "ALLOCATION_STRATEGIES",
    "QUOTA_METHODS",
    "SOLVE_STYLES",
    "AllocationStrategy",
    "ProbePlan",
    "QuotaConfig",
    "QuotaMethod",
    "QuotaPolicy",
    "SolveStyle",
    "answer_reserve",
    "plan_probe",
    "policy_for",
    "solve_quotas",
]

QuotaMethod = Literal["drqa", "uniform", "unlimited"]
AllocationStrategy = Literal["easiest_first", "proportional"]
SolveStyle = Literal["plain", "brief"]
SOLVE_STYLES: tuple[SolveStyle, ...] = ("plain", "brief")
ALLOCATION_STRATEGIES: tuple[AllocationStrategy, ...] = ("easiest_first", "proportional")
QUOTA_METHODS: tuple[QuotaMethod, ...] = ("drqa", "uniform", "unlimited")


@dataclass(frozen=True)
class QuotaPolicy:
    """Which stages a method runs."""

    method: QuotaMethod
    """The method's name."""
    probe: bool
    """Run the batch-mode probe and quick answers."""
    weighting: Literal["difficulty", "equal", "none"]
    """How the solve budget is split ('none': a fixed cap per question, no stated budget)."""
    reallocate: bool
    """Spend what the solve round left on unresolved and low-confidence questions."""


_POLICIES: dict[str, QuotaPolicy] = {
    "drqa": QuotaPolicy("drqa", probe=True, weighting="difficulty", reallocate=True),
    "uniform": QuotaPolicy("uniform", probe=False, weighting="equal", reallocate=False),
    "unlimited": QuotaPolicy("unlimited", probe=False, weighting="none", reallocate=False),
}


def policy_for(method: str) -> QuotaPolicy:
    """The policy of ``method`` (one of :data:`QUOTA_METHODS`)."""
    try:
        return _POLICIES[method]
    except KeyError:
        raise ValueError(f"unknown quota method {method!r}; expected one of {QUOTA_METHODS}") from None


@dataclass(frozen=True)
class QuotaConfig:
    """Knobs of a DRQA run."""

    batch_size: int = 4
    """Questions per probe prompt (k)."""
    probe_tokens_per_question: int = 80
    """Probe ``max_tokens`` per question in the prompt (a probe prompt gets k times this)."""
    quick_max_tokens: int = 16
    """``max_tokens`` of each quick single answer."""
    num_quick_samples: int = 1
    """Quick answers per question: the first at the run's temperature, the others sampled at
    ``quick_sample_temperature`` (seeds 1, 2, ...), for the ``agreement`` difficulty signal. The
    probe plan budgets all of them."""
    quick_sample_temperature: float = 0.7
    """Temperature of the quick samples after the first."""
    max_probe_fraction: float = 0.3
    """The probe and quick answers may use at most this share of the total budget."""
    min_probe_tokens_per_question: int = 24
    """Below this per-question probe allowance the probe is skipped (weights become equal)."""
    answer_reserve_tokens: int = 24
    """Part of each quota kept for the final answer (not stated as reasoning budget). With
    ``force_answer`` the solve call's ``max_tokens`` is the quota minus this reserve, and the
    reserve pays for the forced answer when the working is cut off."""
    state_budget: bool = True
    """Say each solve's budget in its prompt (so the model can plan for it) when it binds, i.e.
    is below the allocation ceiling; off, the quota is only the ``max_tokens`` cap (plus the
    forced answer)."""
    solve_style: SolveStyle = "plain"
    """How a budgeted solve is prompted: 'plain' (the question, the stated budget, the answer
    format) or 'brief' (also asks for one short sentence per step and shows two short worked
    examples). The unlimited baseline is always 'plain'."""
    force_answer: bool = True
    """A solve cut off at its quota (or ending with no readable answer) gets one more short call
    that continues from its working and asks for the final answer now; its tokens come out of
    the same quota, so the total is still never exceeded."""
    unlimited_max_tokens: int = 1024
    """Cap on each question in the 'unlimited' baseline (the model's natural length below it),
    forced answer included."""
    accept_resolved: bool = True
    """drqa: accept a probe answer that agrees with the quick answer confidently, with no solve."""
    low_confidence_threshold: float = 0.6
    """An answered question below this stated confidence is re-allocation's second tier."""
    strategy: AllocationStrategy = "easiest_first"
    """drqa's solve-round split: whole quotas (the allocation ceiling) easiest first, in waves
    (see :func:`~workflows.drqa.quota.allocation.allocate_easiest_first`), or 'proportional' to
    difficulty, clamped to the floor and ceiling (one wave)."""
    min_quota_tokens: int = 0
    """'easiest_first' only: tokens reserved for every question the solve round may fund (not
    resolved by the probe) before whole quotas are handed out easiest first, so that each gets at
    least this quota (at most the ceiling) instead of none
    (:func:`~workflows.drqa.quota.allocation.allocate_easiest_first`). When the budget left after
    the probe cannot cover it for every such question, it is dropped and the allocation is the
    one of 0. 0 (default): no floor, the hardest-rated questions may get no quota and no answer.
    Not the default because on the data measured so far it does not pay: replayed over the
    Qwen2.5-Coder-0.5B GSM8K run 3be667f (bench/drqa/floor_replay.py: unlimited's per-question
    lengths and answers, the size signal's order, bench/NOTEBOOK.md section 16), a floor of 64 or
    128 tokens loses 6 or 23 of 49 right answers at 50% of unlimited's tokens and 0 or 1 of 54 at
    75%: only 2 of unlimited's 60 right answers are shorter than 137 tokens, so a floor the
    budget can pay for mostly buys a cut working, and its tokens would have funded whole quotas
    for easier questions."""
    allocation: AllocationConfig = field(default_factory=AllocationConfig)
    """Bounds of the solve-round quotas."""
    reallocation: AllocationConfig = field(
        default_factory=lambda: AllocationConfig(floor_tokens=32, ceiling_tokens=512)
    )
    """Bounds of the extra quotas given by re-allocation."""
    difficulty: DifficultyConfig = field(default_factory=DifficultyConfig)
    """How probe signals become difficulty."""

    def __post_init__(self) -> None:
        if self.solve_style not in SOLVE_STYLES:
            raise ValueError(f"unknown solve style {self.solve_style!r}; expected one of {SOLVE_STYLES}")
        if self.strategy not in ALLOCATION_STRATEGIES:
            raise ValueError(f"unknown allocation strategy {self.strategy!r}; expected one of {ALLOCATION_STRATEGIES}")
        check_ranges(self, min_quota_tokens=(0, None), num_quick_samples=(1, None), batch_size=(1, None),
                     probe_tokens_per_question=(1, None), quick_max_tokens=(0, None),
                     quick_sample_temperature=(0.0, 2.0), max_probe_fraction=(0.0, 1.0),
                     min_probe_tokens_per_question=(0, None), answer_reserve_tokens=(0, None),
                     unlimited_max_tokens=(1, None), low_confidence_threshold=(0.0, 1.0))


@dataclass(frozen=True)
class ProbePlan:
    """What the probe stage may spend."""

    enabled: bool
    """False when the budget is too small for a useful probe."""
    batches: tuple[tuple[int, ...], ...]
    """Question indices per probe prompt."""
    probe_max_tokens: tuple[int, ...]
    """``max_tokens`` of each probe prompt."""
    quick_max_tokens: int
    """``max_tokens`` of each quick answer (0: no quick answers)."""
    num_quick_samples: int = 1
    """Quick answers per question."""

    @property
    def max_spend(self) -> int:
        """The most the probe stage can spend, whatever the model does."""
        num_questions = sum(len(b) for b in self.batches)
        return sum(self.probe_max_tokens) + num_questions * self.quick_max_tokens * self.num_quick_samples


def plan_probe(num_questions: int, total_budget: int, config: QuotaConfig) -> ProbePlan:
    """Size the probe so that it cannot spend more than ``max_probe_fraction`` of the total.

    The quick answers keep their size if the probe can still get its minimum per question;
    otherwise they are dropped first, then the probe itself.
    """
    disabled = ProbePlan(False, (), (), 0)
    if num_questions == 0:
        return disabled
    cap = int(total_budget * config.max_probe_fraction)
    batches = tuple(tuple(b) for b in chunk_indices(num_questions, config.batch_size))
    quick = config.quick_max_tokens
    samples = config.num_quick_samples
    per_q = min(config.probe_tokens_per_question, (cap - num_questions * quick * samples) // num_questions)
    if per_q < config.min_probe_tokens_per_question:
        quick = 0
        per_q = min(config.probe_tokens_per_question, cap // num_questions)
    if per_q < config.min_probe_tokens_per_question:
        return disabled
    return ProbePlan(True, batches, tuple(per_q * len(b) for b in batches), quick, samples if quick else 1)


def solve_quotas(
    policy: QuotaPolicy,
    difficulties: Sequence[float],
    resolved: Sequence[bool],
    budget_left: int,
    config: QuotaConfig,
    funded: Sequence[bool] | None = None,
) -> list[int]:
    """Solve-round quotas; their sum never exceeds ``budget_left`` (except for 'unlimited').

    Resolved questions (drqa with ``accept_resolved``) get 0 and keep their probe answer. With
    ``funded`` (the questions earlier waves already solved), those get 0 too: this is the next
    wave of the 'easiest_first' strategy (whose ``min_quota_tokens`` floor every eligible
    question gets by the last wave).
    """
    n = len(difficulties)
    if policy.weighting == "none":
        return [config.unlimited_max_tokens] * n
    if policy.weighting == "equal":
        return allocate([1.0] * n, max(budget_left, 0), config.allocation)
    done = list(funded) if funded is not None else [False] * n
    eligible = [not (config.accept_resolved and r) and not f for r, f in zip(resolved, done, strict=True)]
    if config.strategy == "easiest_first":
        return allocate_easiest_first(difficulties, eligible, max(budget_left, 0), config.allocation,
                                      min_quota=config.min_quota_tokens)
    weights = [max(d, 1e-6) if ok else 0.0 for d, ok in zip(difficulties, eligible, strict=True)]
    return allocate(weights, max(budget_left, 0), config.allocation)


def answer_reserve(quota: int, config: QuotaConfig) -> int:
    """Tokens of ``quota`` held back for a forced answer (0 when forcing is off).

    At most half the quota, so a small quota still buys some working; the solve call gets
    ``quota - answer_reserve(quota)`` and the forced answer whatever of the quota that left.
    """
    if not config.force_answer or quota <= 1:
        return 0
    return min(config.answer_reserve_tokens, quota // 2)
