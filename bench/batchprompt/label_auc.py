"""Does the model tell the labels apart at all, one item per prompt and in batches? (CPU, no server)

For each task and prompt layout this scores every item by ``log p(first label) - log p(second
label)`` at the position where the model writes the item's answer, and reports the ROC AUC of that
score against the gold labels. The AUC needs no calibration and no threshold: 0.5 means the prompt
carries no information about the label, whatever the model's label bias. Accuracy after mean
calibration (threshold at the run's mean score, what ``calibration="mean"`` does) is reported too.

Layouts:

- ``ours`` at each ``--batch-sizes`` value: the product's wire format (:func:`compose_messages`:
  instructions, the numbered few-shot batch, the numbered items). Batch size 1 is the benchmark's
  SinglePrompt. Inside a batch the answers are read in order, each after ``[i] ``, with the
  earlier answers teacher-forced as the model's own choice (``yes (sure)``); this is what the
  constrained server run decodes, minus the model's own confidence marks.
- ``chat``: one item per prompt in plain chat turns: the task instructions as the system message,
  each few-shot example as a user turn answered by an assistant turn with the label word alone.
- ``turns`` at each batch size: the ``chat`` layout's system message and few-shot turns, then the
  batch as one user message of numbered items, answered ``[i] label`` per line (no confidence
  marks, no format paragraph).
- ``ours-turns`` at each batch size: the product's wire format with one change, each few-shot
  example as its own user turn (``[1] ...``) answered by its own assistant turn (``[1] yes (sure)``)
  instead of one numbered example batch.

Usage (Qwen2.5-Coder-0.5B-Instruct, the GGUF from ``../shared/gpu/models.txt``; about an hour
on 2 cores for the three tasks at 120 items)::

    python bench/batchprompt/label_auc.py --gguf qwen.gguf --tasks rte,boolq,qqp --limit 120

Writes ``bench/results/batchprompt/label-auc/<short commit>/label-auc.json`` (provenance, per-item scores)
and ``label-auc.png`` (AUC by batch size per task, the chat layout as a dashed line).
"""

from __future__ import annotations

import argparse
import random
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.common import provenance, pyplot, save_figure, write_json  # noqa: E402
from workflows.batchprompt.prompt import CONFIDENT, _render_answers, compose_messages, render_inputs  # noqa: E402
from workflows.batchprompt.tasks import Item, TaskSpec, load_builtin_items, load_task  # noqa: E402
from workflows.drqa.quota.signals import roc_auc  # noqa: E402


def chat_messages(task: TaskSpec, items: list[Item]) -> list[dict[str, str]]:
    """The ``chat`` layout (one item) or ``turns`` (several): instructions, few-shot examples as
    turns, then the item, or the items numbered in one user message."""
    words = " or ".join(label.display for label in task.labels)
    batched = " Several inputs come numbered; answer each on its own line as: [number] answer."
    batched = batched if len(items) > 1 else ""
    messages = [{"role": "system", "content": f"{task.instructions} Answer {words}.{batched}"}]
    for ex in task.examples:
        messages.append({"role": "user", "content": render_inputs(task, ex.inputs)})
        messages.append({"role": "assistant", "content": task.display_of(ex.label)})
    if len(items) == 1:
        messages.append({"role": "user", "content": render_inputs(task, items[0].inputs)})
    else:
        blocks = [f"[{n}] {render_inputs(task, it.inputs)}" for n, it in enumerate(items, start=1)]
        messages.append({"role": "user", "content": "\n\n".join(blocks)})
    return messages


class Scorer:
    """A causal LM on the CPU that reads label-token log-probabilities."""

    def __init__(self, model_dir: str | None, gguf: str | None, threads: int) -> None:
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        torch.set_num_threads(threads)
        if gguf:
            path = Path(gguf)
            self.tok = AutoTokenizer.from_pretrained(path.parent, gguf_file=path.name)
            self.model = AutoModelForCausalLM.from_pretrained(path.parent, gguf_file=path.name, dtype=torch.float32)
        else:
            self.tok = AutoTokenizer.from_pretrained(str(model_dir))
            self.model = AutoModelForCausalLM.from_pretrained(str(model_dir), dtype=torch.float32)
        self.model.eval()
        self.torch = torch

    def first_token(self, word: str) -> int:
        return int(self.tok.encode(word, add_special_tokens=False)[0])

    def _ids(self, text: str) -> Any:
        return self.tok(text, add_special_tokens=False, return_tensors="pt").input_ids

    def _step(self, text: str, cache: Any) -> tuple[Any, Any]:
        out = self.model(self._ids(text), past_key_values=cache, use_cache=True)
        return self.torch.log_softmax(out.logits[0, -1], -1), out.past_key_values

    def prompt_text(self, messages: list[dict[str, str]]) -> str:
        return str(self.tok.apply_chat_template(messages, tokenize=False, add_generation_prompt=True))

    def margins(self, prompt: str, answer_prefixes: list[str], first: int, second: int,
                words: tuple[str, str], mark: str = " (sure)") -> list[float]:
        """``log p(first) - log p(second)`` after each prefix, the argmax word teacher-forced between."""
        with self.torch.no_grad():
            logp, cache = self._step(prompt, None)
            scores: list[float] = []
            for i, prefix in enumerate(answer_prefixes):
                if i:
                    word = words[0] if scores[-1] > 0 else words[1]
                    logp, cache = self._step(f"{word}{mark}\n{prefix}", cache)
                elif prefix:
                    logp, cache = self._step(prefix, cache)
                scores.append(float(logp[first] - logp[second]))
        return scores


def score_layout(scorer: Scorer, task: TaskSpec, items: list[Item], layout: str, batch_size: int,
                 advance: Any) -> list[float]:
    words = (task.labels[0].display, task.labels[1].display)
    first, second = scorer.first_token(words[0]), scorer.first_token(words[1])
    scores: list[float] = []
    for start in range(0, len(items), batch_size):
        batch = items[start:start + batch_size]
        prefixes = [f"[{n}] " for n in range(1, len(batch) + 1)]
        if layout in ("ours", "ours-turns"):
            composed = compose_messages(task, [i.inputs for i in batch])
            messages = [{"role": m.role, "content": m.content} for m in composed]
            if layout == "ours-turns" and task.examples:
                turns = [m for ex in task.examples for m in (
                    {"role": "user", "content": compose_messages(task, [ex.inputs])[-1].content},
                    {"role": "assistant", "content": _render_answers(task, [(ex.label, ex.confident)])})]
                messages = [messages[0], *turns, messages[-1]]
            mark = f" ({CONFIDENT})"
        else:
            messages = chat_messages(task, batch)
            prefixes, mark = (prefixes if len(batch) > 1 else [""]), ""
        scores += scorer.margins(scorer.prompt_text(messages), prefixes, first, second, words, mark)
        advance(len(batch))
    return scores


def summarise(scores: list[float], gold: list[bool]) -> dict[str, Any]:
    """AUC of the score for the first label (None when the items hold one label only) and accuracy."""
    mean = sum(scores) / len(scores)
    pairs = list(zip(scores, gold, strict=True))
    # roc_auc ranks its "wrong" class (False) above the other: here the first label's items.
    auc = roc_auc(scores, [not g for g in gold])
    return {
        "auc": None if auc is None else round(auc, 4),
        "accuracy_mean_calibrated": round(sum((s > mean) == g for s, g in pairs) / len(gold), 4),
        "accuracy_uncalibrated": round(sum((s > 0) == g for s, g in pairs) / len(gold), 4),
        "first_label_share_uncalibrated": round(sum(s > 0 for s in scores) / len(scores), 4),
    }


_STYLES = {"ours": ("o", "-", "numbered batch"), "ours-turns": ("^", "--", "numbered, few-shot as turns"),
           "turns": ("s", ":", "chat turns, then the batch")}


def plot(rows: list[dict[str, Any]], path: Path) -> None:
    """AUC by items per prompt: one line per task and batched layout, the ``chat`` layout dashed."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(6.4, 4.0))
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for color, task in zip(colors, sorted({r["task"] for r in rows}), strict=False):
        for layout, (marker, style, what) in _STYLES.items():
            points = sorted((r["batch_size"], r["auc"]) for r in rows if r["task"] == task and r["layout"] == layout)
            if points:
                ax.plot([b for b, _ in points], [a for _, a in points], marker=marker, linestyle=style, color=color,
                        label=f"{task} ({what})")
        for r in rows:
            if r["task"] == task and r["layout"] == "chat" and r["auc"] is not None:
                ax.axhline(r["auc"], color=color, linestyle="--", linewidth=1, label=f"{task} one item, chat turns")
    ax.axhline(0.5, color="grey", linewidth=0.8)
    ax.set_xscale("log", base=2)
    ax.set_xlabel("items per prompt")
    ax.set_ylabel("ROC AUC of the label score (0.5 = no signal)")
    ax.legend(fontsize=7)
    save_figure(fig, path)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--gguf", help="a GGUF checkpoint (dequantised on load)")
    src.add_argument("--model-dir", help="a Hugging Face model folder")
    p.add_argument("--model-name", default="qwen2.5-coder-0.5b")
    p.add_argument("--data-dir", type=Path, default=ROOT.parent / "shared" / "data")
    p.add_argument("--tasks", type=lambda s: s.split(","), default=["rte", "boolq", "qqp"])
    p.add_argument("--batch-sizes", type=lambda s: [int(x) for x in s.split(",")], default=[1, 4, 16, 32])
    p.add_argument("--layouts", type=lambda s: s.split(","), default=["chat", "ours"],
                   help="chat, ours, ours-turns, turns")
    p.add_argument("--limit", type=int, default=120, help="items per task (a seeded sample of the paper's subset)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--out-dir", type=Path, default=ROOT / "bench" / "results" / "batchprompt" / "label-auc")
    args = p.parse_args(argv)
    from rich.progress import Progress

    scorer = Scorer(args.model_dir, args.gguf, args.threads)
    meta = provenance()
    out = args.out_dir / (meta["commit"][:7] + ("-dirty" if meta["commit"].endswith("-dirty") else ""))
    rows: list[dict[str, Any]] = []
    layouts = [("chat", 1)] * ("chat" in args.layouts) + [
        (name, b) for name in ("ours", "ours-turns", "turns") if name in args.layouts
        for b in args.batch_sizes if name != "turns" or b > 1]
    with Progress() as progress:
        for name in args.tasks:
            task = load_task(name)
            items = list(load_builtin_items(name, args.data_dir, subset=True).items)
            random.Random(args.seed).shuffle(items)
            items = items[: args.limit]
            gold = [item.gold == task.labels[0].value for item in items]
            for layout, bs in layouts:
                bar = progress.add_task(f"{name} {layout} bs {bs}", total=len(items))
                started = time.perf_counter()
                scores = score_layout(scorer, task, items, layout, bs, lambda n, b=bar: progress.advance(b, n))
                rows.append({"task": name, "layout": layout, "batch_size": bs, "num_items": len(items),
                             "first_label": task.labels[0].value, "first_label_rate": round(sum(gold) / len(gold), 4),
                             **summarise(scores, gold), "seconds": round(time.perf_counter() - started, 1),
                             "items": [{"key": it.key, "gold": it.gold, "score": round(s, 4)}
                                       for it, s in zip(items, scores, strict=True)]})
                write_json(out / "label-auc.json", {**meta, "model": args.model_name, "args": {
                    k: str(v) for k, v in vars(args).items()}, "rows": rows})
    plot(rows, out / "label-auc.png")
    for r in rows:
        auc = "n/a" if r["auc"] is None else f"{r['auc']:.3f}"
        print(f"{r['task']:6} {r['layout']:5} bs {r['batch_size']:>2}: AUC {auc}  "
              f"acc (mean-calibrated) {r['accuracy_mean_calibrated']:.3f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
