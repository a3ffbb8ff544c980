"""Reasoning-token quotas (DRQA at run time): batch-mode probe, difficulty, allocation.

Everything here is pure: prompts are composed and replies parsed as values, quotas are integer
arithmetic. The workflow that makes the calls is ``workflows.drqa``.
"""

from __future__ import annotations

from workflows.answers import (
    answers_match,
    extract_boxed,
    extract_final_answer,
    normalize_answer,
)
from workflows.drqa.quota.allocation import AllocationConfig, RetryCandidate, allocate, reallocate
from workflows.drqa.quota.batch import (
    ProbeItem,
    approx_token_count,
    chunk_indices,
    compose_probe_messages,
    compose_quick_messages,
    parse_probe_response,
    parse_quick_answer,
)
from workflows.drqa.quota.difficulty import Difficulty, DifficultyConfig, estimate_difficulty
from workflows.drqa.quota.enforcement import quota_sampling, reasoning_budget_statement
from workflows.drqa.quota.plan import (
    QUOTA_METHODS,
    ProbePlan,
    QuotaConfig,
    QuotaMethod,
    QuotaPolicy,
    plan_probe,
    policy_for,
    solve_quotas,
)

__all__ = [
    "QUOTA_METHODS",
    "AllocationConfig",
    "Difficulty",
    "DifficultyConfig",
    "ProbeItem",
    "ProbePlan",
    "QuotaConfig",
    "QuotaMethod",
    "QuotaPolicy",
    "RetryCandidate",
    "allocate",
    "answers_match",
    "approx_token_count",
    "chunk_indices",
    "compose_probe_messages",
    "compose_quick_messages",
    "estimate_difficulty",
    "extract_boxed",
    "extract_final_answer",
    "normalize_answer",
    "parse_probe_response",
    "parse_quick_answer",
    "plan_probe",
    "policy_for",
    "quota_sampling",
    "reallocate",
    "reasoning_budget_statement",
    "solve_quotas",
]
