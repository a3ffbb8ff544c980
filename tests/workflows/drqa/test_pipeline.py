"""The training pipeline end to end on CPU (simulated chains, tiny model), the CLI and the
benchmark's dry run."""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from tests import extras

pytest.importorskip("torch", reason=extras.LOCAL)
pytest.importorskip("transformers", reason=extras.LOCAL)

from cli.drqa import app, run_drqa
from workflows.drqa.sim import make_rows, sim_client

ROOT = Path(__file__).resolve().parents[3]


def _sim_dataset(tmp_path: Path) -> Path:
    folder = tmp_path / "gsm8k"
    folder.mkdir()
    (folder / "validate.jsonl").write_text(
        "".join(json.dumps(r) + "\n" for r in make_rows([1, 2, 3, 1, 9, 2, 1, 12, 1, 4]))
    )
    return folder


def test_data_train_eval_with_provenance(tmp_path: Path) -> None:
    from workflows.drqa.training.generate import GenerationConfig
    from workflows.drqa.training.manifest import file_sha256, read_manifest
    from workflows.drqa.training.pipeline import DataJob, build_training_data, load_chains
    from workflows.drqa.training.tiny import save_tiny_model

    src = _sim_dataset(tmp_path)
    job = DataJob((str(src),), str(tmp_path / "data"), eval_fraction=0.3,
                  generation=GenerationConfig(num_single=2, num_batch=1, max_tokens=600))
    data_dir = asyncio.run(build_training_data(sim_client(), job))
    chains = load_chains(data_dir)
    modes = {c.mode for c in chains}
    assert modes == {"single", "batch"} and all(c.label for c in chains)
    manifest = read_manifest(data_dir / "manifest.json")
    assert manifest["sources"][0]["sha256"] == file_sha256(src / "validate.jsonl")
    assert manifest["model"] == "sim" and manifest["kind"] == "drqa-chains"
    split = json.loads((data_dir / "split.json").read_text())["gsm8k"]
    assert not set(split["eval_ids"]) & {c.item_id for c in chains}  # no chains for held-out items

    base = save_tiny_model(tmp_path / "base")
    out = tmp_path / "ckpt"
    runner = CliRunner()
    res = runner.invoke(app, ["train", "--base-model", str(base), "--data-dir", str(data_dir), "--out", str(out),
                              "--steps", "2", "--group-size", "2", "--prompts-per-step", "2",
                              "--learning-rate", "1e-3", "--device", "cpu"])
    assert res.exit_code == 0, res.output
    assert "step 1:" in res.output
    ckpt_manifest = read_manifest(out / "manifest.json")
    saved = {Path(o["path"]).name for o in ckpt_manifest["outputs"]}
    assert {"config.json", "model.safetensors", "train_log.jsonl"} <= saved
    assert len((out / "train_log.jsonl").read_text().splitlines()) == 2

    from transformers import AutoModelForCausalLM

    AutoModelForCausalLM.from_pretrained(out)  # a plain HF folder (what vLLM loads)
    res = runner.invoke(app, ["eval", "--model", f"base={base}", "--model", f"trained={out}", "--data-dir",
                              str(data_dir), "--max-new-tokens", "4", "--device", "cpu"])
    assert res.exit_code == 0, res.output
    evals = json.loads(res.stdout)
    assert set(evals) == {"base", "trained"} and evals["base"]["num_items"] == len(split["eval_ids"])


def test_run_drqa_entry_point(tmp_path: Path) -> None:
    from orchestrator.runtime import Runtime
    from orchestrator.settings import Settings
    from orchestrator.tools.registry import ToolRegistry

    src = _sim_dataset(tmp_path)
    rt = Runtime(Settings(db_url=f"sqlite:///{tmp_path / 'r.db'}", home=tmp_path), clients={"sim": sim_client()},
                 tools=ToolRegistry())
    res = run_drqa(str(src), 900, "drqa", backend="sim", runtime=rt)
    asyncio.run(rt.aclose())
    assert res.status == "succeeded" and res.result["reasoning_tokens"] <= 900
    assert res.result["num_items"] == 10 and res.result["method"] == "drqa"
    from cli.drqa import describe_result

    text = describe_result(res.run_id, res.status, res.result)
    assert f"run {res.run_id}: succeeded" in text
    assert f"{res.result['num_correct']}/10 correct" in text and "of 900 (" in text and "solve " in text
    assert "no result" in describe_result("r1", "failed", None)


def test_bench_dry_run_writes_the_issue_shape(tmp_path: Path) -> None:
    sys.path.insert(0, str(ROOT / "bench" / "drqa"))
    try:
        import run as bench_run
    finally:
        sys.path.pop(0)
    assert bench_run.main(["--dry-run", "--parts", "allocation", "--results-dir", str(tmp_path),
                           "--artifacts-dir", str(tmp_path / "art"), "--fractions", "0.6",
                           "--unlimited-max-tokens", "1024", "--max-tokens", "512"]) == 0
    summary = json.loads((tmp_path / "dry-run" / "summary.json").read_text())
    assert {"commit", "machine", "date", "model", "allocation"} <= set(summary)
    methods = [(e["dataset"], e["method"]) for e in summary["allocation"]]
    assert sorted(methods) == sorted((d, m) for d in ("gsm8k", "math") for m in ("unlimited", "uniform", "drqa"))
    # Unlimited runs at its own max_tokens; the copy capped at the quota ceiling is a details-only row.
    details = json.loads((tmp_path / "dry-run" / "details.json").read_text())
    unlimited = [e for e in details["allocation"] if e["method"] == "unlimited"]
    assert sorted((e["options"]["unlimited_max_tokens"], bool(e["variant"])) for e in unlimited) == [
        (512, True), (512, True), (1024, False), (1024, False)]
    assert all(e["options"]["ceiling_tokens"] == 512 for e in details["allocation"])
    assert {e["total_budget"] for e in summary["allocation"] if e["method"] == "unlimited"} == {1024 * 12, 1024 * 8}
    for e in summary["allocation"]:
        assert set(e) == {"dataset", "method", "total_budget", "accuracy", "reasoning_tokens"}
        assert e["reasoning_tokens"] <= e["total_budget"]
    assert (tmp_path / "dry-run" / "allocation.png").stat().st_size > 0


def test_run_drqa_refuses_a_malformed_dataset_line_by_line_number(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from cli.main import app as main_app

    src = tmp_path / "bad.jsonl"
    src.write_text('{"question": "1+1?", "answer": "#### 2"}\n{not json\n')
    res = CliRunner().invoke(main_app, ["run", "drqa", "--dataset", str(src), "--budget-tokens", "100",
                                        "--backend", "scripted", "--db", f"sqlite:///{tmp_path / 'r.db'}"])
    assert res.exit_code == 2, res.output
    assert "bad.jsonl:2" in res.output and "not JSON" in res.output


def test_run_drqa_passes_force_answer_and_state_budget(tmp_path: Path) -> None:
    from orchestrator.runtime import Runtime
    from orchestrator.settings import Settings
    from orchestrator.tools.registry import ToolRegistry
    from workflows.drqa.config import run_config_from

    src = _sim_dataset(tmp_path)
    rt = Runtime(Settings(db_url=f"sqlite:///{tmp_path / 'r.db'}", home=tmp_path), clients={"sim": sim_client()},
                 tools=ToolRegistry())
    seen: dict[str, object] = {}
    real_run = rt.run

    async def spy(workflow: str, task: object, **kw: object) -> object:
        seen.update(kw["options"])  # type: ignore[arg-type]
        return await real_run(workflow, task, **kw)  # type: ignore[arg-type]

    rt.run = spy  # type: ignore[method-assign]
    res = run_drqa(str(src), 900, "uniform", backend="sim", runtime=rt,
                   options={"force_answer": False, "state_budget": False})
    asyncio.run(rt.aclose())
    assert res.status == "succeeded"
    cfg = run_config_from(seen)
    assert cfg.quota.force_answer is False and cfg.quota.state_budget is False


def test_allocation_only_run_says_whose_training_figures_it_keeps(tmp_path: Path) -> None:
    from bench.drqa.run import main

    out = tmp_path / "dry-run"
    out.mkdir()
    earlier = {"commit": "old", "date": "2026-11-27", "machine": "H200", "training": {"base": {}, "trained": {}}}
    (out / "summary.json").write_text(json.dumps(earlier))
    assert main(["--dry-run", "--parts", "allocation", "--results-dir", str(tmp_path), "--variants", "",
                 "--artifacts-dir", str(tmp_path / "art"), "--fractions", "0.6", "--datasets", "gsm8k"]) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["training_from"] == {"commit": "old", "date": "2026-11-27", "machine": "H200"}
    assert summary["commit"] != "old" and summary["training"] == earlier["training"]


def test_run_drqa_cli_passes_strategy_and_settings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from typer.testing import CliRunner

    import cli.drqa
    from cli.main import app as main_app
    from workflows.drqa.config import run_config_from

    seen: dict[str, Any] = {}

    def fake_run(dataset: str, budget: int, method: str, **kw: Any) -> Any:
        seen.update(kw["options"], method=method, total_budget=budget)
        return type("R", (), {"run_id": "r1", "status": "succeeded", "error": None, "exit_code": 0,
                              "result": {"ok": True}})()

    monkeypatch.setattr(cli.drqa, "run_drqa", fake_run)
    args = ["run", "drqa", "--dataset", "x.jsonl", "--budget-tokens", "900", "--strategy", "proportional",
            "--set", "max_probe_fraction=0", "--set", "ceiling-tokens=384", "--json"]
    res = CliRunner().invoke(main_app, args)
    assert res.exit_code == 0, res.output
    cfg = run_config_from(seen)
    assert cfg.quota.strategy == "proportional" and cfg.quota.max_probe_fraction == 0.0
    assert cfg.quota.allocation.ceiling_tokens == 384
    bad = CliRunner().invoke(main_app, [*args[:6], "--set", "probe_fraction=0"])
    assert bad.exit_code == 2 and "max_probe_fraction" in bad.output


def test_run_drqa_cli_refuses_a_bad_strategy_before_running(tmp_path: Path) -> None:
    from cli.main import app as main_app

    src = _sim_dataset(tmp_path)
    res = CliRunner().invoke(main_app, ["run", "drqa", "--dataset", str(src), "--budget-tokens", "100",
                                        "--strategy", "biggest", "--backend", "scripted",
                                        "--db", f"sqlite:///{tmp_path / 'r.db'}"])
    assert res.exit_code == 2, res.output
    assert "easiest_first" in res.output and not (tmp_path / "r.db").exists()


def test_quotaflow_run_drqa_process_exits_without_a_corpus(tmp_path: Path) -> None:
    """The real command over HTTP: no search corpus needed (drqa calls no tool), the process ends
    (its runtime is closed: an open SQLite connection thread once kept it alive), exit codes 0 / 4."""
    import os
    import subprocess

    from bench.drqa.responder import MODEL, respond
    from orchestrator.testing import LoopbackServer

    root = Path(__file__).resolve().parents[3]
    server = LoopbackServer(respond, model=MODEL, tokenize=False).start()
    env = {**os.environ, "QUOTAFLOW_HOME": str(tmp_path / "home"), "PYTHONPATH": str(root)}
    src = tmp_path / "g.jsonl"
    src.write_text("".join(line + "\n" for line in
                           (root.parent / "shared" / "data" / "gsm8k" / "validate.jsonl").read_text().splitlines()[:4]))
    try:
        base = [sys.executable, "-m", "cli.main", "run", "drqa", "--dataset", str(src), "--budget-tokens", "800"]
        ok = subprocess.run([*base, "--backend", "openai", "--base-url", server.base_url, "--model", "fake-drqa"],
                            check=False, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
        dead = subprocess.run([*base, "--backend", "openai", "--base-url", "http://127.0.0.1:9/v1"],
                              check=False, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    finally:
        server.stop()
    assert ok.returncode == 0, ok.stderr[-2000:]
    assert ": succeeded" in ok.stdout and "/4 correct" in ok.stdout and "of 800 (" in ok.stdout
    assert not (tmp_path / "home" / "corpus.db").exists()
    # A server that is down: the run fails with the engine's exit code and says why.
    assert dead.returncode == 4, (dead.stdout, dead.stderr[-2000:])
    assert "failed" in dead.stdout
