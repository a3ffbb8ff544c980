"""The DRQA training pipeline end to end, as functions the CLI and the benchmark call.

    data:  items (gsm8k, math) -> train/eval split -> chains (single + batch mode) from a served
           model -> labels -> <out>/chains.jsonl, split.json, manifest.json
    train: labelled chains -> judge prompts -> GRPO from a base HF folder -> <out>/ (HF folder
           vLLM serves) + train_log.jsonl + manifest.json
    eval:  HF folder(s) -> solve accuracy and tokens per question on the held-out items
"""

from __future__ import annotations

import json
import random
import time
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

from orchestrator.errors import BadInputError, EngineDead
from orchestrator.llm.base import LLMClient
from workflows.drqa.datasets import Item, get_spec, load_dataset, load_items, split_items
from workflows.drqa.training.generate import GenerationConfig, generate_chains, request_plan
from workflows.drqa.training.labels import LETTER_OF, Chain, Label, LabelConfig, label_chains
from workflows.drqa.training.manifest import file_sha256, read_manifest, write_atomic, write_manifest
from workflows.drqa.training.resume import (
    RESUME_NAME,
    ChainJournal,
    TrainState,
    exclusive,
    fingerprint,
    load_train_state,
    refuse_foreign,
    save_train_state,
)

__all__ = ["DataJob", "TrainJob", "build_training_data", "check_device", "evaluate_models",
           "load_chains", "load_split", "train"]


@dataclass(frozen=True)
class DataJob:
    """What training data to make."""

    data_paths: tuple[str, ...]
    """JSONL files or folders (../shared/data/gsm8k, ../shared/data/math)."""
    out_dir: str
    """Folder for chains.jsonl, split.json and manifest.json."""
    eval_fraction: float = 0.4
    """Share of each dataset held out for evaluation (no chains are made for it)."""
    max_train_items: int | None = None
    """Cap on training questions per dataset (None: all)."""
    generation: GenerationConfig = field(default_factory=GenerationConfig)
    """How chains are sampled."""
    labels: LabelConfig = field(default_factory=LabelConfig)
    """How chains are labelled."""


def _split_all(job_paths: Sequence[str], eval_fraction: float) -> dict[str, tuple[list[Item], list[Item], str]]:
    out: dict[str, tuple[list[Item], list[Item], str]] = {}
    for path in job_paths:
        name, items = load_dataset(path)
        if name in out:
            raise BadInputError("--dataset", "one file or folder per dataset (gsm8k, math)",
                                f"{out[name][2]} and {path} are both {name}")
        train_items, eval_items = split_items(items, eval_fraction)
        out[name] = (train_items, eval_items, str(path))
    return out


def _source_files(paths: Sequence[str]) -> list[Path]:
    files = []
    for p in map(Path, paths):
        files.append(p / "validate.jsonl" if p.is_dir() and (p / "validate.jsonl").exists() else p)
    return files


def _data_fingerprint(job: DataJob, model: str) -> str:
    """What a data job's requests depend on: the source files' bytes, the split, the generation
    settings and the model (labelling happens after, from the journal: not part of it)."""
    gen = {k: v for k, v in asdict(job.generation).items() if k != "concurrency"}
    sources = [file_sha256(f) for f in _source_files(job.data_paths)]
    return fingerprint({"sources": sources, "eval_fraction": job.eval_fraction,
                        "max_train_items": job.max_train_items, "generation": gen, "model": model})


def _finished(out: Path, kind: str, job_fingerprint: str) -> dict[str, Any] | None:
    """The manifest of a job that already finished in ``out`` (None if none did); a finished job
    of other inputs is an error."""
    path = out / "manifest.json"
    if not path.exists():
        return None
    manifest = read_manifest(path)
    if manifest.get("kind") != kind or manifest.get("fingerprint") != job_fingerprint:
        raise refuse_foreign(out, "data" if kind == "drqa-chains" else "train")
    return manifest


async def build_training_data(
    client: LLMClient, job: DataJob, *, on_progress: Callable[[int], None] | None = None, fresh: bool = False,
    on_total: Callable[[int], None] | None = None,
) -> Path:
    """Generate and label chains for the training split; returns the output folder.
    ``on_total(n)``: the requests the job sends (answered ones included), before the first;
    ``on_progress(1)`` after each.

    Resumable: each finished request is journalled (:class:`~.resume.ChainJournal`), and the same
    job run again in the same folder sends only what is missing; a finished job returns at once.
    Requests the server refuses for good (a prompt past its context, ...) are left out and counted
    in the manifest (``refused_requests``); the journal then stays, so the same command sends just
    those again. A server that refuses every request it is sent is an error.
    ``fresh`` drops what an earlier job left there first.
    """
    with exclusive(Path(job.out_dir), "data"):
        return await _build_training_data(client, job, on_progress, fresh, on_total)


async def _build_training_data(
    client: LLMClient, job: DataJob, on_progress: Callable[[int], None] | None, fresh: bool,
    on_total: Callable[[int], None] | None,
) -> Path:
    out = Path(job.out_dir)
    splits = _split_all(job.data_paths, job.eval_fraction)
    model = getattr(client, "model", "") or ""
    job_fingerprint = _data_fingerprint(job, model)
    journal = ChainJournal(out, job_fingerprint)
    if fresh:
        journal.discard()
        (out / "manifest.json").unlink(missing_ok=True)
    elif not journal.path.exists() and _finished(out, "drqa-chains", job_fingerprint):
        return out
    done = journal.open()
    all_chains: list[Chain] = []
    stats: dict[str, Any] = {}
    refused: list[str] = []
    answered: list[str] = []

    def record(key: str, chains: list[Chain]) -> None:
        answered.append(key)
        journal.record(key, chains)

    asked = {name: train_items[: job.max_train_items] if job.max_train_items else train_items
             for name, (train_items, _, _) in splits.items()}
    if on_total:
        on_total(sum(len(request_plan(len(items), job.generation)) for items in asked.values()))
    try:
        for name, items in asked.items():
            spec = get_spec(name)
            chains = await generate_chains(client, items, spec, job.generation, done=done, on_result=record,
                                           on_refused=lambda key, exc: refused.append(f"{key}: {exc}"),
                                           on_done=(lambda: on_progress(1)) if on_progress else None)
            labelled = label_chains(chains, spec.is_correct, job.labels)
            counts: dict[str, int] = defaultdict(int)
            for c in labelled:
                counts[f"{c.mode}/{c.label}"] += 1
            stats[name] = {"num_items": len(items), "num_chains": len(labelled), "labels": dict(counts)}
            all_chains += labelled
    finally:
        journal.close()
    if refused and not answered:
        raise EngineDead(f"the server refused every request it was sent ({len(refused)}); first: {refused[0]}")
    _write_data(out, job, splits, all_chains, model, job_fingerprint, stats, refused)
    if not refused:  # else the journal stays: the same command sends the refused requests again
        journal.discard()
    return out


def _write_data(out: Path, job: DataJob, splits: dict[str, tuple[list[Item], list[Item], str]],
                chains: list[Chain], model: str, job_fingerprint: str, stats: dict[str, Any],
                refused: list[str]) -> None:
    chains_path = out / "chains.jsonl"
    write_atomic(chains_path, "".join(json.dumps(c.to_dict()) + "\n" for c in chains))
    split_path = out / "split.json"
    write_atomic(split_path, json.dumps({
        name: {"source": src, "train_ids": [i.id for i in tr], "eval_ids": [i.id for i in ev]}
        for name, (tr, ev, src) in splits.items()
    }, indent=1) + "\n")
    write_manifest(out / "manifest.json", kind="drqa-chains", sources=_source_files(job.data_paths),
                   outputs=[chains_path, split_path], model=model,
                   params={"eval_fraction": job.eval_fraction, "max_train_items": job.max_train_items,
                           "generation": asdict(job.generation), "labels": asdict(job.labels)},
                   extra={"stats": stats, "fingerprint": job_fingerprint,
                          "refused_requests": {"count": len(refused), "first": refused[:3]}})


def load_chains(data_dir: str | Path) -> list[Chain]:
    """The chains a data step wrote; a line that is not a chain is an error naming it."""
    path = Path(data_dir) / "chains.jsonl"
    chains = []
    for num, line in enumerate(path.read_text().splitlines(), start=1):
        if not line.strip():
            continue
        try:
            chains.append(Chain.from_dict(json.loads(line)))
        except (ValueError, TypeError, KeyError, AttributeError) as exc:
            raise BadInputError(f"{path}:{num}", "one chain per line, as `quotaflow drqa data` writes them",
                                str(exc)[:200]) from None
    return chains


def load_split(data_dir: str | Path, dataset: str, part: str = "eval") -> list[Item]:
    """The held-out (``part="eval"``) or training items of ``dataset`` recorded by the data step."""
    path = Path(data_dir) / "split.json"
    if not path.is_file():
        raise BadInputError(f"--data-dir {data_dir}", "the folder `quotaflow drqa data` wrote (split.json)",
                            f"no {path}")
    try:
        splits = json.loads(path.read_text())
    except ValueError as exc:
        raise BadInputError(str(path), "the JSON `quotaflow drqa data` wrote", str(exc)) from None
    if dataset not in splits:
        raise BadInputError("--dataset", f"one of the data step's datasets {sorted(splits)}", dataset)
    split = splits[dataset]
    wanted = set(split[f"{part}_ids"])
    return [it for it in load_items(split["source"], dataset) if it.id in wanted]


@dataclass(frozen=True)
class TrainJob:
    """A GRPO run on the labelling task."""

    base_model: str
    """Hugging Face folder of the starting model (Qwen2.5-Coder-0.5B-Instruct)."""
    data_dir: str
    """Output of the data step."""
    out_dir: str
    """Where the trained HF folder goes."""
    num_steps: int = 30
    """GRPO steps."""
    max_chain_chars: int = 2000
    """Chains are cut to this many characters in the judge prompt (bounded prompt length)."""
    judge_eval_fraction: float = 0.15
    """Share of labelled chains kept out of training to measure the judge's accuracy."""
    device: str = "cuda"
    """Torch device."""
    seed: int = 0
    """Seed of prompt sampling and generation."""
    grpo: dict[str, Any] = field(default_factory=dict)
    """Overrides of :class:`~workflows.drqa.training.grpo.GRPOConfig` fields."""
    checkpoint_every_s: float = 300.0
    """Seconds of training between resume checkpoints (``out_dir/.resume.pt``: weights, optimiser
    and RNG states, 12 bytes a parameter: 5.9 GB and 7 s on an H200 for the 0.5B model, about
    14 of its steps, hence by time rather than steps); 0: none by time."""
    checkpoint_every: int = 0
    """Steps between resume checkpoints as well (0: by time only). With both 0 a killed run
    starts over."""


def _balanced_batches(chains: list[Chain], num_steps: int, per_step: int, rng: random.Random) -> list[list[Chain]]:
    """Prompts per step, drawn round-robin over labels so that no label dominates the signal."""
    by_label: dict[str, list[Chain]] = defaultdict(list)
    for c in chains:
        by_label[c.label or ""].append(c)
    pools = {k: v[:] for k, v in by_label.items() if v}
    for v in pools.values():
        rng.shuffle(v)
    cursors = dict.fromkeys(pools, 0)
    labels = sorted(pools)
    batches = []
    turn = 0
    for _ in range(num_steps):
        batch = []
        for _ in range(per_step):
            lab = labels[turn % len(labels)]
            turn += 1
            pool = pools[lab]
            batch.append(pool[cursors[lab] % len(pool)])
            cursors[lab] += 1
        batches.append(batch)
    return batches


def _train_fingerprint(job: TrainJob, chains_file: Path) -> str:
    """What a GRPO run's result depends on (not where it runs, nor how often it checkpoints)."""
    where = ("device", "out_dir", "checkpoint_every", "checkpoint_every_s")
    params = {k: v for k, v in asdict(job).items() if k not in where}
    base = str(Path(job.base_model).resolve())
    return fingerprint({**params, "chains": file_sha256(chains_file), "base_model": base})


def check_device(device: str) -> None:
    """A CUDA device asked for on a machine without one is bad input, not a torch traceback."""
    if device.startswith("cuda"):
        import torch

        if not torch.cuda.is_available():
            raise BadInputError(f"--device {device}", "a device this machine has", "no CUDA device here; try cpu")


def _check_train_inputs(job: TrainJob) -> Path:
    """The chains file, after checking what a run needs exists (errors name the option)."""
    chains_file = Path(job.data_dir) / "chains.jsonl"
    if not chains_file.is_file():
        raise BadInputError(f"--data-dir {job.data_dir}", "the folder `quotaflow drqa data` wrote (chains.jsonl)",
                            f"no {chains_file}")
    if not (Path(job.base_model) / "config.json").is_file():
        raise BadInputError(f"--base-model {job.base_model}", "a Hugging Face model folder (config.json)")
    check_device(job.device)
    if job.num_steps < 1:
        raise BadInputError("--steps", "at least 1", str(job.num_steps))
    return chains_file


def train(
    job: TrainJob, *, on_step: Callable[[int, dict[str, Any]], None] | None = None, fresh: bool = False,
) -> dict[str, Any]:
    """GRPO on the labelling task; saves an HF folder (bf16) with train_log.jsonl and manifest.json.

    Resumable: the same job run again in the same ``out_dir`` continues from its last checkpoint
    (:mod:`~workflows.drqa.training.resume`) and saves the model an uninterrupted run saves; a
    finished job returns its summary at once. ``fresh`` drops what an earlier job left there.
    """
    chains_file = _check_train_inputs(job)
    with exclusive(Path(job.out_dir), "train"):
        return _train(job, chains_file, on_step, fresh)


def _train(job: TrainJob, chains_file: Path, on_step: Callable[[int, dict[str, Any]], None] | None,
           fresh: bool) -> dict[str, Any]:
    import torch

    from workflows.drqa.training.evaluate import evaluate_judge
    from workflows.drqa.training.grpo import GRPOConfig, GRPOTrainer
    from workflows.drqa.training.hf import format_chat, load_model
    from workflows.drqa.training.judge import judge_messages, label_reward

    cfg = GRPOConfig(**job.grpo)
    out = Path(job.out_dir)
    job_fingerprint = _train_fingerprint(job, chains_file)
    if fresh:
        (out / RESUME_NAME).unlink(missing_ok=True)
        (out / "manifest.json").unlink(missing_ok=True)
    elif not (out / RESUME_NAME).exists() and (done := _finished(out, "drqa-grpo-checkpoint", job_fingerprint)):
        return dict(done["summary"])
    rng = random.Random(job.seed)
    torch.manual_seed(job.seed)
    chains = [c for c in load_chains(job.data_dir) if c.label]
    rng.shuffle(chains)
    num_eval = int(len(chains) * job.judge_eval_fraction)
    eval_chains, train_chains = chains[:num_eval], chains[num_eval:]
    if not train_chains:
        raise BadInputError(f"--data-dir {job.data_dir}", "labelled chains to train on", "none in chains.jsonl")
    # fp32 master weights (bf16 AdamW updates at lr 1e-6 would round to nothing); bf16 autocast.
    model, tok = load_model(job.base_model, device=job.device, dtype=torch.float32)

    def prompt_of(c: Chain) -> str:
        cut = Chain(**{**c.to_dict(), "text": c.text[: job.max_chain_chars]})
        return format_chat(tok, judge_messages(cut))

    eval_prompts = [prompt_of(c) for c in eval_chains]
    eval_letters = [LETTER_OF[Label(c.label)] for c in eval_chains if c.label]
    trainer = GRPOTrainer(model, tok, lambda text, gold: label_reward(text, gold), cfg, device=job.device,
                          autocast_dtype=torch.bfloat16 if job.device.startswith("cuda") else None)
    state = load_train_state(out, job_fingerprint, trainer)
    if state is None:
        judge = evaluate_judge(model, tok, eval_prompts, eval_letters, device=job.device) if eval_chains else None
        state = TrainState(judge_before=judge)
    batches = _balanced_batches(train_chains, job.num_steps, cfg.prompts_per_step, rng)
    prompts = [[prompt_of(c) for c in b] for b in batches]
    _run_steps(job, trainer, state, prompts, [[c.label for c in b] for b in batches], job_fingerprint, on_step)
    judge_after = evaluate_judge(model, tok, eval_prompts, eval_letters, device=job.device) if eval_chains else None
    summary = {"num_train_chains": len(train_chains), "num_eval_chains": len(eval_chains),
               "judge_accuracy_before": state.judge_before, "judge_accuracy_after": judge_after,
               "train_seconds": round(state.elapsed_s, 1)}
    model.to(torch.bfloat16).save_pretrained(out)
    tok.save_pretrained(out)
    saved = [f for f in out.iterdir() if f.is_file() and not f.name.startswith(".") and f.name != "manifest.json"]
    write_manifest(out / "manifest.json", kind="drqa-grpo-checkpoint",
                   sources=[chains_file, Path(job.data_dir) / "manifest.json"], outputs=saved, model=job.base_model,
                   params={**asdict(job), "grpo": asdict(cfg)},
                   extra={"summary": summary, "fingerprint": job_fingerprint})
    (out / RESUME_NAME).unlink(missing_ok=True)
    return summary


def _run_steps(job: TrainJob, trainer: Any, state: TrainState, prompts: list[list[str]], targets: list[list[Any]],
               job_fingerprint: str, on_step: Callable[[int, dict[str, Any]], None] | None) -> None:
    """Steps ``state.next_step`` .. end; the log is rewritten from the state (the lines of steps
    after the last checkpoint are taken again) and a checkpoint is saved after a step once
    ``checkpoint_every_s`` seconds or ``checkpoint_every`` steps have passed since the last."""
    out = Path(job.out_dir)
    log_path = out / "train_log.jsonl"
    write_atomic(log_path, "".join(json.dumps(line) + "\n" for line in state.log))
    t0 = time.perf_counter() - state.elapsed_s
    saved_at, saved_step = time.perf_counter(), state.next_step
    with log_path.open("a") as log:
        for step in range(state.next_step, job.num_steps):
            stats = asdict(trainer.step(prompts[step], targets[step]))
            stats.update(step=step, elapsed_s=round(time.perf_counter() - t0, 2))
            log.write(json.dumps(stats) + "\n")
            log.flush()
            state.log.append(stats)
            state.next_step, state.elapsed_s = step + 1, time.perf_counter() - t0
            due = ((job.checkpoint_every and state.next_step - saved_step >= job.checkpoint_every)
                   or (job.checkpoint_every_s and time.perf_counter() - saved_at >= job.checkpoint_every_s))
            if due and state.next_step < job.num_steps:
                save_train_state(out, job_fingerprint, trainer, state)
                saved_at, saved_step = time.perf_counter(), state.next_step
            if on_step:
                on_step(step, stats)


def evaluate_models(
    model_paths: dict[str, str], items: Sequence[Item], dataset: str, *, device: str = "cuda",
    max_new_tokens: int = 512, batch_size: int = 128, on_batch: Callable[[str, int], None] | None = None,
) -> dict[str, dict[str, Any]]:
    """``{"base": path, "trained": path}`` -> per model: accuracy, tokens per question, ...;
    ``on_batch(name, n)`` after each batch of ``n`` questions a model answered."""
    import gc

    import torch

    from workflows.drqa.training.evaluate import evaluate_solver
    from workflows.drqa.training.hf import load_model

    check_device(device)
    results: dict[str, dict[str, Any]] = {}
    for name, path in model_paths.items():
        dtype = torch.bfloat16 if device.startswith("cuda") else torch.float32
        model, tok = load_model(path, device=device, dtype=dtype)
        res = evaluate_solver(model, tok, items, get_spec(dataset), max_new_tokens=max_new_tokens,
                              batch_size=batch_size, device=device,
                              on_batch=partial(on_batch, name) if on_batch else None)
        results[name] = {**res.summary(), "model": path}
        del model
        gc.collect()
        if device.startswith("cuda"):
            torch.cuda.empty_cache()
    return results
