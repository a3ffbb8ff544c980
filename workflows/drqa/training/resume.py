"""What lets a killed training-pipeline step pick up where it stopped.

- ``quotaflow drqa data``: every finished request's chains go to ``chains.partial.jsonl`` (one
  line each, flushed as it completes, behind a header line with the job's fingerprint). Running
  the same command again sends only the requests without a line.
- ``quotaflow drqa train``: every ``checkpoint_every`` steps the policy, optimiser, random-number
  generator states and the log so far go to ``.resume.pt`` (written beside, then renamed over, so a
  kill while writing leaves the previous checkpoint). Running the same command again restores
  them and repeats nothing but the steps after the checkpoint, with the same samples: the model
  it saves is the one an uninterrupted run saves (bit for bit on the CPU, where the tests check
  it; on a GPU as far as its kernels are deterministic).

A fingerprint (sha-256 of the job's inputs and parameters) guards both: state left by another job
is refused with a clear error, never mixed in.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from orchestrator.errors import BadInputError
from workflows.drqa.training.labels import Chain
from workflows.drqa.training.manifest import write_atomic

__all__ = ["JOURNAL_NAME", "RESUME_NAME", "ChainJournal", "TrainState", "exclusive", "fingerprint",
           "load_train_state", "refuse_foreign", "save_train_state"]

JOURNAL_NAME = "chains.partial.jsonl"
RESUME_NAME = ".resume.pt"
_VERSION = 1


def fingerprint(obj: Any) -> str:
    """sha-256 of ``obj`` as canonical JSON."""
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()


@contextlib.contextmanager
def exclusive(folder: Path, what: str) -> Iterator[None]:
    """Hold ``folder/.lock`` (an advisory lock the kernel drops when the process dies) while a job
    writes there: a second job on the same folder is refused instead of interleaving with it."""
    import fcntl

    folder.mkdir(parents=True, exist_ok=True)
    with (folder / ".lock").open("a+") as f:
        try:
            fcntl.flock(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            f.seek(0)
            holder = f.read().strip() or "another process"
            raise BadInputError(f"--out {folder}", f"a folder no other running {what} job writes to",
                                f"held by {holder}") from None
        f.seek(0)
        f.truncate()
        f.write(f"pid {os.getpid()}")
        f.flush()
        try:
            yield
        finally:
            fcntl.flock(f.fileno(), fcntl.LOCK_UN)


def refuse_foreign(folder: Path, what: str) -> BadInputError:
    return BadInputError(str(folder), f"an empty folder or one this same {what} job wrote",
                         f"it holds the state of a {what} job with other inputs or settings; "
                         "pass --fresh to start over there, or choose another folder")


class ChainJournal:
    """``chains.partial.jsonl`` of a data job: one line per finished request, keyed."""

    def __init__(self, folder: Path, job_fingerprint: str) -> None:
        self.path = folder / JOURNAL_NAME
        self.fingerprint = job_fingerprint
        self._file: Any = None

    def open(self) -> dict[str, list[Chain]]:
        """The requests already done (key -> chains); opens the journal for appending. A torn last
        line (the process was killed while writing it), and any line that is not an entry, is cut
        off with what follows (those requests are sent again); a journal of another job is an
        error."""
        done: dict[str, list[Chain]] = {}
        good_bytes = 0
        if self.path.exists():
            raw = self.path.read_bytes()
            for line, end in _lines(raw):
                try:
                    entry = json.loads(line)
                    if good_bytes == 0:
                        header = (entry.get("v"), entry.get("fingerprint"))
                    else:
                        done[entry["key"]] = [Chain.from_dict(c) for c in entry["chains"]]
                except (ValueError, KeyError, TypeError, AttributeError):
                    break  # the torn tail: everything from here is rewritten
                if good_bytes == 0 and header != (_VERSION, self.fingerprint):
                    raise refuse_foreign(self.path.parent, "data")
                good_bytes = end
        self._file = self.path.open("r+b" if good_bytes else "wb")
        self._file.truncate(good_bytes)
        self._file.seek(good_bytes)
        if not good_bytes:
            self._write({"v": _VERSION, "fingerprint": self.fingerprint})
        return done

    def record(self, key: str, chains: list[Chain]) -> None:
        self._write({"key": key, "chains": [c.to_dict() for c in chains]})

    def _write(self, entry: dict[str, Any]) -> None:
        self._file.write((json.dumps(entry) + "\n").encode())
        self._file.flush()  # a killed process loses nothing written; os.fsync in close()

    def close(self) -> None:
        if self._file is not None:
            with contextlib.suppress(OSError):
                os.fsync(self._file.fileno())
            self._file.close()
            self._file = None

    def discard(self) -> None:
        self.close()
        self.path.unlink(missing_ok=True)


def _lines(raw: bytes) -> Iterator[tuple[bytes, int]]:
    """Complete lines of ``raw`` (ending in a newline) with the offset just past each."""
    start = 0
    while (nl := raw.find(b"\n", start)) != -1:
        yield raw[start:nl], nl + 1
        start = nl + 1


@dataclass
class TrainState:
    """Where a GRPO run is: the next step to take and what the steps before it logged."""

    next_step: int = 0
    elapsed_s: float = 0.0
    log: list[dict[str, Any]] = field(default_factory=list)
    judge_before: float | None = None


def save_train_state(folder: Path, job_fingerprint: str, trainer: Any, state: TrainState) -> None:
    """Checkpoint ``trainer`` (policy, optimiser, RNG states) and ``state`` to ``folder/.resume.pt``."""
    import torch

    payload = {
        "v": _VERSION,
        "fingerprint": job_fingerprint,
        "policy": trainer.policy.state_dict(),
        "optimizer": trainer.optimizer.state_dict(),
        "cpu_rng": torch.get_rng_state(),
        "cuda_rng": torch.cuda.get_rng_state_all() if trainer.device.type == "cuda" else [],
        "next_step": state.next_step,
        "elapsed_s": state.elapsed_s,
        "log": json.dumps(state.log),
        "judge_before": state.judge_before,
    }
    write_atomic(folder / RESUME_NAME, lambda f: torch.save(payload, f))


def load_train_state(folder: Path, job_fingerprint: str, trainer: Any) -> TrainState | None:
    """Restore ``trainer`` from ``folder/.resume.pt`` and return where it was; None without one."""
    import torch

    for stale in folder.glob(f".{RESUME_NAME}.*"):
        stale.unlink(missing_ok=True)  # a checkpoint write_atomic was writing when the process died
    target = folder / RESUME_NAME
    if not target.exists():
        return None
    try:
        payload = torch.load(target, map_location=trainer.device, weights_only=True)
    except Exception as exc:  # torch raises RuntimeError, EOFError, pickle errors for a damaged file
        raise BadInputError(str(target), "a checkpoint this job wrote",
                            f"it cannot be read ({type(exc).__name__}); pass --fresh to start over") from None
    if not isinstance(payload, dict) or payload.get("v") != _VERSION or payload.get("fingerprint") != job_fingerprint:
        raise refuse_foreign(folder, "train")
    trainer.policy.load_state_dict(payload["policy"])
    trainer.optimizer.load_state_dict(payload["optimizer"])
    torch.set_rng_state(payload["cpu_rng"].cpu())
    if payload["cuda_rng"] and trainer.device.type == "cuda":
        torch.cuda.set_rng_state_all([s.cpu() for s in payload["cuda_rng"]])
    return TrainState(next_step=int(payload["next_step"]), elapsed_s=float(payload["elapsed_s"]),
                      log=json.loads(payload["log"]), judge_before=payload["judge_before"])
