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
from pathlib import Path
from typing import Any

from orchestrator.llm.base import LLMClient
from workflows.drqa.datasets import Item, get_spec, load_dataset, load_items, split_items
from workflows.drqa.training.generate import GenerationConfig, generate_chains
from workflows.drqa.training.labels import LETTER_OF, Chain, Label, LabelConfig, label_chains
from workflows.drqa.training.manifest import write_manifest

__all__ = ["DataJob", "TrainJob", "build_training_data", "evaluate_models", "load_chains", "load_split", "train"]


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
        train_items, eval_items = split_items(items, eval_fraction)
        out[name] = (train_items, eval_items, str(path))
    return out


def _source_files(paths: Sequence[str]) -> list[Path]:
    files = []
    for p in map(Path, paths):
        files.append(p / "validate.jsonl" if p.is_dir() and (p / "validate.jsonl").exists() else p)
    return files


async def build_training_data(
    client: LLMClient, job: DataJob, *, on_progress: Callable[[int], None] | None = None
) -> Path:
    """Generate and label chains for the training split; returns the output folder."""
    out = Path(job.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    splits = _split_all(job.data_paths, job.eval_fraction)
    all_chains: list[Chain] = []
    stats: dict[str, Any] = {}
    for name, (train_items, _, _) in splits.items():
        spec = get_spec(name)
        items = train_items[: job.max_train_items] if job.max_train_items else train_items
        chains = await generate_chains(client, items, spec, job.generation,
                                       on_done=(lambda: on_progress(1)) if on_progress else None)
        labelled = label_chains(chains, spec.is_correct, job.labels)
        counts: dict[str, int] = defaultdict(int)
        for c in labelled:
            counts[f"{c.mode}/{c.label}"] += 1
        stats[name] = {"num_items": len(items), "num_chains": len(labelled), "labels": dict(counts)}
        all_chains += labelled
    chains_path = out / "chains.jsonl"
    chains_path.write_text("".join(json.dumps(c.to_dict()) + "\n" for c in all_chains))
    split_path = out / "split.json"
    split_path.write_text(json.dumps({
        name: {"source": src, "train_ids": [i.id for i in tr], "eval_ids": [i.id for i in ev]}
        for name, (tr, ev, src) in splits.items()
    }, indent=1) + "\n")
    write_manifest(out / "manifest.json", kind="drqa-chains", sources=_source_files(job.data_paths),
                   outputs=[chains_path, split_path], model=getattr(client, "model", "") or "",
                   params={"eval_fraction": job.eval_fraction, "max_train_items": job.max_train_items,
                           "generation": asdict(job.generation), "labels": asdict(job.labels)},
                   extra={"stats": stats})
    return out


def load_chains(data_dir: str | Path) -> list[Chain]:
    return [Chain.from_dict(json.loads(line)) for line in (Path(data_dir) / "chains.jsonl").read_text().splitlines()
            if line.strip()]


def load_split(data_dir: str | Path, dataset: str, part: str = "eval") -> list[Item]:
    """The held-out (``part="eval"``) or training items of ``dataset`` recorded by the data step."""
    split = json.loads((Path(data_dir) / "split.json").read_text())[dataset]
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


def train(job: TrainJob, *, on_step: Callable[[int, dict[str, Any]], None] | None = None) -> dict[str, Any]:
    """GRPO on the labelling task; saves an HF folder (bf16) with train_log.jsonl and manifest.json."""
    import torch

    from workflows.drqa.training.evaluate import evaluate_judge
    from workflows.drqa.training.grpo import GRPOConfig, GRPOTrainer
    from workflows.drqa.training.hf import format_chat, load_model
    from workflows.drqa.training.judge import judge_messages, label_reward

    rng = random.Random(job.seed)
    torch.manual_seed(job.seed)
    chains = [c for c in load_chains(job.data_dir) if c.label]
    rng.shuffle(chains)
    num_eval = int(len(chains) * job.judge_eval_fraction)
    eval_chains, train_chains = chains[:num_eval], chains[num_eval:]
    if not train_chains:
        raise ValueError(f"{job.data_dir}: no labelled chains to train on")
    cfg = GRPOConfig(**job.grpo)
    use_cuda = job.device.startswith("cuda")
    # fp32 master weights (bf16 AdamW updates at lr 1e-6 would round to nothing); bf16 autocast.
    model, tok = load_model(job.base_model, device=job.device, dtype=torch.float32)

    def prompt_of(c: Chain) -> str:
        cut = Chain(**{**c.to_dict(), "text": c.text[: job.max_chain_chars]})
        return format_chat(tok, judge_messages(cut))

    eval_prompts = [prompt_of(c) for c in eval_chains]
    eval_letters = [LETTER_OF[Label(c.label)] for c in eval_chains if c.label]
    judge_before = evaluate_judge(model, tok, eval_prompts, eval_letters, device=job.device) if eval_chains else None
    trainer = GRPOTrainer(model, tok, lambda text, gold: label_reward(text, gold), cfg, device=job.device,
                          autocast_dtype=torch.bfloat16 if use_cuda else None)
    out = Path(job.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    log_path = out / "train_log.jsonl"
    t0 = time.perf_counter()
    with log_path.open("w") as log:
        for step, batch in enumerate(_balanced_batches(train_chains, job.num_steps, cfg.prompts_per_step, rng)):
            stats = asdict(trainer.step([prompt_of(c) for c in batch], [c.label for c in batch]))
            stats.update(step=step, elapsed_s=round(time.perf_counter() - t0, 2))
            log.write(json.dumps(stats) + "\n")
            if on_step:
                on_step(step, stats)
    judge_after = evaluate_judge(model, tok, eval_prompts, eval_letters, device=job.device) if eval_chains else None
    model.to(torch.bfloat16).save_pretrained(out)
    tok.save_pretrained(out)
    summary = {"num_train_chains": len(train_chains), "num_eval_chains": len(eval_chains),
               "judge_accuracy_before": judge_before, "judge_accuracy_after": judge_after,
               "train_seconds": round(time.perf_counter() - t0, 1)}
    write_manifest(out / "manifest.json", kind="drqa-grpo-checkpoint",
                   sources=[Path(job.data_dir) / "chains.jsonl", Path(job.data_dir) / "manifest.json"],
                   outputs=[out], model=job.base_model,
                   params={**asdict(job), "grpo": asdict(cfg)}, extra={"summary": summary})
    return summary


def evaluate_models(
    model_paths: dict[str, str], items: Sequence[Item], dataset: str, *, device: str = "cuda",
    max_new_tokens: int = 512, batch_size: int = 128,
) -> dict[str, dict[str, Any]]:
    """``{"base": path, "trained": path}`` -> per model: accuracy, tokens per question, ..."""
    import gc

    import torch

    from workflows.drqa.training.evaluate import evaluate_solver
    from workflows.drqa.training.hf import load_model

    results: dict[str, dict[str, Any]] = {}
    for name, path in model_paths.items():
        dtype = torch.bfloat16 if device.startswith("cuda") else torch.float32
        model, tok = load_model(path, device=device, dtype=dtype)
        res = evaluate_solver(model, tok, items, get_spec(dataset), max_new_tokens=max_new_tokens,
                              batch_size=batch_size, device=device)
        results[name] = {**res.summary(), "model": path}
        del model
        gc.collect()
        if device.startswith("cuda"):
            torch.cuda.empty_cache()
    return results
