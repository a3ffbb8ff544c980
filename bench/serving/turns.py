"""Where each program's time went, configuration beside configuration, from the replay's per-turn
timings (``turn_timings``, recorded since ``025dd56``).

For every program of one level, and for each configuration's child file given: its JCT split into
queue (waiting to be scheduled), prefill (first scheduling to first token, and any wait after a
preemption), decode (first to last token), frontend (the rest of each request's wall time) and
between turns (tool waits and what lies outside the requests), summed over its turns; then, against
the first file, the ratio of JCTs and which part grew. A same-session pair is the intended input
(``--configs stock,fixed_ttl`` run one after another on one GPU: bench/gpu/README.md)::

    python -m bench.serving.turns results/serving/children/stock.json \\
        results/serving/children/fixed_ttl.json --level 1 --out-dir bench/results/serving/pair-C

writes ``turns-level-1.json`` (the splits and the comparison) and ``turns-level-1.png`` (stacked
bars for the programs whose JCT grew most), and prints the table.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.common import pyplot, save_figure, write_json  # noqa: E402
from bench.serving.replay import TURN_PHASES, levels_by_index  # noqa: E402

PARTS = ("queue_s", "prefill_s", "decode_s", "frontend_s", "between_turns_s")


def split(program: dict[str, Any]) -> dict[str, float] | None:
    """A program record's JCT in ``PARTS`` (None when its turns were not timed by the engine)."""
    rows = program.get("turn_timings") or []
    if not rows or any(len(row) != len(TURN_PHASES) for row in rows):
        return None
    wall, queue, prefill, decode = (sum(row[k] for row in rows) for k in range(len(TURN_PHASES)))
    parts = {"queue_s": queue, "prefill_s": prefill, "decode_s": decode,
             "frontend_s": max(0.0, wall - queue - prefill - decode),
             "between_turns_s": max(0.0, program["jct_s"] - wall)}
    return {name: round(value, 3) for name, value in parts.items()}


def compare(children: list[dict[str, Any]], level_index: int) -> dict[str, Any]:
    """Per program of level ``level_index``: each child's JCT and split, and against the first
    child the JCT ratio and the part whose seconds grew most."""
    configs = [child["config"] for child in children]
    levels = [levels_by_index(child).get(level_index) for child in children]
    if any(level is None for level in levels):
        missing = [c for c, level in zip(configs, levels, strict=True) if level is None]
        raise SystemExit(f"level {level_index} is not in the files of {', '.join(missing)}")
    by_config = [{p["program_id"]: p for p in level["programs"]} for level in levels]  # type: ignore[index]
    programs = []
    for pid, base in by_config[0].items():
        entry: dict[str, Any] = {"program_id": pid, "source": base.get("source"), "turns": base.get("turns")}
        for config, records in zip(configs, by_config, strict=True):
            record = records.get(pid)
            if record is None:
                continue
            entry[config] = {"jct_s": round(record["jct_s"], 3), "done": record["done"], "split": split(record)}
        first = entry[configs[0]]
        for config in configs[1:]:
            other = entry.get(config)
            if other is None or not first["jct_s"]:
                continue
            other["jct_ratio"] = round(other["jct_s"] / first["jct_s"], 4)
            if first["split"] and other["split"]:
                growth = {name: other["split"][name] - first["split"][name] for name in PARTS}
                other["grew_most"] = max(growth, key=lambda name: growth[name])
                other["growth_s"] = {name: round(value, 3) for name, value in growth.items()}
        programs.append(entry)
    return {"configs": configs, "level_index": level_index,
            "commits": [child.get("commit") for child in children], "programs": programs}


def plot(result: dict[str, Any], path: Path, most: int = 8) -> Path:
    """Stacked bars of ``PARTS`` per configuration for the ``most`` programs whose JCT grew most."""
    plt = pyplot()
    configs = result["configs"]
    ranked = sorted(result["programs"], key=lambda p: -max((p.get(c, {}).get("jct_ratio") or 0.0)
                                                           for c in configs[1:]) if len(configs) > 1 else 0.0)
    chosen = [p for p in ranked if all((p.get(c) or {}).get("split") for c in configs)][:most]
    fig, ax = plt.subplots(figsize=(max(6.0, 1.2 * len(chosen) * len(configs)), 4.5))
    width = 0.8 / max(1, len(configs))
    colors = dict(zip(PARTS, ("tab:red", "tab:orange", "tab:blue", "tab:gray", "tab:green"), strict=True))
    for k, config in enumerate(configs):
        bottoms = [0.0] * len(chosen)
        xs = [i + k * width for i in range(len(chosen))]
        for name in PARTS:
            values = [p[config]["split"][name] for p in chosen]
            ax.bar(xs, values, width, bottom=bottoms, color=colors[name], edgecolor="black", linewidth=0.3,
                   label=name.removesuffix("_s").replace("_", " ") if k == 0 else None)
            bottoms = [b + v for b, v in zip(bottoms, values, strict=True)]
        for x, p in zip(xs, chosen, strict=True):
            ax.text(x, p[config]["jct_s"], config, rotation=90, ha="center", va="bottom", fontsize=7)
    tallest = max((p[c]["jct_s"] for p in chosen for c in configs), default=1.0)
    ax.set_ylim(0, tallest * 1.15)  # room for the labels above the bars
    ax.set_xticks([i + width * (len(configs) - 1) / 2 for i in range(len(chosen))])
    ax.set_xticklabels([p["program_id"].split("-", 2)[-1] for p in chosen], rotation=30, ha="right", fontsize=8)
    ax.set_ylabel("seconds of the program's JCT")
    ax.set_title(f"level {result['level_index']}: where the time went ({' vs '.join(configs)})")
    ax.legend(fontsize=8)
    return save_figure(fig, path)


def table(result: dict[str, Any]) -> str:
    configs = result["configs"]
    lines = ["program".ljust(28) + "".join(f"{c[:12]:>14}" for c in configs) + "  grew most (s)"]
    for p in result["programs"]:
        cells = "".join(f"{(p.get(c) or {}).get('jct_s', float('nan')):>14.1f}" for c in configs)
        notes = [f"{c}: {p[c]['grew_most']} +{p[c]['growth_s'][p[c]['grew_most']]:.1f}"
                 for c in configs[1:] if (p.get(c) or {}).get("grew_most") and p[c]["growth_s"][p[c]["grew_most"]] > 0]
        lines.append(f"{p['program_id'][:28]:<28}{cells}  {'; '.join(notes)}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("children", nargs="+", help="the replay's child files (children/<config>.json), the reference first")
    p.add_argument("--level", type=int, default=None, help="plan index of the level (default: the first file's first)")
    p.add_argument("--out-dir", default=None, help="where turns-level-N.json/.png go (default: print only)")
    args = p.parse_args(argv)
    children = [json.loads(Path(path).read_text()) for path in args.children]
    level = args.level if args.level is not None else min(levels_by_index(children[0]))
    result = compare(children, level)
    print(table(result))
    if args.out_dir:
        out = Path(args.out_dir)
        write_json(out / f"turns-level-{level}.json", result)
        plot(result, out / f"turns-level-{level}.png")
        print(f"wrote {out / f'turns-level-{level}.json'} and .png")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
