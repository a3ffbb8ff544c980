"""The training pipeline's promise under crashes: a killed data or train job, run again, repeats
only what it had not finished and ends with what an uninterrupted job makes (CPU: loopback HTTP,
the simulated solver, the tiny model; real SIGKILLs)."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import pytest

from tests import extras

pytest.importorskip("torch", reason=extras.LOCAL)
pytest.importorskip("transformers", reason=extras.LOCAL)

from orchestrator.errors import BadInputError, EngineDead, EngineUnavailable
from orchestrator.llm.scripted import ScriptedClient
from orchestrator.types import LLMRequest, LLMResponse
from workflows.drqa.sim import make_rows, sim_client
from workflows.drqa.training.generate import GenerationConfig
from workflows.drqa.training.pipeline import DataJob, TrainJob, build_training_data, train
from workflows.drqa.training.resume import JOURNAL_NAME, RESUME_NAME

ROOT = Path(__file__).resolve().parents[3]
STEPS = [1, 2, 3, 1, 9, 2, 1, 12, 1, 4, 2, 3]


def _dataset(tmp_path: Path) -> Path:
    folder = tmp_path / "gsm8k"
    folder.mkdir(exist_ok=True)
    (folder / "validate.jsonl").write_text("".join(json.dumps(r) + "\n" for r in make_rows(STEPS)))
    return folder


def _job(src: Path, out: Path, **gen: Any) -> DataJob:
    return DataJob((str(src),), str(out), eval_fraction=0.25,
                   generation=GenerationConfig(**{"num_single": 2, "num_batch": 1, "max_tokens": 600, **gen}))


class _Counting:
    """The simulated solver, counting requests; ``fail_after`` answers that many, then raises;
    ``refuse`` refuses for good every request whose prompt holds that text."""

    def __init__(self, fail_after: int | None = None, refuse: str | None = None) -> None:
        self.inner: ScriptedClient = sim_client()
        self.model = "sim"
        self.sent = 0
        self.fail_after = fail_after
        self.refuse = refuse

    async def complete(self, request: LLMRequest) -> LLMResponse:
        if self.fail_after is not None and self.sent >= self.fail_after:
            raise EngineUnavailable("the server went away")
        self.sent += 1
        if self.refuse and any(self.refuse in m.content for m in request.messages):
            raise EngineDead("LLM server rejected the request (HTTP 400: prompt past the context)")
        return await self.inner.complete(request)

    async def aclose(self) -> None:
        await self.inner.aclose()


def test_a_failed_data_job_resumes_without_resending_and_ends_as_an_uninterrupted_one(tmp_path: Path) -> None:
    src = _dataset(tmp_path)
    reference = tmp_path / "reference"
    totals: list[int] = []
    asyncio.run(build_training_data(_Counting(), _job(src, reference, concurrency=1), on_total=totals.append))
    (total,) = totals

    out = tmp_path / "out"
    failing = _Counting(fail_after=7)
    with pytest.raises(EngineUnavailable):
        asyncio.run(build_training_data(failing, _job(src, out, concurrency=1)))
    journal = out / JOURNAL_NAME
    assert len(journal.read_text().splitlines()) == 1 + 7  # header + one line per answered request
    assert not (out / "chains.jsonl").exists()
    with journal.open("a") as f:
        f.write('{"key": "gsm8k/single/1/3", "chains": [{"item_')  # killed while writing a line
    lines = journal.read_text().splitlines()
    damaged = tmp_path / "damaged"
    damaged.mkdir()  # the same journal with its 5th entry replaced by JSON that is no entry
    (damaged / JOURNAL_NAME).write_text("\n".join([*lines[:5], '{"key": 3}', *lines[6:8]]) + "\n")
    again_damaged = _Counting()
    asyncio.run(build_training_data(again_damaged, _job(src, damaged)))
    assert again_damaged.sent == total - 4  # entries 1-4 kept; the bad one and all after it sent again
    assert (damaged / "chains.jsonl").read_bytes() == (reference / "chains.jsonl").read_bytes()

    again = _Counting()
    asyncio.run(build_training_data(again, _job(src, out, concurrency=4)))  # concurrency is not part of the job
    assert again.sent == total - 7
    assert (out / "chains.jsonl").read_bytes() == (reference / "chains.jsonl").read_bytes()
    assert not journal.exists()
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["fingerprint"] == json.loads((reference / "manifest.json").read_text())["fingerprint"]

    finished = _Counting()
    asyncio.run(build_training_data(finished, _job(src, out)))
    assert finished.sent == 0  # a finished job is not run again


def test_a_data_job_refuses_state_left_by_another_job(tmp_path: Path) -> None:
    src = _dataset(tmp_path)
    out = tmp_path / "out"
    with pytest.raises(EngineUnavailable):
        asyncio.run(build_training_data(_Counting(fail_after=3), _job(src, out)))
    with pytest.raises(BadInputError, match="--fresh"):
        asyncio.run(build_training_data(_Counting(), _job(src, out, max_tokens=300)))
    other, totals = _Counting(), []
    asyncio.run(build_training_data(other, _job(src, out, max_tokens=300), fresh=True, on_total=totals.append))
    assert other.sent == totals[0]
    with pytest.raises(BadInputError, match="--fresh"):  # a finished job of other settings
        asyncio.run(build_training_data(_Counting(), _job(src, out)))


def test_quotaflow_drqa_data_killed_mid_run_resumes_over_http(tmp_path: Path) -> None:
    """The real command against a loopback server that SIGKILLs it when the 6th request arrives;
    the same command again sends only the requests it had no answer for."""
    from bench.drqa.responder import MODEL, respond
    from orchestrator.testing import ChatRequest, LoopbackServer, Reply

    src = _dataset(tmp_path)
    child: dict[str, subprocess.Popen[str]] = {}
    seen: list[int] = []
    lock = threading.Lock()

    def killing(request: ChatRequest) -> Reply:
        with lock:
            seen.append(1)
            if len(seen) == 6 and "proc" in child:
                child["proc"].send_signal(signal.SIGKILL)
        return respond(request)

    server = LoopbackServer(killing, model=MODEL, tokenize=False).start()
    env = {**os.environ, "QUOTAFLOW_HOME": str(tmp_path / "home"), "PYTHONPATH": str(ROOT)}

    def command(out: Path) -> list[str]:
        return [sys.executable, "-m", "cli.main", "drqa", "data", "--base-url", server.base_url, "--model", MODEL,
                "--out", str(out), "--dataset", str(src), "--eval-fraction", "0.25", "--max-tokens", "600",
                "--concurrency", "1"]

    try:
        child["proc"] = subprocess.Popen(command(tmp_path / "out"), cwd=tmp_path, env=env, text=True,
                                         stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        child["proc"].communicate(timeout=120)
        assert child["proc"].returncode == -signal.SIGKILL
        assert len((tmp_path / "out" / JOURNAL_NAME).read_text().splitlines()) == 1 + 5
        del child["proc"]
        before = len(seen)
        again = subprocess.run(command(tmp_path / "out"), cwd=tmp_path, env=env, text=True, capture_output=True,
                               timeout=120, check=False)
        resent = len(seen) - before
        before = len(seen)
        whole = subprocess.run(command(tmp_path / "whole"), cwd=tmp_path, env=env, text=True,
                               capture_output=True, timeout=120, check=False)
        total = len(seen) - before
    finally:
        server.stop()
    assert again.returncode == 0, again.stderr[-2000:]
    assert whole.returncode == 0, whole.stderr[-2000:]
    assert resent == total - 5
    assert (tmp_path / "out" / "chains.jsonl").read_bytes() == (tmp_path / "whole" / "chains.jsonl").read_bytes()


@pytest.fixture(scope="module")
def data_and_base(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    from workflows.drqa.training.tiny import save_tiny_model

    tmp = tmp_path_factory.mktemp("train")
    data_dir = asyncio.run(build_training_data(sim_client(), _job(_dataset(tmp), tmp / "data")))
    return data_dir, save_tiny_model(tmp / "base")


def _train_job(data_dir: Path, base: Path, out: Path, **kw: Any) -> TrainJob:
    return TrainJob(str(base), str(data_dir), str(out), num_steps=5, device="cpu", max_chain_chars=300,
                    grpo={"group_size": 3, "prompts_per_step": 2, "max_new_tokens": 3, "learning_rate": 1e-2},
                    **{"checkpoint_every": 2, "checkpoint_every_s": 0, **kw})


def _log(out: Path) -> list[dict[str, Any]]:
    return [{k: v for k, v in json.loads(line).items() if k != "elapsed_s"}
            for line in (out / "train_log.jsonl").read_text().splitlines()]


@pytest.fixture(scope="module")
def reference(data_and_base: tuple[Path, Path], tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("reference") / "ckpt"
    train(_train_job(*data_and_base, out))
    return out


def test_a_train_job_stopped_after_a_checkpoint_saves_the_uninterrupted_model(
    data_and_base: tuple[Path, Path], reference: Path, tmp_path: Path
) -> None:
    out = tmp_path / "ckpt"

    def stop_at_3(step: int, stats: dict[str, Any]) -> None:
        if step == 3:
            raise KeyboardInterrupt  # after the checkpoint of steps 0-3 was written

    with pytest.raises(KeyboardInterrupt):
        train(_train_job(*data_and_base, out), on_step=stop_at_3)
    assert (out / RESUME_NAME).exists() and len(_log(out)) == 4
    taken: list[int] = []
    summary = train(_train_job(*data_and_base, out), on_step=lambda step, s: taken.append(step))
    assert taken == [4]
    assert (out / "model.safetensors").read_bytes() == (reference / "model.safetensors").read_bytes()
    assert _log(out) == _log(reference)
    assert not (out / RESUME_NAME).exists()
    manifest = json.loads((out / "manifest.json").read_text())
    assert RESUME_NAME not in {Path(o["path"]).name for o in manifest["outputs"]}
    assert train(_train_job(*data_and_base, out), on_step=lambda step, s: taken.append(step)) == summary
    assert taken == [4]  # a finished job takes no step


_KILL_WHILE_CHECKPOINTING = """
import os, signal, sys
import torch
from workflows.drqa.training import resume
from workflows.drqa.training.pipeline import TrainJob, train

saves = []
real_save = torch.save

def save(obj, f, *a, **kw):
    saves.append(f)
    if len(saves) == 2:  # the second checkpoint (after step 3): half written, then the process dies
        f.write(b"PK\\x03\\x04 half a checkpoint")
        f.flush()
        os.kill(os.getpid(), signal.SIGKILL)
    return real_save(obj, f, *a, **kw)

torch.save = save
data_dir, base, out = sys.argv[1:4]
train(TrainJob(base, data_dir, out, num_steps=5, device="cpu", max_chain_chars=300, checkpoint_every=2,
               checkpoint_every_s=0,
               grpo={"group_size": 3, "prompts_per_step": 2, "max_new_tokens": 3, "learning_rate": 1e-2}))
"""


def test_a_train_job_killed_while_checkpointing_resumes_from_the_checkpoint_before(
    data_and_base: tuple[Path, Path], reference: Path, tmp_path: Path
) -> None:
    data_dir, base = data_and_base
    out = tmp_path / "ckpt"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    killed = subprocess.run([sys.executable, "-c", _KILL_WHILE_CHECKPOINTING, str(data_dir), str(base), str(out)],
                            cwd=ROOT, env=env, capture_output=True, text=True, timeout=300, check=False)
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-2000:]
    assert [p.name for p in out.glob(f".{RESUME_NAME}.*")]  # the half-written one is there
    assert len(_log(out)) == 4  # steps 0-3 logged; the checkpoint on disk is the one after step 1
    taken: list[int] = []
    train(_train_job(data_dir, base, out), on_step=lambda step, s: taken.append(step))
    assert taken == [2, 3, 4]
    assert (out / "model.safetensors").read_bytes() == (reference / "model.safetensors").read_bytes()
    assert _log(out) == _log(reference)
    assert not list(out.glob(f".{RESUME_NAME}*"))


def test_a_train_job_refuses_another_jobs_checkpoint_and_bad_chains(
    data_and_base: tuple[Path, Path], tmp_path: Path
) -> None:
    data_dir, base = data_and_base
    out = tmp_path / "ckpt"
    with pytest.raises(KeyboardInterrupt):
        train(_train_job(data_dir, base, out), on_step=lambda step, s: (_ for _ in ()).throw(KeyboardInterrupt)
              if step == 2 else None)
    with pytest.raises(BadInputError, match="--fresh"):
        train(_train_job(data_dir, base, out, seed=1))
    taken: list[int] = []
    train(_train_job(data_dir, base, out, seed=1), fresh=True, on_step=lambda step, s: taken.append(step))
    assert taken == [0, 1, 2, 3, 4]

    bad = tmp_path / "bad"
    bad.mkdir()
    lines = (data_dir / "chains.jsonl").read_text().splitlines()
    broken = json.loads(lines[1])
    broken["num_tokens"] = "many"
    (bad / "chains.jsonl").write_text("\n".join([lines[0], json.dumps(broken), *lines[2:]]) + "\n")
    with pytest.raises(BadInputError, match=r"chains.jsonl:2: .*num_tokens"):
        train(_train_job(bad, base, tmp_path / "other"))


@pytest.mark.parametrize(("every_s", "taken_again"), [(1e-9, [2, 3, 4]), (0.0, [0, 1, 2, 3, 4])])
def test_checkpoints_by_time_and_none(data_and_base: tuple[Path, Path], tmp_path: Path, every_s: float,
                                      taken_again: list[int]) -> None:
    """Due by time after every step (a tiny interval), or never (0 and no step interval): a run
    stopped after step 1 takes again only what no checkpoint holds."""
    data_dir, base = data_and_base
    out = tmp_path / "ckpt"

    def stop_at_1(step: int, stats: dict[str, Any]) -> None:
        if step == 1:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train(_train_job(data_dir, base, out, checkpoint_every=0, checkpoint_every_s=every_s), on_step=stop_at_1)
    taken: list[int] = []
    train(_train_job(data_dir, base, out, checkpoint_every=0, checkpoint_every_s=every_s),
          on_step=lambda step, s: taken.append(step))
    assert taken == taken_again


def test_a_second_job_on_the_same_folder_is_refused_while_the_first_runs(
    data_and_base: tuple[Path, Path], tmp_path: Path
) -> None:
    from workflows.drqa.training.resume import exclusive

    data_dir, base = data_and_base
    out = tmp_path / "ckpt"
    with exclusive(out, "train"):  # the first job (its own open file: flock conflicts as across processes)
        with pytest.raises(BadInputError, match=f"held by pid {os.getpid()}"):
            train(_train_job(data_dir, base, out))
        with pytest.raises(BadInputError, match="no other running data job"):
            asyncio.run(build_training_data(_Counting(), _job(_dataset(tmp_path), out)))
    assert not (out / "train_log.jsonl").exists() and not (out / JOURNAL_NAME).exists()
    taken: list[int] = []
    train(_train_job(data_dir, base, out), on_step=lambda step, s: taken.append(step))
    assert taken == [0, 1, 2, 3, 4]


def test_requests_the_server_refuses_are_left_out_counted_and_sent_again(tmp_path: Path) -> None:
    src = _dataset(tmp_path)
    reference = tmp_path / "reference"
    asyncio.run(build_training_data(_Counting(), _job(src, reference)))
    out = tmp_path / "out"
    asyncio.run(build_training_data(_Counting(refuse="[Q1]"), _job(src, out)))  # every batch-mode prompt
    manifest = json.loads((out / "manifest.json").read_text())
    batch_requests = manifest["refused_requests"]["count"]
    assert batch_requests > 0 and "HTTP 400" in manifest["refused_requests"]["first"][0]
    chains = [json.loads(line) for line in (out / "chains.jsonl").read_text().splitlines()]
    assert chains and {c["mode"] for c in chains} == {"single"}
    assert (out / JOURNAL_NAME).exists()  # not finished: the refused requests are still to send

    again = _Counting()
    asyncio.run(build_training_data(again, _job(src, out)))
    assert again.sent == batch_requests
    assert (out / "chains.jsonl").read_bytes() == (reference / "chains.jsonl").read_bytes()
    assert json.loads((out / "manifest.json").read_text())["refused_requests"]["count"] == 0

    with pytest.raises(EngineDead, match="refused every request"):
        asyncio.run(build_training_data(_Counting(refuse="plus"), _job(src, tmp_path / "none")))


def test_a_damaged_checkpoint_is_a_clear_error(data_and_base: tuple[Path, Path], tmp_path: Path) -> None:
    data_dir, base = data_and_base
    out = tmp_path / "ckpt"
    out.mkdir()
    (out / RESUME_NAME).write_bytes(b"PK\x03\x04 not a checkpoint")
    with pytest.raises(BadInputError, match=r"\.resume\.pt: expected a checkpoint this job wrote .*--fresh"):
        train(_train_job(data_dir, base, out))
    taken: list[int] = []
    train(_train_job(data_dir, base, out), fresh=True, on_step=lambda step, s: taken.append(step))
    assert taken == [0, 1, 2, 3, 4]


def test_two_files_of_one_dataset_are_refused_not_one_dropped(tmp_path: Path) -> None:
    src = _dataset(tmp_path)
    other = tmp_path / "more-gsm8k.jsonl"
    other.write_text((src / "validate.jsonl").read_text())
    job = DataJob((str(src), str(other)), str(tmp_path / "out"))
    with pytest.raises(BadInputError, match="are both gsm8k"):
        asyncio.run(build_training_data(_Counting(), job))
