from __future__ import annotations

import json
from pathlib import Path

import pytest

from orchestrator.errors import BadInputError
from workflows.batchprompt.tasks import (
    BUILTIN_TASKS,
    load_builtin_items,
    load_dataset,
    load_task,
    task_from_dict,
)

SPEC = {
    "name": "sentiment",
    "instructions": "Is the review positive?",
    "id_field": "id",
    "input_fields": [{"key": "text", "title": "Review"}],
    "labels": [
        {"value": "pos", "display": "yes", "aliases": ["positive"]},
        {"value": "neg", "display": "no", "aliases": ["negative"]},
    ],
    "examples": [{"inputs": {"text": "Great."}, "label": "pos", "confident": True}],
}


def test_builtins_load_with_label_sets() -> None:
    for name in BUILTIN_TASKS:
        task = load_task(name)
        assert task.name == name and len(task.labels) == 2 and task.examples
    assert load_task("rte").alias_table()["not entailment"] == "not_entailment"
    assert load_task("boolq").match_gold(True) == "true"
    assert load_task("qqp").match_gold("not duplicate") == "not duplicate"


def test_builtin_subsets_match_the_paper(shared_data: Path) -> None:
    boolq = load_builtin_items("boolq", shared_data)
    assert len(boolq.items) == 320 and not boolq.errors
    assert boolq.items[0].key == "2182"  # subset order, not file order
    assert {i.gold for i in boolq.items} == {"true", "false"}
    assert len(load_builtin_items("rte", shared_data).items) == 269
    assert len(load_builtin_items("rte", shared_data, subset=False).items) == 277
    qqp = load_builtin_items("qqp", shared_data)
    assert len(qqp.items) == 100 and qqp.items[0].key == "test_0"


def test_spec_from_toml_and_json_files(tmp_path: Path) -> None:
    (tmp_path / "s.json").write_text(json.dumps(SPEC))
    (tmp_path / "s.toml").write_text(
        'name = "sentiment"\ninstructions = "Is the review positive?"\nid_field = "id"\n'
        'input_fields = [{ key = "text", title = "Review" }]\n'
        'labels = [{ value = "pos", display = "yes", aliases = ["positive"] }, '
        '{ value = "neg", display = "no", aliases = ["negative"] }]\n'
        '[[examples]]\nlabel = "pos"\ninputs = { text = "Great." }\n'
    )
    a, b = load_task(tmp_path / "s.json"), load_task(str(tmp_path / "s.toml"))
    assert a == b
    assert a.alias_table() == {
        "yes": "pos",
        "pos": "pos",
        "positive": "pos",
        "no": "neg",
        "neg": "neg",
        "negative": "neg",
    }


def test_bad_specs_say_what_is_wrong(tmp_path: Path) -> None:
    with pytest.raises(BadInputError, match="at least two labels"):
        task_from_dict({**SPEC, "labels": ["pos"]})
    with pytest.raises(BadInputError, match="names both"):
        task_from_dict(
            {**SPEC, "labels": [{"value": "pos", "aliases": ["good"]}, {"value": "neg", "aliases": ["good"]}]}
        )
    with pytest.raises(BadInputError, match="instructions"):
        task_from_dict({k: v for k, v in SPEC.items() if k != "instructions"})
    with pytest.raises(BadInputError, match="task spec file"):
        load_task(tmp_path / "nope.toml")


def test_dataset_loader_reports_and_skips_malformed_lines(tmp_path: Path) -> None:
    task = task_from_dict(SPEC)
    lines = [
        '{"id": "a", "text": "Loved it", "label": "positive"}',
        "{not json",
        "",
        '["a list"]',
        '{"id": "b", "label": "pos"}',
        '{"id": "c", "text": "Meh", "label": "maybe"}',
        '{"id": "a", "text": "again", "label": "pos"}',
        '{"id": "d", "text": "No gold here"}',
    ]
    path = tmp_path / "d.jsonl"
    path.write_text("\n".join(lines) + "\n")
    loaded = load_dataset(path, task)
    assert [(i.key, i.gold) for i in loaded.items] == [("a", "pos"), ("d", None)]
    assert [e.line for e in loaded.errors] == [2, 4, 5, 6, 7]
    messages = [str(e) for e in loaded.errors]
    assert "line 2: not valid JSON" in messages[0]
    assert "JSON object" in messages[1]
    assert "missing input field 'text'" in messages[2]
    assert "'maybe' is not one of pos, neg" in messages[3]
    assert "duplicate id 'a'" in messages[4]
    with pytest.raises(BadInputError, match="existing jsonl"):
        load_dataset(tmp_path / "missing.jsonl", task)
