"""Issue 21: `quotaflow run NAME --workflow-module pkg.mod` runs, and `resume --workflow-module` resumes,
a workflow of the user's own package (each command in a process of its own, as a user runs them)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

FLOWS = '''
from typing import Any, TypedDict

from langgraph.graph import END, START, StateGraph

from orchestrator.types import Message
from orchestrator.workflow import Workflow


class State(TypedDict, total=False):
    question: str
    answer: str


def build(ctx: Any) -> StateGraph:
    async def ask(state: State) -> dict[str, Any]:
        return {"answer": (await ctx.chat([Message("user", state["question"])])).text}

    graph = StateGraph(State)
    graph.add_node("ask", ask)
    graph.add_edge(START, "ask")
    graph.add_edge("ask", END)
    return graph


ECHO = Workflow(name="echo_mine", build=build, initial_state=lambda task: {"question": task["question"]},
                result=lambda state: {"answer": state.get("answer")})
'''


def _quotaflow(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": f"{tmp_path / 'src'}{os.pathsep}{ROOT}",
           "QUOTAFLOW_HOME": str(tmp_path / "home")}
    env.pop("QUOTAFLOW_DB_URL", None)
    return subprocess.run([sys.executable, "-m", "cli.main", *args], cwd=tmp_path, env=env, capture_output=True,
                          text=True, timeout=120)


def test_run_and_resume_a_workflow_of_a_users_module(tmp_path: Path) -> None:
    package = tmp_path / "src" / "mypkg"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "flows.py").write_text(FLOWS)
    script = tmp_path / "script.json"
    script.write_text(json.dumps(["hello there"]))

    unknown = _quotaflow(tmp_path, "run", "echo_mine", "--task", "hi")
    assert unknown.returncode == 2 and "No such command 'echo_mine'" in unknown.stderr

    paused = _quotaflow(tmp_path, "run", "echo_mine", "--workflow-module", "mypkg.flows", "--task", "hi",
                        "--backend", "scripted", "--script", str(script), "--budget", "tokens=1", "--json")
    assert paused.returncode == 3, paused.stderr
    report = json.loads(paused.stdout)
    assert report["workflow"] == "echo_mine" and report["status"] == "paused"

    lost = _quotaflow(tmp_path, "resume", report["run_id"], "--budget", "tokens=+100000")
    assert lost.returncode == 2 and "unknown workflow 'echo_mine'" in lost.stderr

    resumed = _quotaflow(tmp_path, "resume", report["run_id"], "--workflow-module", "mypkg.flows",
                         "--budget", "tokens=+100000", "--json")
    assert resumed.returncode == 0, resumed.stderr
    assert json.loads(resumed.stdout)["result"]["answer"] == "hello there"


def test_a_module_that_does_not_import_is_one_line(tmp_path: Path) -> None:
    res = _quotaflow(tmp_path, "run", "react", "--workflow-module", "no_such_pkg.flows", "--task", "q")
    assert res.returncode == 2
    assert res.stderr.strip().splitlines() == [
        "error: --workflow-module no_such_pkg.flows: expected an importable module "
        "(ModuleNotFoundError: No module named 'no_such_pkg')"]
