"""Trim an LM's vocabulary, at export, to the scripts the model reads and writes (`octopus export --vocab en,zh`).

A multilingual LM carries rows for every script it was trained on: Gemma 3's 262,144 tokens make 168M of its
268M weights, in its output layer and its embedding table. An agent that answers English and Chinese never
writes a Cyrillic or Devanagari token. Trimming keeps the tokens whose every character is in the chosen scripts
(ASCII, whitespace and the tokenizer's word marker always), the byte-fallback tokens, the unknown token and
the special tokens the model uses; it drops the merges that make anything else, and renumbers what is left.

It is exact for text in those scripts. BPE builds a token only from smaller tokens of the same characters, so
every merge such a text goes through has its parts and its result kept, and the trimmed tokenizer applies the
same merges in the same order. Any other character is spelled in byte-fallback tokens, so no text is refused.

It works on SentencePiece-style BPE tokenizers (a vocabulary of text pieces with byte fallback, as Gemma's).
A byte-level BPE vocabulary (SmolLM2's) spells a Chinese character across tokens that are not text on their
own, so it cannot be cut by script; it is also small already (49,152 tokens).
"""

from __future__ import annotations

import json
import re

from octopus.bpe import WORD_MARKER  # SentencePiece's "▁"

_ALWAYS = [(0x20, 0x7E)]  # printable ASCII: digits, addresses and code appear in every language's requests
_ALWAYS_CHARS = {"\t", "\n", "\r", WORD_MARKER}
SCRIPTS: dict[str, list[tuple[int, int]]] = {
    # Latin-1 Supplement and Latin Extended-A (café, José), general punctuation (’ “ ” — …), currency signs
    "en": [(0x00A0, 0x017F), (0x2000, 0x206F), (0x20A0, 0x20CF)],
    # CJK unified ideographs and extension A, compatibility ideographs, CJK symbols and punctuation (、。《》),
    # full-width forms (，！？), and the general punctuation Chinese text uses (“ ” …)
    "zh": [(0x4E00, 0x9FFF), (0x3400, 0x4DBF), (0xF900, 0xFAFF), (0x3000, 0x303F), (0xFF00, 0xFFEF),
           (0x2000, 0x206F)],
}
_BYTE_TOKEN = re.compile(r"<0x[0-9A-Fa-f]{2}>")


class VocabularyError(ValueError):
    """A tokenizer this trimming cannot cut exactly, or a script it does not know."""


def parse_scripts(text: str) -> tuple[str, ...]:
    """"en,zh" -> ("en", "zh"), each one a key of SCRIPTS."""
    names = tuple(s.strip() for s in text.split(",") if s.strip())
    unknown = [s for s in names if s not in SCRIPTS]
    if not names or unknown:
        raise VocabularyError(f"unknown vocabulary script(s) {unknown or text!r}: choose from {', '.join(SCRIPTS)}")
    return names


def _written_in(scripts: tuple[str, ...]):
    ranges = _ALWAYS + [r for s in scripts for r in SCRIPTS[s]]

    def written(piece: str) -> bool:
        return all(ch in _ALWAYS_CHARS or any(lo <= ord(ch) <= hi for lo, hi in ranges) for ch in piece)
    return written


def _check_trimmable(tokenizer: dict) -> None:
    model = tokenizer.get("model", {})
    components = [tokenizer.get(k) or {} for k in ("pre_tokenizer", "decoder", "normalizer")]
    byte_level = '"ByteLevel"' in json.dumps(components)
    if model.get("type") != "BPE" or not model.get("byte_fallback") or byte_level:
        raise VocabularyError("vocabulary trimming needs a SentencePiece-style BPE tokenizer with byte fallback "
                              "(as Gemma's); this one is "
                              f"{'byte-level ' if byte_level else ''}{model.get('type')}: export without --vocab")


def kept_ids(tokenizer: dict, scripts: tuple[str, ...], required: set[int]) -> list[int]:
    """The ids of a tokenizer.json (as a dict) that a vocabulary cut to `scripts` keeps, in their old order.
    `required`: ids kept whatever they are (the model's control tokens)."""
    _check_trimmable(tokenizer)
    written = _written_in(scripts)
    model = tokenizer["model"]
    keep = {i for piece, i in model["vocab"].items() if written(piece)}
    keep |= {t["id"] for t in tokenizer.get("added_tokens", []) if not t["special"] and written(t["content"])}
    return sorted(keep | _always_kept(tokenizer, required))


def _always_kept(tokenizer: dict, required: set[int]) -> set[int]:
    """The byte-fallback pieces, the unknown token, the post-processor's special tokens and `required`."""
    model = tokenizer["model"]
    keep = {i for piece, i in model["vocab"].items()
            if _BYTE_TOKEN.fullmatch(piece) or piece == model.get("unk_token")}
    specials = (tokenizer.get("post_processor") or {}).get("special_tokens", {})
    return keep | {i for entry in specials.values() for i in entry.get("ids", [])} | set(required)


def trimmed_tokenizer(tokenizer: dict, kept: list[int]) -> dict:
    """The tokenizer.json dict with only the `kept` ids (old ids), renumbered 0..len(kept)-1 in their old order."""
    new_id = {old: new for new, old in enumerate(kept)}
    model = tokenizer["model"]
    vocab = {piece: new_id[i] for piece, i in model["vocab"].items() if i in new_id}
    merges = []
    for merge in model["merges"]:
        left, right = merge.split(" ", 1) if isinstance(merge, str) else merge
        if left in vocab and right in vocab and left + right in vocab:
            merges.append(merge)
    added = [{**t, "id": new_id[t["id"]]} for t in tokenizer.get("added_tokens", []) if t["id"] in new_id]
    out = {**tokenizer, "model": {**model, "vocab": vocab, "merges": merges}, "added_tokens": added}
    processor = tokenizer.get("post_processor")
    if processor and "special_tokens" in processor:
        specials = {name: {**entry, "ids": [new_id[i] for i in entry["ids"]]}
                    for name, entry in processor["special_tokens"].items()}
        out["post_processor"] = {**processor, "special_tokens": specials}
    return out


def output_shortlist(tokenizer: dict, top: int, texts: list[str], required: set[int]) -> list[int]:
    """The ids an answer's output layer keeps (`octopus export --shortlist N`): the byte-fallback and
    single-character pieces, the `top` highest-ranked pieces of more than one character (a SentencePiece BPE
    vocabulary ranks its pieces by frequency: Gemma's merges are learned in the order of its ids), every piece of
    `texts` (the model's training targets, its enumerated values), the unknown token and `required`. The
    runtime adds the request's own tokens, whose logits it computes from the embedding table: a copied value
    can always be written, whatever its words."""
    from tokenizers import Tokenizer

    _check_trimmable(tokenizer)
    model = tokenizer["model"]
    pieces = sorted(model["vocab"].items(), key=lambda item: item[1])
    # every single character and Chinese piece: Chinese words are pieces of one to four characters, and they rank
    # late (Gemma's 信用卡 162,700th, 葡萄 64,677th of the 181,832 an en,zh vocabulary keeps)
    single = {i for piece, i in pieces if len(piece) == 1 or _BYTE_TOKEN.fullmatch(piece)
              or any(lo <= ord(ch) <= hi for ch in piece for lo, hi in SCRIPTS["zh"][:3])}
    keep = single | set([i for _, i in pieces if i not in single][:top])
    # a value opens after a quote, so its first word is written without the word marker: "▁guitar" ranks high,
    # "guitar" far lower; every kept marked piece keeps its unmarked twin
    vocab = model["vocab"]
    keep |= {vocab[piece[1:]] for piece, i in pieces if i in keep and piece.startswith(WORD_MARKER)
             and piece[1:] in vocab}
    keep |= _always_kept(tokenizer, required)
    encoder = Tokenizer.from_str(json.dumps(tokenizer))
    for encoding in encoder.encode_batch(texts, add_special_tokens=False):
        keep.update(encoding.ids)
    return sorted(keep)
