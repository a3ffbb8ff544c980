"""DRQA training under a crash, on a real-size model: what a resume checkpoint costs and what a
killed run, run again, ends with.

Side by side in one call, four processes on the same GRPO job (the labelling task on simulated
chains; the model's shape is what counts, so ``--base`` may be a config and tokenizer without
weights: the model is then randomly initialised once and saved):

- ``plain``: no checkpoints;
- ``checkpointed``: a checkpoint every ``--every`` steps (time and bytes of each);
- ``killed``: the same job SIGKILLed by itself after step ``--kill-after``;
- ``resumed``: the same command again in the killed run's folder.

Reported: seconds per step, per checkpoint and per restore, the checkpoint's size, the steps the
resumed run took again, and how far its saved weights are from the uninterrupted run's (next to
how far ``plain`` is from ``checkpointed``: the machine's own run-to-run spread)::

    python -m bench.drqa.train_resume --base /root/models/qwen05-shape --device cuda --out DIR
    python -m bench.drqa.train_resume --dry-run --out /tmp/tr   # tiny model, CPU, seconds
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.common import provenance, write_json  # noqa: E402

RESULTS = ROOT / "bench" / "results" / "drqa" / "train-resume"
PHASES = ("plain", "checkpointed", "killed", "resumed")


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--base", default="", help="HF folder: weights, or only config.json + tokenizer (random init)")
    p.add_argument("--device", default="cuda")
    p.add_argument("--steps", type=int, default=8)
    p.add_argument("--every", type=int, default=2, help="steps between checkpoints")
    p.add_argument("--kill-after", type=int, default=4, help="step index after which the killed run dies")
    p.add_argument("--group-size", type=int, default=8)
    p.add_argument("--prompts-per-step", type=int, default=8)
    p.add_argument("--out", default="", help="results folder (default bench/results/drqa/train-resume)")
    p.add_argument("--work", default="", help="scratch folder (default OUT/work)")
    p.add_argument("--commit", default="")
    p.add_argument("--dry-run", action="store_true", help="the tiny model on the CPU")
    p.add_argument("--phase", choices=PHASES, help=argparse.SUPPRESS)
    return p


def _job(args: argparse.Namespace, work: Path, phase: str) -> Any:
    from workflows.drqa.training.pipeline import TrainJob

    folder = "resumed" if phase == "killed" else phase
    grpo = {"group_size": args.group_size, "prompts_per_step": args.prompts_per_step, "max_new_tokens": 4,
            "learning_rate": 1e-3 if args.dry_run else 1e-6, "micro_batch_size": 32}
    return TrainJob(str(work / "base"), str(work / "data"), str(work / folder), num_steps=args.steps,
                    device=args.device, max_chain_chars=300 if args.dry_run else 2000,
                    checkpoint_every=0 if phase == "plain" else args.every, checkpoint_every_s=0, grpo=grpo)


def run_phase(args: argparse.Namespace, work: Path) -> None:
    """One process's run (``--phase``): times its checkpoints and restores, writes PHASE.json."""
    from workflows.drqa.training import pipeline

    timings: dict[str, list[float]] = {"save_s": [], "load_s": [], "checkpoint_bytes": []}
    real_save, real_load = pipeline.save_train_state, pipeline.load_train_state

    def timed(name: str, fn: Any) -> Any:
        def call(*a: Any, **kw: Any) -> Any:
            t = time.perf_counter()
            try:
                return fn(*a, **kw)
            finally:
                timings[name].append(round(time.perf_counter() - t, 3))
                resume = work / ("resumed" if args.phase == "killed" else args.phase) / ".resume.pt"
                if name == "save_s" and resume.exists():
                    timings["checkpoint_bytes"].append(resume.stat().st_size)
        return call

    pipeline.save_train_state = timed("save_s", real_save)
    pipeline.load_train_state = timed("load_s", real_load)
    job = _job(args, work, args.phase)
    taken: list[int] = []

    def on_step(step: int, stats: dict[str, Any]) -> None:
        taken.append(step)
        if args.phase == "killed" and step == args.kill_after:
            _write_phase(work, args.phase, timings, taken, job, 0.0)
            os.kill(os.getpid(), signal.SIGKILL)

    started = time.perf_counter()
    pipeline.train(job, on_step=on_step)
    _write_phase(work, args.phase, timings, taken, job, time.perf_counter() - started)


def _write_phase(work: Path, phase: str, timings: dict[str, list[float]], taken: list[int], job: Any,
                 seconds: float) -> None:
    log = [json.loads(line) for line in (Path(job.out_dir) / "train_log.jsonl").read_text().splitlines()]
    (work / f"{phase}.json").write_text(json.dumps({
        **timings, "steps_taken": taken, "seconds": round(seconds, 2),
        "log_elapsed_s": [line["elapsed_s"] for line in log]}))


def _prepare(args: argparse.Namespace, work: Path) -> dict[str, Any]:
    """Simulated chains in work/data and the base model in work/base; returns the model's facts."""
    from workflows.drqa.sim import make_rows, sim_client
    from workflows.drqa.training.generate import GenerationConfig
    from workflows.drqa.training.pipeline import DataJob, build_training_data

    src = work / "gsm8k" / "validate.jsonl"
    src.parent.mkdir(parents=True, exist_ok=True)
    src.write_text("".join(json.dumps(r) + "\n" for r in make_rows([1, 2, 3, 1, 9, 2, 1, 12, 1, 4] * 4)))
    job = DataJob((str(src.parent),), str(work / "data"), eval_fraction=0.25,
                  generation=GenerationConfig(num_single=2, num_batch=1, max_tokens=300))
    asyncio.run(build_training_data(sim_client(), job))
    return _base_model(args, work / "base")


def _base_model(args: argparse.Namespace, target: Path) -> dict[str, Any]:
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    if args.dry_run:
        from workflows.drqa.training.tiny import save_tiny_model

        save_tiny_model(target)
        source = "tiny (workflows.drqa.training.tiny)"
    elif any(Path(args.base).glob("*.safetensors")):
        target.symlink_to(Path(args.base).resolve())
        source = args.base
    else:
        config = AutoConfig.from_pretrained(args.base)
        torch.manual_seed(0)
        with torch.device(args.device):
            model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
        model.save_pretrained(target)
        AutoTokenizer.from_pretrained(args.base).save_pretrained(target)
        source = f"{args.base} (config and tokenizer; random weights)"
    from transformers import AutoModelForCausalLM as Loader

    params = sum(p.numel() for p in Loader.from_pretrained(target).parameters())
    return {"source": source, "parameters": params}


def _weights_gap(a: Path, b: Path) -> dict[str, Any]:
    from safetensors.torch import load_file

    wa, wb = load_file(str(a / "model.safetensors")), load_file(str(b / "model.safetensors"))
    gaps = [float((wa[k].float() - wb[k].float()).abs().max()) for k in wa]
    return {"identical": (a / "model.safetensors").read_bytes() == (b / "model.safetensors").read_bytes(),
            "max_abs_diff": max(gaps), "tensors_differing": sum(g > 0 for g in gaps), "tensors": len(gaps)}


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.dry_run:
        args.device, args.steps, args.every, args.kill_after = "cpu", 5, 2, 2
        args.group_size, args.prompts_per_step = 3, 2
    out = Path(args.out) if args.out else RESULTS / ("dry-run" if args.dry_run else "")
    work = Path(args.work) if args.work else out / "work"
    if args.phase:
        run_phase(args, work)
        return 0
    work.mkdir(parents=True, exist_ok=True)
    model = _prepare(args, work)
    argv_base = [a for a in (argv if argv is not None else sys.argv[1:])]
    codes = {}
    for phase in PHASES:
        cmd = [sys.executable, "-m", "bench.drqa.train_resume", *argv_base, "--work", str(work), "--phase", phase]
        print(f"{phase}: {' '.join(cmd[3:])}", flush=True)
        codes[phase] = subprocess.run(cmd, cwd=ROOT, check=False).returncode
    phases = {p: json.loads((work / f"{p}.json").read_text()) for p in PHASES if (work / f"{p}.json").exists()}
    summary = {
        **provenance(commit=args.commit), "model": model, "device": args.device,
        "job": {"steps": args.steps, "checkpoint_every": args.every, "kill_after_step": args.kill_after,
                "group_size": args.group_size, "prompts_per_step": args.prompts_per_step},
        "exit_codes": codes, "phases": phases,
        "resumed_vs_uninterrupted": _weights_gap(work / "resumed", work / "checkpointed"),
        "plain_vs_checkpointed": _weights_gap(work / "plain", work / "checkpointed"),
    }
    write_json(out / "summary.json", summary)
    print(json.dumps({k: summary[k] for k in ("exit_codes", "resumed_vs_uninterrupted", "plain_vs_checkpointed")}))
    return 0 if codes["killed"] == -signal.SIGKILL and codes["resumed"] == 0 else 1


if __name__ == "__main__":
    raise SystemExit(main())
