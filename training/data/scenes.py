"""Photo-like scenes: icons composed on surfaces with strong augmentation, and bilingual captions.

A scene is one main object (the one a request is about), sometimes twice, plus up to two small neutral
distractors, on a background (gradient, noise, wood, tablecloth, concrete, paper), with soft shadows,
rotation, scale, crop, occlusion, blur, colour jitter, grayscale, sensor noise and JPEG artefacts.
Everything is drawn from the `random.Random` passed in, so a seed gives the same scene. Knows the concept
table and the icon sets; knows nothing about functions or queries.
"""

from __future__ import annotations

import io
import random
from dataclasses import dataclass, field

import numpy as np
from PIL import Image, ImageDraw, ImageEnhance, ImageFilter

from octopus.training.data.assets import render_icon
from octopus.training.data.concepts import Concept

SCENE_SIZE = 224

COLOURS = {  # name: (rgb, Chinese)
    "red": ((200, 40, 40), "红色"), "orange": ((235, 140, 40), "橙色"), "yellow": ((240, 210, 60), "黄色"),
    "green": ((70, 160, 70), "绿色"), "blue": ((60, 110, 210), "蓝色"), "purple": ((140, 80, 180), "紫色"),
    "pink": ((240, 150, 190), "粉色"), "brown": ((130, 85, 50), "棕色"), "black": ((35, 35, 35), "黑色"),
    "white": ((240, 240, 240), "白色"), "gray": ((140, 140, 140), "灰色"),
}
POSITIONS = {"left": "左边", "center": "中间", "right": "右边"}
COUNT_EN = {1: "a", 2: "two"}
COUNT_ZH = {1: "一个", 2: "两个"}


@dataclass
class PlacedObject:
    concept: Concept
    box: tuple[int, int, int, int]
    colour: str

    @property
    def position(self) -> str:
        cx = (self.box[0] + self.box[2]) / 2 / SCENE_SIZE
        return "left" if cx < 0.38 else "right" if cx > 0.62 else "center"


@dataclass
class Scene:
    style: str
    main: Concept
    count: int
    objects: list[PlacedObject] = field(default_factory=list)  # the main object(s) first
    background: str = ""
    grayscale: bool = False

    @property
    def distractors(self) -> list[Concept]:
        return [o.concept for o in self.objects[self.count:]]

    def to_json(self) -> dict:
        return {
            "style": self.style,
            "main": self.main.key,
            "count": self.count,
            "objects": [o.concept.key for o in self.objects],
            "background": self.background,
        }


def colour_name(icon: Image.Image) -> str:
    """The named colour nearest to the mean colour of the icon's opaque pixels."""
    pixels = np.asarray(icon, dtype=np.float32)
    opaque = pixels[pixels[..., 3] > 128][:, :3]
    if len(opaque) == 0:
        return "gray"
    mean = opaque.mean(0)
    return min(COLOURS, key=lambda c: float(((np.asarray(COLOURS[c][0]) - mean) ** 2).sum()))


def _background(rng: random.Random, size: int) -> tuple[Image.Image, str]:
    kind = rng.choice(["gradient", "noise", "wood", "tablecloth", "concrete", "paper"])
    nprng = np.random.default_rng(rng.getrandbits(32))
    y, x = np.mgrid[0:size, 0:size].astype(np.float32) / size
    c1 = np.array([rng.randint(60, 250) for _ in range(3)], np.float32)
    c2 = np.array([rng.randint(20, 230) for _ in range(3)], np.float32)
    if kind == "gradient":
        angle = rng.uniform(0, np.pi)
        t = (np.cos(angle) * x + np.sin(angle) * y)[..., None]
        img = c1 * (1 - t) + c2 * t
    elif kind == "noise":
        coarse = nprng.random((8, 8, 1)).repeat(size // 8 + 1, 0).repeat(size // 8 + 1, 1)[:size, :size]
        img = c1 * (1 - coarse) + c2 * coarse
    elif kind == "wood":
        base = np.array([rng.randint(120, 190), rng.randint(75, 120), rng.randint(35, 70)], np.float32)
        grain = np.sin((y * rng.uniform(20, 60) + np.sin(x * rng.uniform(2, 6)) * 2) * np.pi)[..., None]
        img = base * (0.85 + 0.15 * grain)
    elif kind == "tablecloth":
        cells = rng.randint(4, 12)
        check = ((np.floor(x * cells) + np.floor(y * cells)) % 2)[..., None]
        img = c1 * check + np.array([245, 245, 240], np.float32) * (1 - check)
    elif kind == "concrete":
        img = np.full((size, size, 3), rng.randint(110, 190), np.float32) + nprng.normal(0, 18, (size, size, 1))
    else:  # paper
        img = np.array([rng.randint(225, 250)] * 3, np.float32) + nprng.normal(0, 4, (size, size, 1)) + 0 * x[..., None]
    img = img + nprng.normal(0, 6, (size, size, 3))
    return Image.fromarray(np.clip(img, 0, 255).astype(np.uint8), "RGB"), kind


def _paste(canvas: Image.Image, icon: Image.Image, center: tuple[int, int], rng: random.Random) -> tuple:
    """Paste an RGBA icon with a soft drop shadow; return its bounding box."""
    x0, y0 = center[0] - icon.width // 2, center[1] - icon.height // 2
    shadow = Image.new("RGBA", icon.size, (0, 0, 0, 0))
    shadow.putalpha(icon.getchannel("A").point(lambda a: a * 0.45))
    shadow = shadow.filter(ImageFilter.GaussianBlur(rng.uniform(2, 5)))
    dx, dy = rng.randint(2, 7), rng.randint(3, 8)
    canvas.alpha_composite(shadow, (max(0, x0 + dx), max(0, y0 + dy)))
    canvas.alpha_composite(icon, (max(0, x0), max(0, y0)), (max(0, -x0), max(0, -y0)))
    return (x0, y0, x0 + icon.width, y0 + icon.height)


def _icon(style: str, concept: Concept, size: int, rng: random.Random) -> Image.Image:
    icon = render_icon(style, concept.codepoint, size)
    if icon is None:
        raise KeyError(f"style {style} has no icon for {concept.key}")
    if rng.random() < 0.3:
        icon = icon.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    return icon.rotate(rng.uniform(-25, 25), resample=Image.Resampling.BICUBIC, expand=True)


def _photometric(image: Image.Image, rng: random.Random, scene: Scene) -> Image.Image:
    image = ImageEnhance.Brightness(image).enhance(rng.uniform(0.7, 1.3))
    image = ImageEnhance.Contrast(image).enhance(rng.uniform(0.7, 1.3))
    image = ImageEnhance.Color(image).enhance(rng.uniform(0.6, 1.4))
    if rng.random() < 0.1:
        image = image.convert("L").convert("RGB")
        scene.grayscale = True
    if rng.random() < 0.35:
        image = image.filter(ImageFilter.GaussianBlur(rng.uniform(0.4, 1.6)))
    if rng.random() < 0.3:
        nprng = np.random.default_rng(rng.getrandbits(32))
        noisy = np.asarray(image, np.float32) + nprng.normal(0, rng.uniform(3, 12), (image.height, image.width, 3))
        image = Image.fromarray(np.clip(noisy, 0, 255).astype(np.uint8), "RGB")
    return image


def render_scene(rng: random.Random, style: str, main: Concept, distractors: list[Concept],
                 count: int = 1, size: int = SCENE_SIZE) -> tuple[Image.Image, Scene]:
    canvas, kind = _background(rng, size)
    canvas = canvas.convert("RGBA")
    scene = Scene(style, main, count, background=kind)
    main_size = int(size * (rng.uniform(0.42, 0.7) if count == 1 else rng.uniform(0.32, 0.45)))
    centers = ([(rng.randint(int(size * 0.3), int(size * 0.7)), rng.randint(int(size * 0.3), int(size * 0.7)))]
               if count == 1 else [(int(size * 0.3), rng.randint(80, 144)), (int(size * 0.7), rng.randint(80, 144))])
    for d in distractors:  # distractors first, so the main object is drawn on top
        icon = _icon(style, d, int(size * rng.uniform(0.16, 0.28)), rng)
        corner = rng.choice([(0.15, 0.15), (0.85, 0.15), (0.15, 0.85), (0.85, 0.85)])
        box = _paste(canvas, icon, (int(size * corner[0]), int(size * corner[1])), rng)
        scene.objects.append(PlacedObject(d, box, colour_name(icon)))
    mains = []
    for center in centers:
        icon = _icon(style, main, main_size, rng)
        box = _paste(canvas, icon, center, rng)
        mains.append(PlacedObject(main, box, colour_name(icon)))
    scene.objects = mains + scene.objects
    if rng.random() < 0.15:  # partial occlusion of the main object by a plain shape
        x0, y0, x1, y1 = mains[0].box
        w, h = (x1 - x0) // 3, (y1 - y0) // 3
        ox, oy = rng.randint(x0, max(x0, x1 - w)), rng.randint(y0, max(y0, y1 - h))
        fill = tuple(rng.randint(0, 255) for _ in range(3)) + (255,)
        ImageDraw.Draw(canvas).ellipse((ox, oy, ox + w, oy + h), fill=fill)
    image = canvas.convert("RGB")
    if rng.random() < 0.3:  # random crop and resize back
        c = int(size * rng.uniform(0.0, 0.12))
        image = image.crop((c, c, size - c, size - c)).resize((size, size), Image.Resampling.BICUBIC)
    return _photometric(image, rng, scene), scene


def encode_jpeg(image: Image.Image, rng: random.Random) -> bytes:
    """JPEG bytes at a random quality, for compression artefacts."""
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=rng.randint(35, 95))
    return buffer.getvalue()


def captions(scene: Scene, rng: random.Random) -> tuple[str, str]:
    """(English, Chinese) captions naming the objects, their count, colour and position."""
    main = scene.objects[0]
    colour_en, colour_zh = main.colour, COLOURS[main.colour][1]
    if scene.grayscale:
        colour_en, colour_zh = "black and white", "黑白"
    name_en = _plural(scene.main.en) if scene.count == 2 else scene.main.en
    where_en = {"left": "on the left", "right": "on the right", "center": "in the middle"}[main.position]
    where_zh = POSITIONS[main.position if scene.count == 1 else "center"]
    if scene.count == 2:
        where_en, where_zh = "side by side", "并排"
    en = rng.choice([
        "a photo of {n} {c} {o} {w}", "{n} {c} {o} {w}", "a picture of {n} {o}, {c}, {w}", "{n} {o}",
    ]).format(n="{n}", c=colour_en, o=name_en, w=where_en)
    after = en.split("{n} ", 1)[1] if "{n} " in en else name_en
    article = "two" if scene.count == 2 else "" if is_plural(scene.main.en) else _article(after)
    en = en.replace("{n} ", f"{article} " if article else "")
    zh = rng.choice(["一张照片：{w}有{n}{c}的{o}", "{w}有{n}{o}，是{c}的", "{n}{o}", "图片{w}是{n}{c}的{o}"]).format(
        n=COUNT_ZH[scene.count], c=colour_zh, o=scene.main.zh, w=where_zh)
    if scene.distractors:
        en += ", next to " + " and ".join(d.en if is_plural(d.en) else f"{_article(d.en)} {d.en}"
                                          for d in scene.distractors)
        zh += "，旁边有" + "和".join(d.zh for d in scene.distractors)
    return en, zh


def is_plural(name: str) -> bool:
    return name.endswith("s") and not name.endswith(("glass", "bus"))


def _article(phrase: str) -> str:
    return "an" if phrase[:1].lower() in "aeiou" else "a"


def _plural(name: str) -> str:
    irregular = {"mouse": "mice", "goldfish": "goldfish", "sushi": "sushi", "ramen": "ramen"}
    if name in irregular:
        return irregular[name]
    return name if name.endswith("s") else name + ("es" if name.endswith(("ch", "sh", "x", "o")) else "s")
