"""The dataset card (DATASET.md) and the contact sheet a person looks at (contact_sheet.png).

Knows the files `build` writes; renders nothing but the sheet.
"""

from __future__ import annotations

import json
import random
from dataclasses import asdict
from pathlib import Path

from PIL import Image, ImageDraw, ImageFont

from octopus.training.data.assets import STYLES
from octopus.training.data.rows import read_rows

CJK_FONTS = (
    "/usr/share/fonts/truetype/wqy/wqy-microhei.ttc",
    "/usr/share/fonts/opentype/noto/NotoSansCJK-Regular.ttc",
    "/usr/share/fonts/truetype/arphic/uming.ttc",
    "/usr/share/fonts/truetype/droid/DroidSansFallbackFull.ttf",
)


def write_card(out: Path, config, stats: dict) -> None:
    lines = ["# Octopus bilingual function-call dataset", "",
             "Generated offline by `octopus data build` (seeded, reproducible). Build settings:", "",
             "```json", json.dumps(asdict(config), indent=2), "```", "", "## Counts", ""]
    for split in ("train", "test", "test_unseen_style", "test_new_wordings"):
        if split in stats:
            s = stats[split]
            lines += [f"### {split}: {s['rows']} rows", "",
                      "| | " + " | ".join(s["by_function"]) + " |",
                      "|---|" + "---|" * len(s["by_function"]),
                      "| rows | " + " | ".join(str(v) for v in s["by_function"].values()) + " |", "",
                      f"Languages: {s['by_language']}. Kinds: {s['by_kind']}. Registers: {s['by_register']}.", ""]
    lines += ["## Verification", "", "Each planned row was checked before rendering: the call parses and validates, "
              "copied arguments occur in the query, named objects are the scene's main object, the object implies "
              "the function for image-decided rows, the query is in its language. Rejected (then re-drawn):", "",
              "```json", json.dumps(stats.get("verification_rejects", {}), indent=2), "```", ""]
    lines += ["## Splits", "",
              "Every template, slot value and object is either train or test (every fourth of each group is test; a"
              " mapped slot such as pet_care's service holds out phrases, and every value test asks for trains at "
              "least as often; about 30 more values a slot, none of them a test value or a held-out object's name, "
              "only ever train unless --slot-values base). `test_unseen_style` is the test split re-rendered row "
              "for row in the Noto style, which no training file uses. `test_new_wordings` asks, over test's "
              "objects and slot values, in the held-out fourth of a second bank of text-decided and irrelevant "
              "wordings (the other three fourths train only with --extra-wordings). `captions.csv` (stage 0 and 1) "
              "covers every concept in the training styles; `clip_val*.jsonl` are single-object scenes for zero-"
              "shot evaluation.",
              "", "## Examples", ""]
    for row in read_rows(out / "train.jsonl")[:: max(1, stats["train"]["rows"] // 8)][:8]:
        lines.append(f"- `{row['query']}` → `{row['target'].splitlines()[0]}` ({row['meta']['kind']}, "
                     f"objects {row['meta']['objects']})")
    lines += ["", "## Asset licences", ""]
    lines += [f"- **{s.name}** ({s.source}, {s.license}): {s.attribution}" for s in STYLES.values()]
    lines += ["", "Images derived from OpenMoji are under CC BY-SA 4.0; those from Twemoji need attribution "
              "(CC BY 4.0).", ""]
    (out / "DATASET.md").write_text("\n".join(lines), encoding="utf-8")


def _font(size: int) -> ImageFont.ImageFont:
    for path in CJK_FONTS:
        if Path(path).is_file():
            return ImageFont.truetype(path, size)
    return ImageFont.load_default(size)


def contact_sheet(out: Path, split: str = "train", n: int = 12, seed: int = 0) -> Path:
    """A grid of sample scenes with their query and call, written to DIR/contact_sheet.png."""
    rows = read_rows(out / f"{split}.jsonl")
    sample = random.Random(seed).sample(rows, min(n, len(rows)))
    cell_w, img_h, text_h, cols = 300, 224, 74, 4
    grid_rows = (len(sample) + cols - 1) // cols
    sheet = Image.new("RGB", (cell_w * cols, (img_h + text_h) * grid_rows), "white")
    draw = ImageDraw.Draw(sheet)
    font = _font(13)
    for i, row in enumerate(sample):
        x, y = (i % cols) * cell_w, (i // cols) * (img_h + text_h)
        with Image.open(out / row["image"]) as img:
            sheet.paste(img.convert("RGB").resize((img_h, img_h)), (x + (cell_w - img_h) // 2, y))
        call = row["target"].splitlines()[0]
        text = [row["query"][:40], call[:44], call[44:88]]
        for j, line in enumerate(t for t in text if t):
            draw.text((x + 4, y + img_h + 4 + 17 * j), line, fill="black", font=font)
    path = out / "contact_sheet.png"
    sheet.save(path)
    return path
