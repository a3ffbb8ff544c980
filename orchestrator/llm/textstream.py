"""Token ids to text deltas, with stop strings: the part of local decoding that needs no model.

Pure: it takes the tokenizer's ``decode`` as a function. Deltas are safe to hand out: a partial
UTF-8 character is held until it completes, and the last ``len(longest stop) - 1`` characters are
held until they can no longer start a stop string, so the concatenated deltas always equal the
final text (streaming and non-streaming agree).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence


class IncrementalText:
    """Feeds generated token ids one at a time; ``text`` is the reply so far, cut at a stop string."""

    def __init__(self, decode: Callable[[Sequence[int]], str], stop: Sequence[str] = ()) -> None:
        self._decode = decode
        self._stop = tuple(s for s in stop if s)
        self._hold = max((len(s) for s in self._stop), default=1) - 1
        self._ids: list[int] = []
        self._prefix = 0  # ids[_prefix:_read] were decoded last time, as context for the next piece
        self._read = 0
        self._emitted = 0
        self.text = ""
        self.stopped = False
        """True once a stop string appeared; ``text`` ends just before it."""

    def push(self, token_id: int) -> str:
        """Add one token; return the text that can be handed out now (often empty)."""
        self._ids.append(token_id)
        before = self._decode(self._ids[self._prefix:self._read])
        after = self._decode(self._ids[self._prefix:])
        if len(after) <= len(before) or after.endswith("\ufffd"):
            return ""
        new = after[len(before):]
        self._prefix, self._read = self._read, len(self._ids)
        search_from = max(0, len(self.text) - self._hold)
        self.text += new
        cut = min((i for i in (self.text.find(s, search_from) for s in self._stop) if i >= 0), default=-1)
        if cut >= 0:
            self.text = self.text[:cut]
            self.stopped = True
            return self.flush()
        return self._take(len(self.text) - self._hold)

    def flush(self) -> str:
        """Everything not handed out yet (call once generation ended)."""
        return self._take(len(self.text))

    def _take(self, upto: int) -> str:
        if upto <= self._emitted:
            return ""
        piece = self.text[self._emitted:upto]
        self._emitted = upto
        return piece
