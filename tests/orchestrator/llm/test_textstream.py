"""Incremental detokenisation with stop strings (no model: a fake byte-level tokenizer)."""

from __future__ import annotations

from collections.abc import Sequence

from orchestrator.llm.textstream import IncrementalText


def _decode(ids: Sequence[int]) -> str:
    # Token ids are bytes: a multi-byte character spans several tokens, like byte-level BPE.
    return bytes(ids).decode("utf-8", errors="replace")


def _feed(text: str, stop: tuple[str, ...] = ()) -> tuple[list[str], IncrementalText]:
    stream = IncrementalText(_decode, stop)
    deltas = []
    for b in text.encode():
        deltas.append(stream.push(b))
        if stream.stopped:
            break
    deltas.append(stream.flush())
    return [d for d in deltas if d], stream


def test_partial_utf8_is_held_until_complete() -> None:
    deltas, stream = _feed("aé€b")
    assert "".join(deltas) == stream.text == "aé€b"
    assert all("\ufffd" not in d for d in deltas)


def test_stop_string_spanning_tokens_is_cut_and_never_emitted() -> None:
    deltas, stream = _feed("Thought: go\nObservation: x", stop=("\nObservation:",))
    assert stream.stopped and stream.text == "Thought: go"
    assert "".join(deltas) == "Thought: go"


def test_earliest_of_several_stops_wins_and_text_is_held_back_only_by_stop_length() -> None:
    stream = IncrementalText(_decode, ("STOP", "X"))
    emitted = "".join(stream.push(b) for b in b"abcdef")
    assert emitted == "abc"  # the last 3 characters could still start "STOP"
    deltas, stream = _feed("ab X cd STOP", stop=("STOP", "X"))
    assert stream.text == "ab " and "".join(deltas) == "ab "
