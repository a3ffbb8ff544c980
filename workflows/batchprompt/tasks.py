"""Classification tasks as data: what the items look like, which labels exist, how to ask.

A :class:`TaskSpec` is loaded from JSON or TOML (the built-ins BoolQ, RTE and QQP ship as TOML files
next to this module), so a user runs BatchPrompt on their own jsonl by writing one small file::

    name = "sentiment"
    instructions = "Decide whether the review is positive."
    label_field = "label"
    id_field = "id"
    input_fields = [{ key = "text", title = "Review" }]
    labels = [
      { value = "pos", display = "yes", aliases = ["positive"] },
      { value = "neg", display = "no", aliases = ["negative"] },
    ]
    examples = [{ inputs = { text = "Loved it." }, label = "pos", confident = true }]

Datasets are jsonl files, one JSON object per line; :func:`load_dataset` reports malformed lines
(with their line numbers) and skips them instead of failing the whole run.
"""

from __future__ import annotations

import json
import re
import tomllib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from orchestrator.errors import BadInputError

__all__ = [
    "BUILTIN_TASKS",
    "BuiltinData",
    "Example",
    "InputField",
    "Item",
    "LabelSpec",
    "LineError",
    "LoadedDataset",
    "TaskSpec",
    "builtin_data",
    "items_from_rows",
    "load_builtin_items",
    "load_dataset",
    "load_task",
    "task_from_dict",
]

_SPEC_DIR = Path(__file__).parent / "specs"
BUILTIN_TASKS: tuple[str, ...] = ("boolq", "rte", "qqp")
"""Names :func:`load_task` resolves without a file."""

_NON_WORD = re.compile(r"[^a-z0-9]+")


def normalize_text(text: str) -> str:
    """Lower case, every run of non-alphanumerics to one space (``not_entailment`` ->
    ``not entailment``); the form labels and aliases are compared in."""
    return _NON_WORD.sub(" ", text.lower()).strip()


@dataclass(frozen=True)
class InputField:
    """One field of an item shown to the model."""

    key: str
    """Key in the jsonl row."""
    title: str
    """How the field is introduced in the prompt (``Passage``, ``Question``...)."""


@dataclass(frozen=True)
class LabelSpec:
    """One class of the task."""

    value: str
    """The label as the dataset writes it (``true``, ``not_entailment``...); also the final label."""
    display: str
    """The word the model is asked to answer with (``yes``/``no`` suit small models best)."""
    aliases: tuple[str, ...] = ()
    """Other answers that mean this label (``true``, ``not entailed``...), case-insensitive."""

    def names(self) -> tuple[str, ...]:
        """Every normalized spelling that means this label."""
        seen: dict[str, None] = {}
        for name in (self.display, self.value, *self.aliases):
            norm = normalize_text(name)
            if norm:
                seen.setdefault(norm, None)
        return tuple(seen)


@dataclass(frozen=True)
class Example:
    """A few-shot demonstration, annotated with the confidence the model should imitate."""

    inputs: dict[str, str]
    """Field values, keyed like :attr:`InputField.key`."""
    label: str
    """A :attr:`LabelSpec.value`."""
    confident: bool = True
    """Whether the demonstration answer is marked confident."""


@dataclass(frozen=True)
class TaskSpec:
    """A classification task BatchPrompt can run."""

    name: str
    """Short name, used in results and file names."""
    instructions: str
    """What to decide for each item, in plain words (the output format is added by the composer)."""
    input_fields: tuple[InputField, ...]
    """The fields of an item, in the order they are shown."""
    labels: tuple[LabelSpec, ...]
    """The classes; at least two."""
    examples: tuple[Example, ...] = ()
    """Few-shot demonstrations, shown as one batch in the same format as the real batches."""
    label_field: str = "label"
    """Row key holding the gold label (rows without it are unlabelled: no accuracy for them)."""
    id_field: str | None = None
    """Row key holding a stable item id; ``None``: the line number is the id."""
    default_label: str | None = None
    """Final label for an item that never got a usable answer (default: the first label)."""

    def __post_init__(self) -> None:
        if len(self.labels) < 2:
            raise BadInputError(f"task {self.name!r} labels", "at least two labels")
        if not self.input_fields:
            raise BadInputError(f"task {self.name!r} input_fields", "at least one input field")
        owners: dict[str, str] = {}
        for label in self.labels:
            for name in label.names():
                if owners.setdefault(name, label.value) != label.value:
                    raise BadInputError(
                        f"task {self.name!r} labels",
                        "aliases that name one label only",
                        f"{name!r} names both {owners[name]!r} and {label.value!r}",
                    )
        values = {label.value for label in self.labels}
        for example in self.examples:
            if example.label not in values:
                raise BadInputError(f"task {self.name!r} example", f"a label in {sorted(values)}", repr(example.label))
        if self.default_label is not None and self.default_label not in values:
            raise BadInputError(f"task {self.name!r} default_label", f"one of {sorted(values)}")

    @property
    def fallback_label(self) -> str:
        """The label given to items without any usable answer."""
        return self.default_label or self.labels[0].value

    def alias_table(self) -> dict[str, str]:
        """Normalized spelling -> label value."""
        return {name: label.value for label in self.labels for name in label.names()}

    def display_of(self, value: str) -> str:
        """The answer word for a label value."""
        for label in self.labels:
            if label.value == value:
                return label.display
        raise KeyError(value)

    def match_gold(self, raw: Any) -> str | None:
        """The label value a dataset's gold field means, or ``None`` when it names no label."""
        if isinstance(raw, bool):
            raw = "true" if raw else "false"
        return self.alias_table().get(normalize_text(str(raw)))


@dataclass(frozen=True)
class Item:
    """One dataset row ready for prompting."""

    key: str
    """Stable id (the row's id field, else its line number)."""
    inputs: dict[str, str]
    """The input field values."""
    gold: str | None = None
    """Gold label value, when the row has one."""

    def to_dict(self) -> dict[str, Any]:
        return {"key": self.key, "inputs": dict(self.inputs), "gold": self.gold}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Item:
        return cls(key=str(data["key"]), inputs=dict(data["inputs"]), gold=data.get("gold"))


@dataclass(frozen=True)
class LineError:
    """A dataset line that was skipped."""

    line: int
    """1-based line number in the file."""
    message: str
    """What was wrong with it."""

    def __str__(self) -> str:
        return f"line {self.line}: {self.message}"


@dataclass
class LoadedDataset:
    """The usable items of a dataset file and the lines that were skipped."""

    items: list[Item] = field(default_factory=list)
    """Items in file order."""
    errors: list[LineError] = field(default_factory=list)
    """Skipped lines, in file order."""


def task_from_dict(data: dict[str, Any]) -> TaskSpec:
    """Build a :class:`TaskSpec` from its JSON/TOML form (see the module docstring)."""
    where = f"task spec {data.get('name', '?')!r}"
    try:
        fields = tuple(
            InputField(key=str(f["key"]), title=str(f.get("title", f["key"]))) if isinstance(f, dict)
            else InputField(key=str(f), title=str(f).replace("_", " ").capitalize())
            for f in data["input_fields"]
        )
        labels = tuple(
            LabelSpec(value=str(lab["value"]), display=str(lab.get("display", lab["value"])),
                      aliases=tuple(str(a) for a in lab.get("aliases", ())))
            if isinstance(lab, dict) else LabelSpec(value=str(lab), display=str(lab))
            for lab in data["labels"]
        )
        examples = tuple(
            Example(inputs={k: str(v) for k, v in ex["inputs"].items()}, label=str(ex["label"]),
                    confident=bool(ex.get("confident", True)))
            for ex in data.get("examples", ())
        )
        return TaskSpec(
            name=str(data["name"]),
            instructions=str(data["instructions"]).strip(),
            input_fields=fields,
            labels=labels,
            examples=examples,
            label_field=str(data.get("label_field", "label")),
            id_field=data.get("id_field"),
            default_label=data.get("default_label"),
        )
    except KeyError as exc:
        raise BadInputError(where, f"a key {exc.args[0]!r}") from None
    except (TypeError, AttributeError) as exc:
        raise BadInputError(where, "name, instructions, input_fields, labels[, examples]", str(exc)) from None


def load_task(spec: str | Path | dict[str, Any] | TaskSpec) -> TaskSpec:
    """A task from a built-in name (``boolq``, ``rte``, ``qqp``), a ``.json``/``.toml`` file or a dict."""
    if isinstance(spec, TaskSpec):
        return spec
    if isinstance(spec, dict):
        return task_from_dict(spec)
    builtin = isinstance(spec, str) and spec.lower() in BUILTIN_TASKS
    path = _SPEC_DIR / f"{str(spec).lower()}.toml" if builtin else Path(spec)
    if not path.is_file():
        raise BadInputError(
            f"--task {spec}", f"one of {', '.join(BUILTIN_TASKS)} or a task spec file (.json or .toml)"
        )
    text = path.read_text(encoding="utf-8")
    try:
        data = json.loads(text) if path.suffix.lower() == ".json" else tomllib.loads(text)
    except (json.JSONDecodeError, tomllib.TOMLDecodeError) as exc:
        raise BadInputError(f"task spec {path}", "valid JSON or TOML", str(exc)) from None
    return task_from_dict(data)


def _item_from_row(task: TaskSpec, row: Any, line: int) -> Item:
    """One row as an item; raises ValueError with the reason when the row is unusable."""
    if not isinstance(row, dict):
        raise ValueError(f"expected a JSON object, got {type(row).__name__}")  # bad data, not a bad call
    inputs: dict[str, str] = {}
    for f in task.input_fields:
        value = row.get(f.key)
        if value is None or (isinstance(value, str) and not value.strip()):
            raise ValueError(f"missing input field {f.key!r}")
        inputs[f.key] = value if isinstance(value, str) else json.dumps(value)
    gold: str | None = None
    if row.get(task.label_field) is not None:
        gold = task.match_gold(row[task.label_field])
        if gold is None:
            known = ", ".join(label.value for label in task.labels)
            raise ValueError(f"label {row[task.label_field]!r} is not one of {known}")
    key = str(row[task.id_field]) if task.id_field and task.id_field in row else str(line)
    return Item(key=key, inputs=inputs, gold=gold)


def _collect(task: TaskSpec, numbered_rows: Iterable[tuple[int, Any]], out: LoadedDataset, limit: int | None) -> None:
    seen = {item.key for item in out.items}
    for line_no, row in numbered_rows:
        if isinstance(row, LineError):
            out.errors.append(row)
            continue
        try:
            item = _item_from_row(task, row, line_no)
        except ValueError as exc:
            out.errors.append(LineError(line_no, str(exc)))
            continue
        if item.key in seen:
            out.errors.append(LineError(line_no, f"duplicate id {item.key!r}"))
            continue
        seen.add(item.key)
        out.items.append(item)
        if limit is not None and len(out.items) >= limit:
            return


def items_from_rows(task: TaskSpec, rows: Iterable[Any], *, limit: int | None = None) -> LoadedDataset:
    """Rows already parsed (dicts) as items; bad rows are reported by their 1-based position."""
    out = LoadedDataset()
    _collect(task, enumerate(rows, start=1), out, limit)
    return out


def _jsonl_rows(fh: Iterable[str]) -> Iterator[tuple[int, Any]]:
    for line_no, line in enumerate(fh, start=1):
        if not line.strip():
            continue
        try:
            yield line_no, json.loads(line)
        except json.JSONDecodeError as exc:
            yield line_no, LineError(line_no, f"not valid JSON ({exc.msg})")


def load_dataset(path: str | Path, task: TaskSpec, *, limit: int | None = None) -> LoadedDataset:
    """Read a jsonl dataset for ``task``; malformed lines are skipped and reported.

    A line is skipped when it is not a JSON object, lacks an input field, carries a gold label
    outside the task's label set, or repeats an earlier item's id. Blank lines are ignored.
    """
    file = Path(path)
    if not file.is_file():
        raise BadInputError(f"--dataset {path}", "an existing jsonl file")
    out = LoadedDataset()
    with file.open(encoding="utf-8") as fh:
        _collect(task, _jsonl_rows(fh), out, limit)
    return out


@dataclass(frozen=True)
class BuiltinData:
    """Where a built-in task's evaluation data lives, relative to the shared data directory."""

    file: str
    """The jsonl file."""
    subset: str | None = None
    """A JSON list of ids (the paper's evaluation subset); ``None``: every row."""


_BUILTIN_DATA = {
    "boolq": BuiltinData("boolq/val.jsonl", "batchprompt_reference/boolq/indices320.json"),
    "rte": BuiltinData("rte/val.jsonl", "batchprompt_reference/rte/aiarch-gpt-4-32k_indices320.json"),
    # The paper's QQP indices point into dev rows we do not have; the 100-row dev sample stands in.
    "qqp": BuiltinData("qqp/sample100.jsonl", None),
}


def builtin_data(name: str) -> BuiltinData:
    """The data location of a built-in task."""
    try:
        return _BUILTIN_DATA[name.lower()]
    except KeyError:
        raise BadInputError(f"task {name!r}", f"one of {', '.join(BUILTIN_TASKS)}") from None


def load_builtin_items(
    name: str, data_dir: str | Path, *, subset: bool = True, limit: int | None = None
) -> LoadedDataset:
    """Items of a built-in task from ``data_dir`` (the shared data folder), in subset order.

    ``subset``: keep only the paper's evaluation subset (BoolQ 320, RTE 269 of 277).
    """
    task = load_task(name)
    ref = builtin_data(name)
    loaded = load_dataset(Path(data_dir) / ref.file, task)
    if subset and ref.subset is not None:
        wanted = [str(i) for i in json.loads((Path(data_dir) / ref.subset).read_text())]
        by_key = {item.key: item for item in loaded.items}
        missing = [k for k in wanted if k not in by_key]
        if missing:
            raise BadInputError(f"{ref.file}", f"rows for every subset id ({len(missing)} missing)")
        loaded.items = [by_key[k] for k in wanted]
    if limit is not None:
        loaded.items = loaded.items[:limit]
    return loaded
