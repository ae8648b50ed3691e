"""A compact reader of SentencePiece-style BPE tokenizers (Gemma's), for the device runtime.

The `tokenizers` library holds a vocabulary as two hash maps of owned strings and its merges as a third: Gemma 3's
trimmed tokenizer (181,819 pieces, 399,052 merges) costs 46 MB of resident memory that way, more than any graph
but the decoder. `CompactBPE` holds the same tokenizer in flat arrays: every piece in one string with its
offsets, the merges as sorted integer keys (left id × vocabulary size + right id) with their ranks and results,
and a table from a character to its piece. It encodes and decodes exactly as `tokenizers` does for the pipelines
it accepts (`CompactBPE.unsupported` says why it does not take one): a word-marker normalizer (" " -> "▁"), an
optional split on a plain string, a BPE model with byte fallback, the decoder "▁" -> " ", byte fallback, fuse;
added tokens that are not special are split out of the text first (leftmost, longest; the normalized ones
after normalizing); special ones are never read from text (`encode_special_tokens`: a user typing "<nexa_0>"
gets plain text), only written by id.

It knows nothing of models or prompts; it offers the part of `tokenizers.Tokenizer` the runtime uses, and only
with `add_special_tokens=False` (the runtime places every control token by id). Python, with numpy only to sort
the merges at load: a request's text is a few dozen characters, encoded in well under a millisecond.
"""

from __future__ import annotations

import heapq
import json
import re
from array import array
from bisect import bisect_left
from dataclasses import dataclass
from pathlib import Path

WORD_MARKER = "\u2581"
_SPLIT_BEHAVIORS = {"MergedWithPrevious", "MergedWithNext", "Isolated", "Removed"}


@dataclass(frozen=True)
class Encoding:
    """What `encode` returns: the ids (as `tokenizers.Encoding.ids`)."""
    ids: list[int]


class CompactBPE:
    """A SentencePiece-style BPE tokenizer.json held in flat arrays (see the module docstring)."""

    def __init__(self, data: dict):
        reason = self.unsupported(data)
        if reason:
            raise ValueError(f"not a SentencePiece-style BPE tokenizer this reader takes: {reason}")
        model = data["model"]
        vocab: dict[str, int] = model["vocab"]
        self.vocab_size = max(vocab.values()) + 1
        pieces = [""] * self.vocab_size
        for piece, i in vocab.items():
            pieces[i] = piece
        added = {t["id"]: t for t in data.get("added_tokens", [])}
        self.size = max(self.vocab_size, max(added, default=-1) + 1)
        self.special = frozenset(i for i, t in added.items() if t["special"])
        # an added token is found in the text as written, or normalized where it says so (and tokenizers then
        # names it so too)
        written = {i: t["content"].replace(" ", WORD_MARKER) if t["normalized"] else t["content"]
                   for i, t in added.items()}
        for i in added:  # added tokens past the vocabulary (<nexa_k>) are pieces of their own
            if i >= self.vocab_size:
                pieces.extend([""] * (i + 1 - len(pieces)))
                pieces[i] = written[i]
        self.blob = "".join(pieces)
        self.offsets = array("q", [0])
        for piece in pieces:
            self.offsets.append(self.offsets[-1] + len(piece))
        # tokenizers finds added tokens leftmost-longest, those read as written in the raw text and then the
        # normalized ones in the normalized rest, special ones too, and leaves a special one's text as text (so
        # it hides any plain added token inside it)
        self.added_ids = {written[i]: i for i in added if i not in self.special}
        for normalized in (False, True):
            found = [written[i] for i, t in added.items() if t["normalized"] == normalized]
            plain = [w for w in found if w in self.added_ids]
            found = [w for w in found if w in self.added_ids or _may_hide(w, plain)]
            setattr(self, "normalized_added" if normalized else "raw_added", _longest_first(found))
        self.chars = array("i", [-1]) * (max((ord(p) for p in vocab if len(p) == 1), default=0) + 1)
        for piece, i in vocab.items():
            if len(piece) == 1:
                self.chars[ord(piece)] = i
        self.bytes = [vocab[f"<0x{b:02X}>"] for b in range(256)]
        self.byte_of = {i: b for b, i in enumerate(self.bytes)}
        self._read_merges(model["merges"], vocab)
        split = data.get("pre_tokenizer")
        self.split = (split["pattern"]["String"], split["behavior"]) if split else None  # on normalized text

    def _read_merges(self, merges: list, vocab: dict[str, int]) -> None:
        import numpy as np

        pairs = [merge.split(" ", 1) if isinstance(merge, str) else merge for merge in merges]
        left = np.array([vocab[a] for a, _ in pairs], np.int64)
        right = np.array([vocab[b] for _, b in pairs], np.int64)
        result = np.array([vocab[a + b] for a, b in pairs], np.int32)
        keys = left * self.size + right
        order = np.argsort(keys, kind="stable")
        last = np.append(keys[order][1:] != keys[order][:-1], True)  # a pair listed twice: its last rank, as
        order = order[last]  # tokenizers' map keeps it
        self.merge_keys = array("q", keys[order].tobytes())  # (left id × size + right id), sorted
        self.merge_ranks = array("i", order.astype(np.int32).tobytes())  # the merge's place in the file
        self.merge_results = array("i", result[order].tobytes())

    @staticmethod
    def unsupported(data: dict) -> str | None:
        """Why this reader would not encode or decode `data` (a tokenizer.json) exactly as `tokenizers`; None when
        it would."""
        model = data.get("model") or {}
        if model.get("type") != "BPE" or not model.get("byte_fallback"):
            return f"the model is {model.get('type')}{'' if model.get('byte_fallback') else ' without byte fallback'}"
        if model.get("dropout") or model.get("continuing_subword_prefix") or model.get("end_of_word_suffix") \
                or model.get("ignore_merges"):
            return "the BPE model uses dropout, a subword prefix or suffix, or ignore_merges"
        vocab = model.get("vocab") or {}
        if not isinstance(vocab, dict) or not isinstance(model.get("merges"), list):
            return "the BPE model has no vocabulary map or merge list"
        if any(f"<0x{b:02X}>" not in vocab for b in range(256)):
            return "a byte-fallback piece <0x00>..<0xFF> is missing"
        if data.get("normalizer") != {"type": "Replace", "pattern": {"String": " "}, "content": WORD_MARKER}:
            return "the normalizer is not the word marker's Replace(' ', '▁')"
        split = data.get("pre_tokenizer")
        if split is not None and not (split.get("type") == "Split" and "String" in split.get("pattern", {})
                                      and split.get("behavior") in _SPLIT_BEHAVIORS and not split.get("invert")):
            return "the pre-tokenizer is not a split on a plain string"
        decoders = [{"type": "Replace", "pattern": {"String": WORD_MARKER}, "content": " "},
                    {"type": "ByteFallback"}, {"type": "Fuse"}]
        if data.get("decoder") != {"type": "Sequence", "decoders": decoders}:
            return "the decoder is not Replace('▁', ' '), ByteFallback, Fuse"
        for t in data.get("added_tokens", []):
            if not {"id", "content", "special", "normalized"} <= set(t):
                return f"added token {t!r} lacks its id, content or flags"
            if t.get("single_word") or t.get("lstrip") or t.get("rstrip"):
                return f"added token {t['content']!r} is single-word or stripped"
        return None

    @classmethod
    def from_file(cls, path: str | Path) -> CompactBPE:
        with open(path, encoding="utf-8") as f:
            return cls(json.load(f))

    # -- the part of tokenizers.Tokenizer the runtime uses -------------------------------------------------------
    @property
    def encode_special_tokens(self) -> bool:
        return True  # special tokens are never read from text

    def get_vocab_size(self, with_added_tokens: bool = True) -> int:
        return self.size if with_added_tokens else self.vocab_size

    def id_to_token(self, i: int) -> str | None:
        return self.blob[self.offsets[i]:self.offsets[i + 1]] if 0 <= i < self.size else None

    def encode(self, text: str, add_special_tokens: bool = False) -> Encoding:
        if add_special_tokens:
            raise ValueError("CompactBPE places no special tokens: the caller adds them by id")
        return Encoding([i for part, added in self._split_added(text, self.raw_added)
                         for i in ([added] if part is None else self._encode_text(part))])

    def encode_batch(self, texts: list[str], add_special_tokens: bool = False) -> list[Encoding]:
        return [self.encode(t, add_special_tokens) for t in texts]

    def decode(self, ids: list[int], skip_special_tokens: bool = True) -> str:
        out: list[str] = []
        pending = bytearray()
        for i in ids:
            if skip_special_tokens and i in self.special:
                continue
            if i in self.byte_of:
                pending.append(self.byte_of[i])
                continue
            piece = self.id_to_token(i)
            if piece is None:
                continue  # as tokenizers: an unknown id writes nothing
            if pending:
                out.append(_bytes_text(pending))
                pending = bytearray()
            out.append(piece.replace(WORD_MARKER, " "))
        if pending:
            out.append(_bytes_text(pending))
        return "".join(out)

    # -- encoding ------------------------------------------------------------------------------------------------
    def _split_added(self, text: str, pattern: re.Pattern | None) -> list[tuple[str | None, int]]:
        """`text` as (text, -1) parts and (None, id) added tokens that `pattern` finds in it."""
        parts, start = [], 0
        if pattern is not None:
            for match in pattern.finditer(text):
                if match.group() in self.added_ids:  # a special token's text stays text
                    parts += [(text[start:match.start()], -1), (None, self.added_ids[match.group()])]
                    start = match.end()
        return parts + [(text[start:], -1)]

    def _encode_text(self, text: str) -> list[int]:
        """Normalize, split out normalized added tokens, pre-tokenize, BPE."""
        if not text:
            return []
        return [i for part, added in self._split_added(text.replace(" ", WORD_MARKER), self.normalized_added)
                for i in ([added] if part is None else
                          [j for word in self._words(part) for j in self._bpe(word)])]

    def _words(self, text: str) -> list[str]:
        if self.split is None:
            return [text]
        sep, behavior = self.split
        if not sep or sep not in text:
            return [text]
        parts = text.split(sep)  # text between separators; a separator follows every part but the last
        words: list[str] = []
        if behavior == "MergedWithPrevious":
            words = [p + sep for p in parts[:-1]] + [parts[-1]]
        elif behavior == "MergedWithNext":
            words = [parts[0]] + [sep + p for p in parts[1:]]
        elif behavior == "Isolated":
            for p in parts[:-1]:
                words += [p, sep]
            words.append(parts[-1])
        else:  # Removed
            words = parts
        return [w for w in words if w]

    def _pair(self, left: int, right: int) -> tuple[int, int] | None:
        """(rank, result) of the merge of `left` and `right`, None where there is none."""
        key = left * self.size + right
        k = bisect_left(self.merge_keys, key)
        if k < len(self.merge_keys) and self.merge_keys[k] == key:
            return self.merge_ranks[k], self.merge_results[k]
        return None

    def _bpe(self, word: str) -> list[int]:
        """The pieces of one word, merged as `tokenizers`' BPE does: always the pair of lowest rank, the leftmost
        of equal ones, until no adjacent pair has a merge."""
        symbols: list[int] = []
        for ch in word:
            c = ord(ch)
            i = self.chars[c] if c < len(self.chars) else -1
            if i >= 0:
                symbols.append(i)
            else:
                symbols.extend(self.bytes[b] for b in ch.encode("utf-8"))
        n = len(symbols)
        if n < 2:
            return symbols
        following = list(range(1, n)) + [-1]
        preceding = list(range(-1, n - 1))
        alive = [True] * n
        heap = []
        for pos in range(n - 1):
            merge = self._pair(symbols[pos], symbols[pos + 1])
            if merge:
                heap.append((merge[0], pos, merge[1]))
        heapq.heapify(heap)
        while heap:
            rank, pos, result = heapq.heappop(heap)
            right = following[pos]
            if not alive[pos] or right < 0 or self._pair(symbols[pos], symbols[right]) != (rank, result):
                continue  # this pair was changed by an earlier merge
            symbols[pos] = result
            alive[right] = False
            following[pos] = following[right]
            if following[pos] >= 0:
                preceding[following[pos]] = pos
            for a, b in ((preceding[pos], pos), (pos, following[pos])):
                if a >= 0 and b >= 0:
                    merge = self._pair(symbols[a], symbols[b])
                    if merge:
                        heapq.heappush(heap, (merge[0], a, merge[1]))
        return [s for s, keep in zip(symbols, alive) if keep]


def _may_hide(special: str, plain: list[str]) -> bool:
    """Whether a match of `special` could cover the start of a match of one of `plain`: some end of it is the start
    of one, or holds one. (Gemma's 6,262 special tokens hide none of its 135 plain ones.)"""
    starts = {p[0] for p in plain}
    return any(special[k] in starts and any(p.startswith(special[k:]) or special[k:].startswith(p) for p in plain)
               for k in range(len(special)))


def _longest_first(contents: list[str]) -> re.Pattern | None:
    """A pattern that finds `contents` leftmost, the longest of those starting at the same place."""
    return re.compile("|".join(map(re.escape, sorted(contents, key=len, reverse=True)))) if contents else None


def _bytes_text(data: bytearray) -> str:
    """Byte-fallback pieces' bytes as text: valid UTF-8 as it reads, else one U+FFFD a byte (as `tokenizers`)."""
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return "\ufffd" * len(data)


def load_tokenizer(path: str | Path):
    """The tokenizer of an exported model: `CompactBPE` where it reads the file exactly, else `tokenizers`'
    own. Either way special tokens are never read from text."""
    text = Path(path).read_text(encoding="utf-8")
    if re.search(r'"byte_fallback"\s*:\s*true', text):  # else no CompactBPE (SmolLM2's byte-level BPE): one parse
        data = json.loads(text)
        if CompactBPE.unsupported(data) is None:
            return CompactBPE(data)
        del data
    from tokenizers import Tokenizer

    tokenizer = Tokenizer.from_str(text)
    tokenizer.encode_special_tokens = True
    return tokenizer
