"""`quotaflow run WORKFLOW --set key=value`: options typed by what the workflow declares, typos
refused with the closest name (CLI and SDK), and every built-in's declaration matching its reads."""

from __future__ import annotations

import asyncio
import dataclasses
import inspect
import json
import re
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from cli.main import app
from orchestrator import workflow as workflows
from orchestrator.errors import BadInputError
from orchestrator.options import RUNTIME_OPTIONS
from orchestrator.runtime import Runtime
from orchestrator.settings import Settings

runner = CliRunner()
QUESTION = "Is Paris the capital of France?"
BUILT_INS = sorted(ep.name for ep in entry_points(group=workflows.ENTRY_POINT_GROUP))


def _run_react(env: dict[str, Path], *args: str) -> Any:
    script = env["home"] / "yes.json"
    script.write_text(json.dumps(["answer: Yes, it is the capital."]))
    return runner.invoke(app, ["run", "react", "--task", QUESTION, "--backend", "scripted", "--script",
                               str(script), "--json", *args])


def _stored_options(run_id: str) -> dict[str, Any]:
    async def go() -> dict[str, Any]:
        async with Runtime(Settings.from_env()) as rt:
            return dict((await rt.get_run(run_id)).options or {})

    return asyncio.run(go())


def _one_line_error(res: Any, message: str) -> None:
    assert res.exit_code == 2, res.output
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0], res.stderr


def _no_runs() -> None:
    assert runner.invoke(app, ["runs", "list", "--json"]).output.strip() == "[]"


def test_set_changes_what_the_workflow_does_and_is_stored(env: dict[str, Path]) -> None:
    plain = _run_react(env)
    assert plain.exit_code == 0, plain.output
    assert json.loads(plain.stdout)["result"]["answer"] == "Yes, it is the capital"
    res = _run_react(env, "--set", "yes_no_form=true", "--max-turns", "5", "--set", "max-turns=3")
    assert res.exit_code == 0, res.output
    report = json.loads(res.stdout)
    assert report["result"]["answer"] == "yes"  # the bare word: yes_no_form took effect
    options = _stored_options(report["run_id"])
    assert options["yes_no_form"] is True and options["max_turns"] == 3  # typed; --set wins over --max-turns


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--set", "yes_no_fom=true"],
         "react option 'yes_no_fom': expected a known option, did you mean 'yes_no_form'?"),
        (["--set", "zzz=1"], "react option 'zzz': expected a known option (options: answer_from, max_tokens, "
                             "max_turns, read_max_chars, recursion_limit, yes_no_form)"),
        (["--set", "yes_no_form=maybe"], "react option yes_no_form: expected true or false (got 'maybe')"),
        (["--set", "max_turns=two"], "react option max_turns: expected an integer (got 'two')"),
        (["--set", "max_turns=0"], "react option: expected valid values for ReactOptions (max_turns must be >= 1"),
        (["--set", "max_tokens=-5"], "(max_tokens must be >= 1, got -5)"),
        (["--set", "yes_no_form"], "--set yes_no_form: expected key=value"),
        (["--set", "=3"], "--set =3: expected key=value"),
    ],
)
def test_bad_set_items_fail_before_the_run(env: dict[str, Path], args: list[str], message: str) -> None:
    _one_line_error(_run_react(env, *args), message)
    _no_runs()


def test_typos_in_the_method_commands_name_the_close_option(home_only: Path) -> None:
    res = runner.invoke(app, ["run", "bats", "--task", "q", "--set", "verifer=false"])
    _one_line_error(res, "bats option 'verifer': expected a known option, did you mean 'verifier'?")
    res = runner.invoke(app, ["run", "drqa", "--dataset", "x.jsonl", "--budget-tokens", "9", "--set",
                              "max_probe_fractoin=0"])
    _one_line_error(res, "did you mean 'max_probe_fraction'?")
    rows = home_only / "rows.jsonl"
    rows.write_text('{"passage": "p", "question": "q", "answer": true}\n')
    res = runner.invoke(app, ["run", "batchprompt", "--dataset", str(rows), "--set", "rounds=three"])
    _one_line_error(res, "batchprompt option rounds: expected an integer (got 'three')")
    res = runner.invoke(app, ["run", "batchprompt", "--dataset", str(rows), "--set", "label_scoring=maybe"])
    _one_line_error(res, "label_scoring must be one of")
    _no_runs()


def test_values_out_of_range_fail_before_the_run_also_for_a_dataset(env: dict[str, Path]) -> None:
    script = env["home"] / "s.json"
    script.write_text(json.dumps(["answer: x"]))
    rows = env["home"] / "q.jsonl"
    rows.write_text('{"question": "a?"}\n{"question": "b?"}\n')
    base = ["--backend", "scripted", "--script", str(script)]
    res = runner.invoke(app, ["run", "bats", "--dataset", str(rows), *base, "--set", "temperature=5"])
    _one_line_error(res, "(temperature must be in [0.0, 2.0], got 5.0)")  # one error, not one per item
    res = runner.invoke(app, ["run", "bats", "--task", "q?", *base, "--set", "max_attempts=0"])
    _one_line_error(res, "(max_attempts must be >= 1, got 0)")
    res = runner.invoke(app, ["run", "drqa", "--dataset", str(rows), "--budget-tokens", "9", "--set", "batch_size=0"])
    _one_line_error(res, "(batch_size must be >= 1, got 0)")
    _no_runs()


def test_workflows_show_lists_types_and_defaults(home_only: Path) -> None:
    res = runner.invoke(app, ["workflows", "show", "bats"])
    assert res.exit_code == 0, res.output
    assert re.search(r"^\s+verifier\s+bool\s+true$", res.output, re.MULTILINE), res.output
    assert re.search(r"^\s+agent_plan\s+Literal\['all', 'explore', 'none'\]\s+\"none\"$", res.output, re.MULTILINE)
    shown = json.loads(runner.invoke(app, ["workflows", "show", "react", "--json"]).output)
    assert {o["name"]: o["default"] for o in shown["options"]} == {
        "max_tokens": 48, "max_turns": 6, "recursion_limit": None, "yes_no_form": False, "answer_from": "evidence",
        "read_max_chars": 6000}
    listed = runner.invoke(app, ["workflows", "list"]).output
    assert all(re.search(rf"^{name}\s", listed, re.MULTILINE) for name in BUILT_INS), listed


def test_the_sdk_refuses_an_unknown_option_of_a_declaring_workflow(tmp_path: Path) -> None:
    async def go() -> None:
        async with Runtime(Settings(db_url=f"sqlite:///{tmp_path / 'q.db'}", home=tmp_path)) as rt:
            with pytest.raises(BadInputError, match="did you mean 'verifier'"):
                await rt.run("bats", {"question": "q"}, backend="scripted", tools=[],
                             backend_options={"responses": ["answer: x"]}, options={"verifer": False})

    asyncio.run(go())


def test_a_workflow_that_declares_nothing_takes_any_key() -> None:
    mine = workflows.Workflow(name="undeclared", build=lambda ctx: None,  # type: ignore[arg-type,return-value]
                              initial_state=dict, result=dict)
    assert mine.option_fields is None
    assert mine.check_options({"anything": 1}) == {"anything": 1}
    assert mine.parse_options({"n": "3", "flag": "false", "name": "abc", "q": '"x"'}) == {
        "n": 3, "flag": False, "name": "abc", "q": "x"}


def test_values_are_read_as_json_then_as_text_by_the_option_type() -> None:
    pdf = workflows.get("priordynaflow")
    assert pdf.parse_options({"dataset": "123", "mode": "eval", "temperature": "0.5", "family": "null",
                              "router": '{"num_explore_steps": 0}'}) == {
        "dataset": "123", "mode": "eval", "temperature": 0.5, "family": None, "router": {"num_explore_steps": 0}}
    with pytest.raises(BadInputError, match="router"):
        pdf.parse_options({"router": '{"num_explore_step": 0}'})


def _declared_classes_and_extras(wf: workflows.Workflow) -> tuple[set[str], set[str]]:
    fields = {f.name for cls in wf.option_types for f in dataclasses.fields(cls) if f.init}
    return fields, set(wf.extra_options)


@pytest.mark.parametrize("name", BUILT_INS)
def test_every_built_in_declares_exactly_the_options_it_reads(name: str) -> None:
    wf = workflows.get(name)
    known = wf.option_fields
    assert known is not None, f"{name} declares no options"
    fields, extras = _declared_classes_and_extras(wf)
    assert set(known) == fields | extras | set(RUNTIME_OPTIONS)
    source = inspect.getsource(inspect.getmodule(wf.build))  # type: ignore[arg-type]
    # Each declared class is one the workflow reads, and each class it reads is declared.
    read = set(re.findall(r"config_from_(?:options|task)\(([A-Z]\w+)", source))
    if name == "batchprompt":
        read.add("BatchPromptConfig")  # config_from_task builds it (BatchPromptConfig.from_dict)
        assert "BatchPromptConfig.from_dict" in inspect.getsource(inspect.getmodule(wf.initial_state))  # type: ignore[arg-type]
    if name == "priordynaflow":
        assert "WorkflowOptions.from_config(ctx.config" in source
        read.add("WorkflowOptions")
    assert {cls.__name__ for cls in wf.option_types} == read
    if name == "drqa":
        from workflows.drqa.config import option_names

        assert extras == option_names()  # the flat names run_config_from reads
        return
    modules = [source, *(inspect.getsource(inspect.getmodule(cls)) for cls in wf.option_types)]  # type: ignore[arg-type]
    for key in extras:  # an option read outside a declared class appears where the workflow reads it
        assert any(f'"{key}"' in text for text in modules), (name, key)


@pytest.fixture
def home_only(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("QUOTAFLOW_HOME", str(tmp_path))
    monkeypatch.delenv("QUOTAFLOW_DB_URL", raising=False)
    return tmp_path
