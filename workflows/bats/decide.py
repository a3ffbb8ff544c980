"""The agent loop of BATS and its baselines as pure decisions.

:func:`decide` takes an attempt's :class:`~workflows.bats.steps.AttemptSetup`, its
:class:`~workflows.bats.steps.LoopState` and the latest observation, and returns the next state
and the next action: ask the LLM, run the tool calls of a reply, or finish with the answer. It
does no I/O; :func:`workflows.bats.agent.run_attempt` performs the actions through the run
context and feeds back what it saw. The tool budgets the agent reasons with are observations
(read at the start and once after each turn's tool calls) kept in the state: a decision never
reads the budget live.

The rules, turn by turn:

- before a turn: the turn cap reached, or any tool budget at 0 (``stop_when_any_exhausted``),
  ends the loop with a final turn asking for the answer;
- a reply with tool actions (at most ``max_actions_per_turn``) runs them; an action already run
  in this attempt is not run again (small models loop on one query), and ``max_stale_turns``
  turns in a row of only repeats end the loop (``stale``); a reply that repeats done actions and
  answers is an answer;
- a reply without an action line gets a format reminder (``max_format_errors`` in a row), then
  its prose is taken as the answer;
- an action that copies the worked example (``workflows.actions.copies_example``: it names the
  Eiffel Tower example where neither the question, a tool result nor the notes on earlier
  attempts do) is not run and is no answer: the agent is told so, like a reply without an
  action; a final answer that copies it is asked for once more, then dropped;
- an answer ends the loop, unless budget forcing (``mode.forcing``) tells the agent to keep
  using the budget left, until it has gone ``max_idle_turns`` turns without a tool;
- the answer is read from the attempt's tool results (``answer_from="evidence"``, one reading
  call; the agent's answer stands when the reading gives none), cleaned, and a long one gets one
  extraction call.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import replace

from orchestrator.context import ToolBudgetView
from orchestrator.types import Message, SamplingOptions
from workflows.actions import ANSWER, Action, copies_example, fallback_answer, parse_actions, split_example_copies
from workflows.bats import prompts
from workflows.bats.config import AgentConfig
from workflows.bats.extraction import (
    extract_over,
    extraction_messages,
    pick_extraction,
    pick_reading,
    reading_messages,
    scored_answer,
    short_answer_sampling,
)
from workflows.bats.steps import (
    AttemptResult,
    AttemptSetup,
    CallLLM,
    CallTools,
    Finish,
    LoopAction,
    LoopState,
    Observation,
    Replied,
    Started,
    ToolCall,
    ToolsRan,
)
from workflows.bats.tracker import any_exhausted, echo_stops, policy_prompt, tracker_block
from workflows.bats.trajectory import (
    action_log,
    assistant_entry,
    demo_messages,
    render_messages,
    tool_entry,
    tool_outputs,
    truncate,
    user_entry,
)

__all__ = ["decide", "render", "system_prompt", "turn_cap"]

Decision = tuple[LoopState, LoopAction]


def decide(setup: AttemptSetup, state: LoopState, observation: Observation) -> Decision:
    """The state after ``observation`` and the action to perform next."""
    if isinstance(observation, Replied) and observation.cut:
        state = replace(state, num_cut_replies=state.num_cut_replies + 1)
    if isinstance(observation, Started) and state.phase == "start":
        return _next_turn(setup, replace(state, first_views=observation.views, views=observation.views))
    if isinstance(observation, ToolsRan) and state.phase == "tools":
        return _after_tools(setup, state, observation)
    if isinstance(observation, Replied) and state.phase == "turn":
        return _after_turn(setup, state, observation.text)
    if isinstance(observation, Replied) and state.phase == "final":
        return _after_final_turn(setup, state, observation.text)
    if isinstance(observation, Replied) and state.phase == "read":
        answer = pick_reading(state.answer, observation.text, setup.question)
        return _clean(setup, replace(state, answer=answer, num_reads=int(not observation.skipped)))
    if isinstance(observation, Replied) and state.phase == "extract":
        answer = pick_extraction(state.answer, observation.text, setup.question)
        return _finish(replace(state, answer=answer, num_extractions=int(not observation.skipped)))
    raise ValueError(f"{type(observation).__name__} does not answer the loop's phase {state.phase!r}")


def turn_cap(views: Sequence[ToolBudgetView], config: AgentConfig) -> int:
    """Turns of one attempt: ``config.max_turns`` when set, else the units left over all limited
    tools plus 2 (one turn to answer, one spare), at most ``config.max_turns_cap``."""
    if config.max_turns > 0:
        return config.max_turns
    limited = [v.remaining or 0.0 for v in views if v.limit is not None]
    if not limited:
        return max(config.max_turns_cap, 1)
    return max(1, min(math.ceil(sum(limited)) + 2, config.max_turns_cap))


def system_prompt(setup: AttemptSetup, first_views: Sequence[ToolBudgetView]) -> str:
    """The agent's instructions, the budget policy (tracker mode) and ``extra_system``."""
    system = prompts.AGENT_SYSTEM
    if setup.mode.tracker:
        system += "\n\n" + policy_prompt(first_views, setup.config.tracker_config)
    if setup.extra_system:
        system += "\n\n" + setup.extra_system
    return system


def render(setup: AttemptSetup, state: LoopState) -> tuple[Message, ...]:
    """The chat of the next turn: system prompt, demo exchange, the task, the trajectory."""
    notes = f"\n\n{setup.head_notes}" if setup.head_notes else ""
    # The format reminder goes last: small models follow the most recent instruction best.
    head = f"Question: {setup.question}{notes}\n\n{prompts.NEXT_ACTION}"
    system = system_prompt(setup, state.first_views)
    rendered = render_messages(system, head, state.entries, keep_tool_outputs=setup.config.keep_tool_outputs)
    demo = demo_messages() if setup.config.demo else []
    return (rendered[0], *demo, *rendered[1:])


def _sampling(setup: AttemptSetup, *, after_repeat: bool = False) -> SamplingOptions:
    temperature = setup.config.temperature
    if after_repeat and setup.config.repeat_temperature is not None:
        temperature = setup.config.repeat_temperature
    return SamplingOptions(max_tokens=setup.config.max_tokens, temperature=temperature, seed=setup.seed,
                           stop=echo_stops(setup.tools) if setup.mode.tracker else ())


def _key(action: Action) -> tuple[str, str]:
    return action.kind, " ".join(action.value.lower().split())


def _left_text(views: Sequence[ToolBudgetView]) -> str:
    return ", ".join(f"{v.tool}: {v.remaining:g} left" for v in views if v.remaining is not None) or "no limit"


def _observed(setup: AttemptSetup, state: LoopState) -> str:
    """What tools have shown the agent: earlier attempts' results (BATS) and this attempt's so far."""
    return "\n".join([setup.observed_before, *tool_outputs(state.entries)])


def _line(action: Action) -> str:
    return f"{action.kind}: {action.value}"


def _next_turn(setup: AttemptSetup, state: LoopState) -> Decision:
    if state.num_turns >= turn_cap(state.first_views, setup.config):
        # Forcing ends on the turn cap with an answer in hand; that answer stands.
        if state.answer and setup.mode.forcing and state.entries and state.entries[-1]["role"] == "user":
            return _shorten(setup, replace(state, stop="answered"))
        return _final_turn(setup, state)
    if setup.config.stop_when_any_exhausted and any_exhausted(state.views):
        return _final_turn(setup, replace(state, stop="exhausted"))
    state = replace(state, phase="turn")
    # Hint for the serving layer: the tool this turn will most likely wait on is the last one used.
    return state, CallLLM(render(setup, state), _sampling(setup, after_repeat=state.num_stale_turns > 0),
                          setup.purpose, tool_name=state.last_tool)


def _final_turn(setup: AttemptSetup, state: LoopState, note: str = "") -> Decision:
    note = note or (prompts.FINAL_TURN if state.stop == "exhausted" else prompts.MAX_TURNS_REACHED)
    state = replace(state, phase="final", entries=(*state.entries, user_entry(note)))
    return state, CallLLM(render(setup, state), _sampling(setup), setup.purpose, is_last_step=True)


def _after_turn(setup: AttemptSetup, state: LoopState, text: str) -> Decision:
    state = replace(state, num_turns=state.num_turns + 1)
    actions, copied = split_example_copies(parse_actions(text, setup.tools), setup.question, _observed(setup, state))
    state = replace(state, num_example_copies=state.num_example_copies + len(copied))
    tool_actions = [a for a in actions if a.kind != ANSWER][: setup.config.max_actions_per_turn]
    answers = [a for a in actions if a.kind == ANSWER]
    if answers and tool_actions and all(_key(a) in state.done for a in tool_actions):
        # Small models re-emit the whole pattern (same search, same browse, then the answer):
        # nothing new would run, so the answer line is what the reply says.
        tool_actions = []
    if tool_actions:
        return _run_tools(setup, state, text, tool_actions)
    state = replace(state, num_idle_turns=state.num_idle_turns + 1)
    if answers:
        return _take_answer(setup, state, text, answers[-1].value)
    if copied:
        return _format_error(setup, state, text, prompts.EXAMPLE_COPIED.format(line=_line(copied[0])))
    return _format_error(setup, state, text)


def _run_tools(setup: AttemptSetup, state: LoopState, text: str, actions: list[Action]) -> Decision:
    done, pending = set(state.done), []
    for action in actions:
        pending.append((action, _key(action) in done))
        done.add(_key(action))
    calls = tuple(
        ToolCall(a.kind, {setup.arg_names.get(a.kind, "input"): a.value}) for a, repeat in pending if not repeat
    )
    entry = assistant_entry(text, [(a.kind, a.value) for a in actions])
    state = replace(state, phase="tools", entries=(*state.entries, entry), done=frozenset(done),
                    pending=tuple(pending), last_tool=actions[-1].kind)
    return state, CallTools(calls)


def _after_tools(setup: AttemptSetup, state: LoopState, observation: ToolsRan) -> Decision:
    config = setup.config
    outputs = iter(observation.outputs)
    parts, results, num_refused, num_repeated = [], [], 0, 0
    for action, repeat in state.pending:
        if repeat:
            num_repeated += 1
            parts.append(f"[{action.kind}: {action.value}]\n{prompts.REPEATED}")
            continue
        output = next(outputs)
        num_refused += output.refused
        parts.append(f"[{action.kind}: {action.value}]\n{truncate(output.content, config.max_observation_chars)}")
        if not output.refused:
            results.append(parts[-1])
    content = "\n\n".join(parts)
    if setup.mode.tracker:
        content += "\n" + tracker_block(observation.views, config.tracker_config)
    actions = [a for a, _ in state.pending]
    stale = num_repeated == len(actions)
    if stale:
        # Nothing new ran: a plain note, so the last real tool output stays in full view.
        entry = user_entry(content)
    else:
        names = {a.kind for a in actions}
        # The stub must not read like an action line, or small models copy it as their next action.
        stub = "(earlier output of " + ", ".join(f'{a.kind} "{a.value}"' for a in actions) + " removed)"
        entry = tool_entry(names.pop() if len(names) == 1 else "tools", content, stub)
    state = replace(
        state, views=observation.views, entries=(*state.entries, entry), pending=(), results=(*state.results, *results),
        num_refused=state.num_refused + num_refused, num_repeated=state.num_repeated + num_repeated,
        num_format_errors_in_a_row=0, num_idle_turns=0, num_stale_turns=state.num_stale_turns + 1 if stale else 0,
    )
    if state.num_stale_turns >= config.max_stale_turns:
        return _final_turn(setup, replace(state, stop="stale"))
    return _next_turn(setup, state)


def _format_error(setup: AttemptSetup, state: LoopState, text: str, note: str = prompts.FORMAT_NUDGE) -> Decision:
    state = replace(state, num_format_errors=state.num_format_errors + 1,
                    num_format_errors_in_a_row=state.num_format_errors_in_a_row + 1)
    fallback = _fallback(setup, state, text)
    if state.num_format_errors_in_a_row <= setup.config.max_format_errors or not fallback:
        nudge = (assistant_entry(text), user_entry(note))
        return _next_turn(setup, replace(state, entries=(*state.entries, *nudge)))
    return _take_answer(setup, state, text, fallback)


def _take_answer(setup: AttemptSetup, state: LoopState, text: str, answer: str) -> Decision:
    state = replace(state, answer=answer, num_format_errors_in_a_row=0,
                    entries=(*state.entries, assistant_entry(text, [(ANSWER, answer)])))
    views = state.views
    budget_left = not any_exhausted(views) and any(v.remaining is None or v.remaining > 0 for v in views)
    if setup.mode.forcing and budget_left and state.num_idle_turns < setup.config.max_idle_turns:
        forcing = user_entry(prompts.FORCING.format(left=_left_text(views)))
        return _next_turn(setup, replace(state, entries=(*state.entries, forcing), num_forcing=state.num_forcing + 1))
    return _shorten(setup, replace(state, stop="answered"))


def _fallback(setup: AttemptSetup, state: LoopState, text: str) -> str:
    """The reply's prose as an answer (a format error's), unless it copies the worked example."""
    fallback = fallback_answer(text)
    return "" if copies_example(fallback, setup.question, _observed(setup, state)) else fallback


def _after_final_turn(setup: AttemptSetup, state: LoopState, text: str) -> Decision:
    observed = _observed(setup, state)
    parsed, copied = split_example_copies(parse_actions(text, setup.tools), setup.question, observed)
    prose = "" if parsed or copied else fallback_answer(text)
    if copies_example(prose, setup.question, observed):
        copied, prose = [Action(ANSWER, prose)], ""
    state = replace(state, num_example_copies=state.num_example_copies + len(copied))
    final = [a.value for a in parsed if a.kind == ANSWER]
    if final:
        last = final[-1]
    elif parsed:
        # Asked to answer, the agent still calls a tool: what it wanted to look up (a page
        # title, keywords) is its best guess, not the raw "browse: wiki://..." line.
        last = parsed[-1].value.removeprefix("wiki://")
    else:
        last = prose
    if copied and not last and not state.answer and not state.asked_again:
        # The example's answer instead of one: ask once more, naming what was copied.
        again = replace(state, asked_again=True, entries=(*state.entries, assistant_entry(text)))
        return _final_turn(setup, again, prompts.EXAMPLE_COPIED_FINAL.format(line=_line(copied[-1])))
    # An explicit final answer wins; else an earlier answer (forcing), else the best guess.
    answer = last if final else (state.answer or last)
    entry = assistant_entry(text, [(ANSWER, answer)] if answer else [])
    return _shorten(setup, replace(state, num_turns=state.num_turns + 1, answer=answer,
                                   entries=(*state.entries, entry)))


def _shorten(setup: AttemptSetup, state: LoopState) -> Decision:
    """The attempt has its answer: read it from the tool results (``answer_from="evidence"``), then
    clean it and extract a long one."""
    state = replace(state, agent_answer=state.answer)
    if setup.config.answer_from == "evidence" and state.results:
        request = CallLLM(reading_messages(setup.question, state.results, setup.config.read_max_chars),
                          short_answer_sampling(setup.config.read_max_tokens), f"{setup.purpose}_read",
                          optional=True)
        return replace(state, phase="read"), request
    return _clean(setup, state)


def _clean(setup: AttemptSetup, state: LoopState) -> Decision:
    cleaned, long = scored_answer(setup.question, state.answer, yes_no_form=setup.config.yes_no_form,
                                  max_words=extract_over(setup.config))
    state = replace(state, raw_answer=state.answer, answer=cleaned)
    if not long:
        return _finish(state)
    request = CallLLM(extraction_messages(setup.question, cleaned),
                      short_answer_sampling(setup.config.extract_max_tokens), f"{setup.purpose}_extract",
                      optional=True)
    return replace(state, phase="extract"), request


def _finish(state: LoopState) -> Decision:
    result = AttemptResult(
        answer=state.answer,
        raw_answer=state.raw_answer,
        agent_answer=state.agent_answer,
        num_reads=state.num_reads,
        num_extractions=state.num_extractions,
        entries=list(state.entries),
        stop=state.stop,
        num_turns=state.num_turns,
        num_format_errors=state.num_format_errors,
        num_forcing=state.num_forcing,
        num_refused=state.num_refused,
        num_repeated=state.num_repeated,
        num_cut_replies=state.num_cut_replies,
        num_example_copies=state.num_example_copies,
    )
    record = {"answer": result["answer"], "raw_answer": result["raw_answer"],
              "agent_answer": result["agent_answer"], "stop": result["stop"],
              "num_turns": result["num_turns"], "actions": action_log(result["entries"])}
    return replace(state, phase="done"), Finish(result, record)
