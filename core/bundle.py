"""The exported bundle's contract: what `manifest.json` holds, and whether a folder's files match it.

One home for it, read by the exporter (writes), the torch-free runtime and `octopus doctor` (load + verify),
the latency bench and `pi-image/build.sh` (verify before an image is built):

    python -m octopus.bundle verify DIR        # or: python core/bundle.py verify DIR (standard library only)

Every file the runtime reads is listed with its sha256: the graphs of each precision (with the decoder's
weights in an external-data file beside it), the embedding table and the tokenizer (a tokenizer with two
special tokens swapped changes every answer). Standard library only, so build.sh can run it before anything
is installed.
"""

from __future__ import annotations

import hashlib
import json
import math
import sys
from pathlib import Path

FORMAT = "octopus-onnx/1"
GRAPHS = ("vision_encoder", "decoder_model_merged")  # every export has these; embed_tokens is optional
# what a runtime reads, by section (the exporter writes more: parity figures, the agent's config, methods)
REQUIRED = {
    "graphs": GRAPHS,
    "tokens": ("function_ids", "no_function_id", "end_id"),
    "prompt": ("prefix", "suffix"),
    "preprocess": ("image_size", "mean", "std"),
    "decoder": ("layers", "kv_heads", "head_dim"),
}
PRECISIONS = {"fp32": "graphs", "int8": "int8"}  # precision -> manifest section


class ManifestError(ValueError):
    """An exported folder whose manifest is unreadable or incomplete, or whose files do not match it."""


def file_sha256(path: Path) -> str:
    """Hashed in 1 MiB blocks: reading a 150 MB graph whole would double the peak memory at load."""
    digest = hashlib.sha256()
    with Path(path).open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def file_entry(directory: Path, name: str, **extra) -> dict:
    """A manifest entry for a file the exporter has written: its name, sha256 and anything else to record; a
    graph whose weights are in an external-data file beside it (`<name>.data`) lists that file under `data`."""
    entry = {"file": name, "sha256": file_sha256(Path(directory) / name), **extra}
    data = Path(directory) / f"{name}.data"
    if data.is_file():
        entry["data"] = {"file": data.name, "sha256": file_sha256(data)}
    return entry


class Manifest:
    """`manifest.json` of an exported folder, checked for everything a runtime reads at load."""

    def __init__(self, data: dict, directory: str | Path, path: str | Path | None = None):
        self.data, self.directory = data, Path(directory)
        self.path = Path(path) if path else self.directory / "manifest.json"
        self._check()

    @classmethod
    def load(cls, directory: str | Path) -> Manifest:
        path = Path(directory) / "manifest.json"
        if not path.is_file():
            raise ManifestError(f"{directory} has no manifest.json")
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (UnicodeDecodeError, ValueError) as exc:
            raise ManifestError(f"{path} is not JSON ({exc}); export the model again") from None
        return cls(data, directory, path)

    def write(self, directory: str | Path | None = None) -> Path:
        path = Path(directory) / "manifest.json" if directory else self.path
        path.write_text(json.dumps(self.data, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
        return path

    def _check(self) -> None:
        if not isinstance(self.data, dict):
            raise ManifestError(f"{self.path} is not an octopus export manifest (a JSON {type(self.data).__name__})")
        sections = {**REQUIRED, **({"int8": GRAPHS} if "int8" in self.data else {})}
        for section, keys in sections.items():
            table = self.data.get(section)
            if not isinstance(table, dict):
                raise ManifestError(f"{self.path} lacks {section}: not a complete octopus export (export the model "
                                    "again)")
            missing = [k for k in keys if k not in table]
            if missing:
                raise ManifestError(f"{self.path} lacks {section}.{', '.join(missing)}: not a complete octopus export "
                                    "(export the model again)")
        for section in ("graphs", "int8", "embed_table", "tokenizer", "output_shortlist"):
            entries = self._entries(section)
            for name, entry in entries.items():
                label = section if name == section else f"{section}.{name}"
                self._check_entry(entry, label)
                for part in ("data", "table"):  # a graph's external data; a shortlist's own output table
                    if part in entry:
                        self._check_entry(entry[part], f"{label}.{part}")

        decoding = self.data.get("decoding", {})  # optional (older exports have none)
        bias = decoding.get("reject_bias", {}) if isinstance(decoding, dict) else None
        if not isinstance(bias, dict) or not all(
                isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in bias.values()):
            raise ManifestError(f"{self.path}: decoding.reject_bias must be a table of numbers by language, "
                                f"got {bias!r}")

    def _check_entry(self, entry, label: str) -> None:
        if not isinstance(entry, dict) or not isinstance(entry.get("file"), str) or "sha256" not in entry:
            raise ManifestError(f"{self.path}: {label} has no file and sha256")
        if Path(entry["file"]).name != entry["file"]:  # files live in the folder, never elsewhere
            raise ManifestError(f"{self.path}: {label} names a file outside the folder")

    def _entries(self, section: str) -> dict:
        value = self.data.get(section)
        if value is None:
            return {}
        if section in ("embed_table", "tokenizer", "output_shortlist"):
            return {section: value}
        return value if isinstance(value, dict) else {section: value}

    # --- what the runtime reads ----------------------------------------------------------------------------
    @property
    def precisions(self) -> list[str]:
        return [p for p, section in PRECISIONS.items() if section in self.data]

    def graphs(self, precision: str) -> dict[str, dict]:
        if precision not in PRECISIONS or PRECISIONS[precision] not in self.data:
            raise ManifestError(f"{self.directory} has no {precision} graphs (export with --int8, or use "
                                "--precision fp32)")
        return self.data[PRECISIONS[precision]]

    def registry(self):
        """The function table the model calls (`functions`: the ten, then its user functions); exports from
        before user functions have none, and their table is the ten. Checked against the functional tokens."""
        from octopus.functions import BUILTIN, Registry  # lazy: `python core/bundle.py verify` runs uninstalled

        table = self.data.get("functions")
        try:
            registry = BUILTIN if table is None else Registry.from_json(table)
        except (KeyError, TypeError, ValueError) as exc:
            raise ManifestError(f"{self.path}: the function table is not valid ({exc}); export the model again") \
                from None
        if len(self.data["tokens"]["function_ids"]) != len(registry):
            raise ManifestError(f"{self.path}: {len(self.data['tokens']['function_ids'])} functional tokens but "
                                f"{len(registry)} functions in the table; export the model again")
        return registry

    def files(self, precisions: list[str] | None = None) -> dict[str, dict]:
        """Every file entry a runtime reads, labelled `fp32/vision_encoder`, `embed_table`, `tokenizer`..."""
        out = {}
        for precision in precisions or self.precisions:
            for name, entry in self.graphs(precision).items():
                out[f"{precision}/{name}"] = entry
                if "data" in entry:  # the graph's weights (external data), read through the graph
                    out[f"{precision}/{name}.data"] = entry["data"]
        out.update(self._entries("embed_table"))
        out.update(self._entries("tokenizer"))
        for name, entry in self._entries("output_shortlist").items():
            out[name] = entry
            if "table" in entry:
                out[f"{name}.table"] = entry["table"]
        return out

    def path_of(self, entry: dict, verify: bool = True) -> Path:
        """The file of one entry, checked to exist and, with `verify`, to match its sha256."""
        path = self.directory / entry["file"]
        if not path.is_file():
            raise ManifestError(f"{path} is missing")
        if verify and file_sha256(path) != entry["sha256"]:
            raise ManifestError(f"{path} does not match the sha256 in the manifest")
        return path

    def verify(self, precisions: list[str] | None = None) -> list[str]:
        """Check every file against its sha256; returns the labels checked, raises ManifestError on the first
        file missing or changed."""
        files = self.files(precisions)
        for entry in files.values():
            self.path_of(entry)
        return list(files)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 2 or argv[0] != "verify":
        print("usage: python -m octopus.bundle verify DIR", file=sys.stderr)
        return 2
    try:
        checked = Manifest.load(argv[1]).verify()
    except ManifestError as exc:
        print(f"bundle: {exc}", file=sys.stderr)
        return 1
    print(f"{argv[1]}: {len(checked)} files match the manifest ({', '.join(checked)})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
