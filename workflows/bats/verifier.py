"""BATS's verifier: one LLM call that returns strict JSON, parsed robustly.

The reply must be one JSON object ``{"verdicts": [...], "decision": "SUCCESS"|"CONTINUE"|"PIVOT",
"justification": str, "summary": str}``. Surrounding prose and code fences are ignored; anything
else that is not that object is invalid: the verifier gets one repair request, and if the repair
is invalid too, a safe default is used (decision CONTINUE, every constraint unverifiable: it
claims nothing). The caller counts invalid replies, repairs and defaults.
"""

from __future__ import annotations

import dataclasses
import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from orchestrator.errors import EngineDead
from orchestrator.types import Message, SamplingOptions
from workflows.bats import prompts

if TYPE_CHECKING:
    from orchestrator.context import RunContext

__all__ = [
    "CONTINUE",
    "DECISIONS",
    "PIVOT",
    "SUCCESS",
    "VERDICTS",
    "VERIFIER_SCHEMA",
    "Verification",
    "VerifierFormatError",
    "default_verification",
    "parse_verification",
    "verify",
]

SUCCESS, CONTINUE, PIVOT = "SUCCESS", "CONTINUE", "PIVOT"
DECISIONS = (SUCCESS, CONTINUE, PIVOT)
VERDICTS = ("satisfied", "contradicted", "unverifiable")
VERIFIER_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "verdicts": {"type": "array", "items": {"type": "string", "enum": list(VERDICTS)}},
        "decision": {"type": "string", "enum": list(DECISIONS)},
        "justification": {"type": "string"},
        "summary": {"type": "string"},
    },
    "required": ["verdicts", "decision", "justification", "summary"],
    "additionalProperties": False,
}
"""The reply's JSON schema, sent as structured-output constraint to servers that take one (vLLM)."""
_FENCE = re.compile(r"```(?:json)?", re.IGNORECASE)


class VerifierFormatError(ValueError):
    """The verifier's reply is not the expected JSON object (the message says what is wrong)."""


@dataclass(frozen=True)
class Verification:
    """A parsed verifier reply (or the safe default)."""

    decision: str
    verdicts: tuple[str, ...]
    justification: str = ""
    summary: str = ""
    source: str = "valid"
    """``valid`` (first reply parsed), ``truncated`` (first reply cut off by the token limit and
    closed), ``repaired`` (the repair reply parsed) or ``default``."""
    errors: tuple[str, ...] = field(default_factory=tuple)
    """Why the replies that failed to parse were rejected."""

    def to_dict(self) -> dict[str, Any]:
        return {
            "decision": self.decision,
            "verdicts": list(self.verdicts),
            "justification": self.justification,
            "summary": self.summary,
            "source": self.source,
            "errors": list(self.errors),
        }


def _extract_object(text: str) -> Any:
    body = _FENCE.sub("", text)
    start, end = body.find("{"), body.rfind("}")
    if start < 0 or end <= start:
        raise VerifierFormatError("no JSON object found")
    try:
        return json.loads(body[start : end + 1])
    except json.JSONDecodeError as exc:
        raise VerifierFormatError(f"invalid JSON: {exc.msg} at character {exc.pos}") from None


_CLOSERS = ('"}', "}", '""}', '": ""}', '"]}', "]}", "null}")


def complete_truncated(text: str) -> Any:
    """The JSON object of a reply cut off by the token limit (``{"verdicts": [...], "decision":
    "PIVOT", "justification": "the evid``), closed where it stopped; raises VerifierFormatError
    when no closing makes it parse. The schema puts ``decision`` before the free-text fields, so
    a reply cut in its justification or summary still carries its decision."""
    body = _FENCE.sub("", text)
    start = body.find("{")
    if start < 0:
        raise VerifierFormatError("no JSON object found")
    body = body[start:].rstrip().rstrip(",").rstrip("\\")
    for closer in _CLOSERS:
        try:
            return json.loads(body + closer)
        except json.JSONDecodeError:
            continue
    raise VerifierFormatError("invalid JSON that no closing repairs")


def _verdict(raw: Any) -> str:
    if isinstance(raw, Mapping):
        raw = raw.get("verdict", raw.get("status", ""))
    word = str(raw).strip().lower()
    for v in VERDICTS:
        if word.startswith(v[:6]):
            return v
    return "unverifiable"


def parse_verification(text: str, num_constraints: int, *, truncated: bool = False) -> Verification:
    """The verification in ``text``; raises VerifierFormatError when it is not the expected object.

    Verdicts may be strings or objects with a ``verdict`` key; there is one per constraint
    (missing ones are unverifiable, extra ones dropped). A SUCCESS that contradicts one of its own
    verdicts becomes PIVOT.
    """
    try:
        obj = _extract_object(text)
    except VerifierFormatError:
        if not truncated:
            raise
        obj = complete_truncated(text)
    if not isinstance(obj, Mapping):
        raise VerifierFormatError(f"expected a JSON object, got {type(obj).__name__}")
    decision = str(obj.get("decision", "")).strip().upper()
    if decision not in DECISIONS:
        raise VerifierFormatError(f"decision must be one of {', '.join(DECISIONS)}, got {obj.get('decision')!r}")
    raw_verdicts = obj.get("verdicts", obj.get("verification", []))
    if isinstance(raw_verdicts, Mapping):
        raw_verdicts = list(raw_verdicts.values())
    if not isinstance(raw_verdicts, list):
        raise VerifierFormatError("verdicts must be a list")
    verdicts = [_verdict(v) for v in raw_verdicts[:num_constraints]]
    verdicts += ["unverifiable"] * (num_constraints - len(verdicts))
    if decision == SUCCESS and "contradicted" in verdicts:
        decision = PIVOT
    return Verification(
        decision=decision,
        verdicts=tuple(verdicts),
        justification=str(obj.get("justification", "")).strip(),
        summary=str(obj.get("summary", obj.get("trajectory_summary", ""))).strip(),
    )


def default_verification(num_constraints: int, errors: Sequence[str] = ()) -> Verification:
    """What is assumed when the verifier cannot be read: nothing verified, keep going."""
    return Verification(
        decision=CONTINUE,
        verdicts=("unverifiable",) * num_constraints,
        justification="the verifier's reply could not be read",
        source="default",
        errors=tuple(errors),
    )


async def verify(
    ctx: RunContext,
    *,
    question: str,
    constraints: Sequence[str],
    evidence: str,
    answer: str,
    budget: str,
    max_tokens: int = 256,
    json_schema: bool = True,
) -> Verification:
    """Ask the verifier about ``answer``; one repair request on a malformed reply, then default.

    With ``json_schema`` the request carries :data:`VERIFIER_SCHEMA` (an OpenAI-compatible
    server then decodes only valid JSON; other backends ignore it and the parser and repair do
    the work). A server that rejects the constraint is asked again without it.
    """
    listed = "\n".join(f"{i}. {c}" for i, c in enumerate(constraints, start=1)) or "1. the answer fits the question"
    n = max(len(constraints), 1)
    messages = [
        Message("system", prompts.VERIFIER_SYSTEM),
        Message("user", prompts.VERIFIER_USER.format(
            question=question, constraints=listed, evidence=evidence, answer=answer, budget=budget
        )),
    ]
    sampling = SamplingOptions(max_tokens=max_tokens, temperature=0.0,
                               json_schema=VERIFIER_SCHEMA if json_schema else None)
    try:
        reply = await ctx.chat(messages, sampling=sampling, purpose="verifier")
    except EngineDead:
        if sampling.json_schema is None:
            raise
        # The server refused the structured-output request (4xx): plain JSON prompting instead.
        sampling = SamplingOptions(max_tokens=max_tokens, temperature=0.0)
        reply = await ctx.chat(messages, sampling=sampling, purpose="verifier")
    try:
        return parse_verification(reply.text, n)
    except VerifierFormatError as exc:
        first_error = str(exc)
    if reply.finish_reason == "length":
        # Cut off by the token limit, usually in the free text after the decision: close it.
        try:
            cut = parse_verification(reply.text, n, truncated=True)
        except VerifierFormatError:
            pass
        else:
            return dataclasses.replace(cut, source="truncated")
    messages += [
        Message("assistant", reply.text),
        Message("user", prompts.REPAIR_USER.format(error=first_error)),
    ]
    reply = await ctx.chat(messages, sampling=sampling, purpose="verifier")
    try:
        repaired = parse_verification(reply.text, n)
    except VerifierFormatError as exc:
        return default_verification(n, (first_error, str(exc)))
    return Verification(
        decision=repaired.decision,
        verdicts=repaired.verdicts,
        justification=repaired.justification,
        summary=repaired.summary,
        source="repaired",
        errors=(first_error,),
    )
