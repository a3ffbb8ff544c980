"""What every benchmark shares: where a result came from, writing it, and drawing it.

Every result file under ``bench/results/`` starts with ``commit``, ``machine`` and ``date``: a
benchmark spreads :func:`provenance` first into its payload and writes it with :func:`write_json`.
They come from :mod:`orchestrator.provenance`, the one implementation, which training manifests use
too. Plots go through :func:`pyplot`, so matplotlib is imported only when a figure is drawn (GPU
images may lack it; the JSON has the numbers).
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Collection
from pathlib import Path
from types import ModuleType
from typing import Any

from orchestrator.provenance import (
    machine_description,
    machine_details,
    package_versions,
    source_commit,
    utc_now,
)

__all__ = [
    "machine_details",
    "package_versions",
    "provenance",
    "pyplot",
    "save_figure",
    "write_json",
]


def provenance(*, commit: str = "", gpu: str | None = None) -> dict[str, str]:
    """``commit`` (HEAD, ``-dirty`` when tracked files changed; ``commit`` wins where given, e.g. a
    GPU copy of the tree without ``.git``), ``machine`` (GPU, CPU cores, architecture, OS; ``gpu``
    names the GPU where the process that measured is not this one) and the UTC ``date``."""
    return {"commit": commit or source_commit(), "machine": machine_description(gpu), "date": utc_now()}


def write_json(path: str | Path, payload: Any, *, indent: int = 2) -> Path:
    """Write ``payload`` as JSON (ending in a newline) through a temporary file, so a benchmark
    killed by its time limit never leaves a half-written result."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(target.name + ".tmp")
    tmp.write_text(json.dumps(payload, indent=indent) + "\n")
    tmp.replace(target)
    return target


def pyplot() -> ModuleType:
    """``matplotlib.pyplot`` on the file-only Agg backend (imported on first use)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save_figure(fig: Any, path: str | Path, *, dpi: int = 120) -> Path:
    """Lay out, save and close a figure."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(target, dpi=dpi)
    pyplot().close(fig)
    return target


def named_paths(text: str, names: Collection[str]) -> dict[str, str]:
    """``gsm8k,math=/data/math/test.jsonl``: each dataset ``text`` names (one of ``names``), in
    order, with the file or folder given after ``=`` ("" where none is); an argparse type."""
    out = {}
    for part in (x.strip() for x in text.split(",") if x.strip()):
        name, _, path = (x.strip() for x in part.partition("="))
        if name not in names:
            raise argparse.ArgumentTypeError(f"expected NAME[=PATH] with NAME one of {', '.join(names)}, "
                                             f"got {part!r}")
        out[name] = path
    return out
