"""BatchPrompt end to end through the runtime (ledger, store, checkpoints) with the scripted labeler."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

from sqlalchemy import func, select
from typer.testing import CliRunner

from cli.batchprompt import app, build_task_payload, run_batchprompt_job
from orchestrator.runtime import Runtime
from orchestrator.settings import Settings
from orchestrator.store.models import LLMCallRow, RecordRow, StepRow
from orchestrator.testing import ScriptedClient
from workflows.batchprompt.graph import VOTES_NAMESPACE
from workflows.batchprompt.scripted import scripted_labeler
from workflows.batchprompt.tasks import Item, TaskSpec


def _runtime(tmp_path: Path, client: ScriptedClient, name: str = "bp.db") -> Runtime:
    from orchestrator.tools.registry import ToolRegistry

    # BatchPrompt uses no tools; an empty registry keeps the test independent of the built-in ones.
    return Runtime(Settings(db_url=f"sqlite:///{tmp_path / name}", home=tmp_path), tools=ToolRegistry(),
                   clients={"scripted": client})


def _rows(items: list[Item]) -> list[dict[str, str]]:
    return [{"idx": i.key, **i.inputs, "label": i.gold or ""} for i in items]


def test_workflow_runs_rounds_through_ledger_and_store(tmp_path: Path, rte: TaskSpec, rte_items: list[Item]) -> None:
    async def go() -> None:
        client = scripted_labeler(rte, rte_items, unsure_rate=0.3, max_answers=6)
        rt = _runtime(tmp_path, client)
        payload = {"task": "rte", "rows": [*_rows(rte_items), {"idx": "bad"}], "batch_size": 8, "rounds": 3,
                   "seas": True}
        res = await rt.run("batchprompt", payload, backend="scripted", budget="tokens=1000000")
        assert res.status == "succeeded", res.error
        out = res.result or {}
        assert out["accuracy"] == 1.0 and out["num_items"] == 24 and out["unanswered"] == []
        assert out["load_errors"] == ["line 25: missing input field 'premise'"]
        assert out["parse_failures"] > 0 and out["reask_calls"] > 0  # the model drops answers past 6
        async with rt.store.session() as s:
            calls = (await s.execute(select(func.count()).where(LLMCallRow.run_id == res.run_id))).scalar_one()
            tokens = (await s.execute(select(func.sum(LLMCallRow.input_tokens)))).scalar_one()
            steps = (
                (await s.execute(select(StepRow).where(StepRow.run_id == res.run_id).order_by(StepRow.id)))
                .scalars()
                .all()
            )
            votes = (await s.execute(select(RecordRow).where(RecordRow.run_id == res.run_id,
                                                              RecordRow.namespace == VOTES_NAMESPACE))).scalars().all()
        assert calls == out["calls"] == len(client.requests) and tokens == out["input_tokens"]
        rounds = [s.data for s in steps if s.node == "round"]
        assert [r["round"] for r in rounds] == list(range(1, out["rounds_run"] + 1))
        assert len(rounds[0]["votes"]) == 24 and all(
            v[0] in ("entailment", "not_entailment") for v in rounds[0]["votes"].values()
        )
        assert sum(len(r["votes"]) for r in rounds) == sum(r["num_active"] for r in out["per_round"])
        # The run's vote records hold the same votes, one record per round.
        assert sorted(
            (int(v.key.removeprefix("round-")), k, a, c) for v in votes for k, (a, c) in v.data.items()
        ) == sorted((r["round"], k, a, c) for r in rounds for k, (a, c) in r["votes"].items())
        assert all(r.hints is not None and r.hints.program_id == res.run_id for r in client.requests)
        await rt.aclose()

    asyncio.run(go())


def test_token_budget_pauses_the_run(tmp_path: Path, rte: TaskSpec, rte_items: list[Item]) -> None:
    async def go() -> None:
        client = scripted_labeler(rte, rte_items)
        rt = _runtime(tmp_path, client)
        payload = {"task": "rte", "rows": _rows(rte_items), "batch_size": 1}
        res = await rt.run("batchprompt", payload, backend="scripted", budget="tokens=3000")
        assert res.status == "paused" and "tokens" in (res.error or "")
        assert 0 < len(client.requests) < 24
        await rt.aclose()

    asyncio.run(go())


def test_cli_runs_a_user_spec_on_a_user_dataset(tmp_path: Path) -> None:
    spec = {
        "name": "sentiment", "instructions": "Is the review positive?", "id_field": "id",
        "input_fields": [{"key": "text", "title": "Review"}],
        "labels": [{"value": "pos", "display": "yes"}, {"value": "neg", "display": "no"}],
    }
    (tmp_path / "spec.json").write_text(json.dumps(spec))
    rows = [{"id": f"r{i}", "text": f"Review {i}: {'great' if i % 3 else 'awful'}.", "label": "pos" if i % 3 else "neg"}
            for i in range(10)]
    (tmp_path / "data.jsonl").write_text("\n".join(json.dumps(r) for r in rows) + "\n{broken\n")
    payload = build_task_payload(task=str(tmp_path / "spec.json"), dataset=tmp_path / "data.jsonl", batch_size=4,
                                 rounds=3, seas=True)
    assert payload["task"]["name"] == "sentiment"

    async def go() -> None:
        from workflows.batchprompt.tasks import load_dataset, load_task

        task = load_task(tmp_path / "spec.json")
        client = scripted_labeler(task, load_dataset(tmp_path / "data.jsonl", task).items)
        rt = _runtime(tmp_path, client, "cli.db")
        res = await run_batchprompt_job(payload, backend="scripted", runtime=rt)
        assert res.status == "succeeded" and res.result is not None
        assert res.result["accuracy"] == 1.0 and res.result["rounds_run"] == 2  # SEAS: all confident
        assert res.result["load_errors"] == [
            "line 11: not valid JSON (Expecting property name enclosed in double quotes)"
        ]
        await rt.aclose()

    asyncio.run(go())


def test_cli_rejects_bad_options_with_exit_code_2(tmp_path: Path) -> None:
    runner = CliRunner()
    even = runner.invoke(app, ["--task", "rte", "--dataset", str(tmp_path / "x.jsonl"), "--rounds", "2"])
    assert even.exit_code == 2 and "odd" in even.output
    missing = runner.invoke(app, ["--task", "rte"])
    assert missing.exit_code == 2 and "--dataset" in missing.output
    unknown = runner.invoke(app, ["--task", "nosuch", "--dataset", "x.jsonl"])
    assert unknown.exit_code == 2 and "boolq, rte, qqp" in unknown.output


def test_paused_run_resumes_without_paying_twice(tmp_path: Path, rte: TaskSpec, rte_items: list[Item]) -> None:
    async def go() -> None:
        client = scripted_labeler(rte, rte_items, unsure_rate=0.5)
        rt = _runtime(tmp_path, client)
        payload = {"task": "rte", "rows": _rows(rte_items), "batch_size": 8, "rounds": 3, "max_concurrency": 1}
        first = await rt.run("batchprompt", payload, backend="scripted", budget="tokens=2500")
        assert first.status == "paused"
        asked_before = len(client.requests)
        assert 0 < asked_before < 9
        done = await rt.resume(first.run_id, budget="tokens=+1000000")
        assert done.status == "succeeded" and done.result is not None
        assert done.result["accuracy"] == 1.0 and done.result["rounds_run"] == 3
        # Calls completed before the pause are replayed from the journal, not sent again.
        assert len(client.requests) == 9 and done.result["calls"] == 9
        async with rt.store.session() as s:
            stored = (await s.execute(select(func.count()).where(LLMCallRow.run_id == first.run_id))).scalar_one()
        assert stored == 9
        await rt.aclose()

    asyncio.run(go())


def test_payload_carries_seas_rule_and_reask_policy(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from orchestrator.errors import BadInputError
    from workflows.batchprompt.graph import config_from_task

    rows = tmp_path / "d.jsonl"
    rows.write_text('{"premise": "a", "hypothesis": "b", "label": "entailment", "idx": 1}\n')
    payload = build_task_payload(task="rte", dataset=rows, seas=True, rounds=3, seas_rule="agree",
                                 reask_singles="always")
    config = config_from_task({k: v for k, v in payload.items() if k not in ("task", "dataset", "data_dir",
                                                                           "subset", "limit")})
    assert (config.seas_rule, config.reask_singles, config.seas) == ("agree", "always", True)
    for bad in ({"seas_rule": "vibes"}, {"reask_singles": "twice"}):
        try:
            build_task_payload(task="rte", dataset=rows, **bad)  # type: ignore[arg-type]
        except BadInputError:
            continue
        raise AssertionError(f"{bad} accepted")
