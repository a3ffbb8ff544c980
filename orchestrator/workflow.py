"""How a workflow plugs into the runtime, and the registry the runtime looks workflows up in.

A workflow is a LangGraph ``StateGraph`` built against a :class:`~orchestrator.context.RunContext`.
The runtime compiles it with the checkpointer of the configured database, so runs resume.

Workflows come from two places:
- the ``quotaflow.workflows`` entry-point group (the built-ins are declared there in QuotaFlow's
  own ``pyproject.toml``; a user's package declares its own the same way, and ``quotaflow run``
  and ``quotaflow resume`` find them without any import on the user's side);
- :func:`register`, for workflows defined in the running program (the SDK).

Entry points are loaded on first lookup of their name, so ``quotaflow --help`` stays fast and
the core never imports a method's package.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from functools import cached_property
from importlib.metadata import EntryPoint, entry_points
from typing import TYPE_CHECKING, Any, Literal

from orchestrator.errors import BadInputError, ConfigError, UnknownWorkflow
from orchestrator.options import (
    OptionField,
    check_option_names,
    config_from_options,
    declared_options,
    parse_option_texts,
)

if TYPE_CHECKING:
    from langgraph.graph import StateGraph

    from orchestrator.context import RunContext

__all__ = ["ENTRY_POINT_GROUP", "Workflow", "get", "names", "register"]

ENTRY_POINT_GROUP = "quotaflow.workflows"


@dataclass(frozen=True)
class Workflow:
    """A registered workflow.

    name: what `quotaflow run NAME` takes.
    build: returns the (uncompiled) graph, its nodes closing over the run's context.
    initial_state: turns one task (a dataset row, or {"question": ...}) into the graph's input.
    result: extracts {"answer": ..., ...} from the final state for the store and the CLI.
    mode: "per_item" runs one program per dataset row; "dataset" hands all rows to one run
        (e.g. BatchPrompt, which packs many rows into each call).
    default_tools: tools enabled when the user names none.
    options: default values of options, shown by ``quotaflow workflows show`` for options declared
        in ``extra_options`` (those of ``option_types`` show their field's default).
    option_types: the config dataclasses whose init fields are the workflow's options (each read
        from the run's options with ``orchestrator.options.config_from_options``). A name that
        two classes share takes the first one's type and default.
    extra_options: the options it reads otherwise, name -> type (aliases, flattened names, a
        nested mapping); they win over a field of the same name.
    check_task: what keeps the workflow from running a task row with the run's options (a
        sentence, None when nothing does). ``Runtime.run`` refuses such a task (``check_options``)
        before the run is stored; the CLI skips such dataset lines with the sentence. None: the
        agents' rule (a non-empty string ``question``) in the CLI, no check in ``Runtime.run``.

    A workflow that declares options (either of the two) gets only those, and the runtime's own
    (``recursion_limit``): ``Runtime.run`` refuses another key, with the closest name. One that
    declares none accepts any key (each value as given; ``--set`` text read as JSON, else as
    the string), as before options were declared.
    """

    name: str
    build: Callable[[RunContext], StateGraph]
    initial_state: Callable[[dict[str, Any]], dict[str, Any]]
    result: Callable[[dict[str, Any]], dict[str, Any]]
    mode: Literal["per_item", "dataset"] = "per_item"
    default_tools: tuple[str, ...] = ()
    description: str = ""
    options: dict[str, Any] = field(default_factory=dict)
    option_types: tuple[type, ...] = ()
    extra_options: Mapping[str, Any] = field(default_factory=dict)
    check_task: Callable[[dict[str, Any], dict[str, Any]], str | None] | None = None

    @cached_property
    def option_fields(self) -> dict[str, OptionField] | None:
        """Every option the workflow accepts, by name; None when it declares none (any key)."""
        if not self.option_types and not self.extra_options:
            return None
        return declared_options(self.option_types, self.extra_options)

    def check_options(self, options: Mapping[str, Any], *, task: dict[str, Any] | None = None) -> Mapping[str, Any]:
        """``options``, after refusing (BadInputError) a key the workflow does not declare, a value
        its config dataclass refuses (its type, or the dataclass's own check of its range), and
        ``task`` when given if :attr:`check_task` finds it unreadable with them."""
        if (known := self.option_fields) is not None and not known.keys() >= options.keys():
            check_option_names(options, known, what=f"{self.name} option")
        for config_type in self.option_types:
            config_from_options(config_type, options, what=f"{self.name} option")
        if task is not None and self.check_task is not None and (problem := self.check_task(task, dict(options))):
            raise BadInputError(f"{self.name} task", "a row the workflow can read", problem)
        return options

    def parse_options(self, texts: Mapping[str, str]) -> dict[str, Any]:
        """Typed option values from ``name -> text`` (``quotaflow run NAME --set name=text``);
        an unknown name or a value its option's type refuses is a BadInputError."""
        return parse_option_texts(texts, self.option_fields, what=f"{self.name} option")


_REGISTRY: dict[str, Workflow] = {}


def checked(workflow: str | Workflow, options: Mapping[str, Any]) -> Workflow:
    """The workflow (by name or itself), after :meth:`Workflow.check_options` passed ``options``."""
    wf = get(workflow) if isinstance(workflow, str) else workflow
    wf.check_options(options)
    return wf


def register(workflow: Workflow) -> Workflow:
    """Make ``workflow`` available to the runtime and the CLI under its name."""
    _REGISTRY[workflow.name] = workflow
    return workflow


def _entry_points() -> dict[str, EntryPoint]:
    return {ep.name: ep for ep in entry_points(group=ENTRY_POINT_GROUP)}


def get(name: str) -> Workflow:
    """The workflow registered as ``name``, loading its entry point on first use."""
    if name not in _REGISTRY:
        ep = _entry_points().get(name)
        if ep is not None:
            loaded = ep.load()
            if not isinstance(loaded, Workflow):
                raise ConfigError(
                    f"entry point {name!r} ({ep.value}) in group {ENTRY_POINT_GROUP!r} is a "
                    f"{type(loaded).__name__}, not an orchestrator.Workflow"
                )
            _REGISTRY.setdefault(name, loaded)
    try:
        return _REGISTRY[name]
    except KeyError:
        raise UnknownWorkflow(name, names()) from None


async def drive(workflow: Workflow, graph: Any, task: dict[str, Any], config: Any, *,
                fresh: bool = False) -> dict[str, Any]:
    """Run a compiled graph of ``workflow`` to its end from wherever its thread stopped: from
    the task's initial state when the thread has no checkpoint yet (an initial state of ``{}``
    included), from the last checkpoint when it has tasks (their saved writes included), or not
    at all when it had finished (the process died before the run row was updated). ``fresh``: the run was created
    just now (its thread cannot have a checkpoint), so its thread is not read first."""
    thread = config["configurable"]["thread_id"]
    try:
        return await _drive(workflow, graph, task, config, fresh=fresh)
    except Exception:
        # The writes of the tasks that ended before the error (a failed task's error among
        # them) are kept by the saver until the next checkpoint, which will not come: written
        # now, best effort (lost, those tasks run again on resume, at no charge).
        if (flush := getattr(graph.checkpointer, "aflush", None)) is not None:
            with contextlib.suppress(Exception):
                await flush(thread)
        raise
    finally:  # cancelled, or the flush failed: the saver keeps nothing of a graph that stopped
        if (forget := getattr(graph.checkpointer, "forget", None)) is not None:
            forget(thread)


async def _drive(workflow: Workflow, graph: Any, task: dict[str, Any], config: Any, *, fresh: bool) -> dict[str, Any]:
    if fresh:
        return dict(await graph.ainvoke(workflow.initial_state(task), config, durability="sync"))
    snapshot = await graph.aget_state(config)
    # Checkpoints are written before the next step starts ("sync"): with LangGraph's default
    # ("async") a process killed mid-step could leave a checkpoint without the writes that say
    # which node runs next, and the run would look finished.
    if snapshot.created_at is None:
        return dict(await graph.ainvoke(workflow.initial_state(task), config, durability="sync"))
    # Not ``snapshot.next``: it leaves out the tasks whose writes were saved. A process killed
    # after every task of a step saved its writes, before the step's checkpoint, leaves no
    # "next" node, yet the run has not ended: LangGraph applies those writes and goes on (the
    # tasks do not run again). A thread has ended when its last checkpoint has no task at all.
    if snapshot.tasks:
        return dict(await graph.ainvoke(None, config, durability="sync"))
    return dict(snapshot.values)


def names() -> list[str]:
    """Every workflow name that :func:`get` can resolve."""
    return sorted(set(_REGISTRY) | set(_entry_points()))
