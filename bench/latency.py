"""Latency benchmark: torch fp32 eager vs ONNX fp32 vs ONNX int8 vs a RAG-style baseline, one run, same inputs.

    python bench/latency.py --model runs/quick/agent --onnx runs/quick/onnx --data runs/data/test.jsonl

Each back-end runs in its own process (so its peak RSS is its own) over the same rows. Reported per back-end:
p50/p95 of image encode, prefill, decode per token and end to end; peak RSS; prompt length in tokens. The
RAG-style baseline is the same LM with all ten function descriptions in a text prompt and no functional
tokens. The ONNX back-ends decode with drafts (`octopus.drafting`: several tokens checked a pass); "one token
a pass" is int8 without them, and the table gives each back-end's decoder passes per answer. The decode
bound is the decoder's weight bytes divided by the memory bandwidth measured here (one token reads every
weight once). Writes bench/results/latency.json and latency.png.

`--compare LABEL=ONNX_DIR` (repeatable) adds the int8 graphs of other exports as rows of the same run (e.g. an
int4 decoder, an agent with name slots), each in its own process over the same rows; `--name` writes
bench/results/<name>.* instead of latency.*.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

RESULTS = Path(__file__).parent / "results"
BACKENDS = ("torch_fp32", "onnx_fp32", "onnx_int8_single", "onnx_int8", "rag_baseline")


def rag_prompt(query: str) -> str:
    from octopus.functions import FUNCTIONS

    lines = ["You can call these functions:"]
    for f in FUNCTIONS:
        params = ", ".join(f"{a.name}: {a.type}" for a in f.arguments)
        lines.append(f"- {f.name}({params}): {f.description_en}")
    lines.append('If none fits, answer "none". Answer with one call like name(arg="value").')
    return "\n".join(lines) + f"\n\nQuery: {query}\n\nResponse:"


def _percentiles(values: list[float]) -> dict[str, float]:
    return {"p50": round(float(np.percentile(values, 50)), 2), "p95": round(float(np.percentile(values, 95)), 2)}


def run_backend(name: str, args) -> dict:
    rows = [json.loads(line) for line in Path(args.data).read_text(encoding="utf-8").splitlines()[: args.rows]]
    base = Path(args.data).parent
    timings: dict[str, list[float]] = {"image_encode": [], "prefill": [], "decode_per_token": [], "total": []}
    prompt_tokens, passes = [], []
    if name == "rag_baseline":
        import torch

        from octopus.model.agent import OctopusAgent
        from octopus.model.lm import cache_of, with_cache

        torch.set_num_threads(args.threads)
        agent = OctopusAgent.load(args.model)
        for row in rows:
            ids = torch.tensor([agent.tokenizer.encode(rag_prompt(row["query"]), add_special_tokens=False)])
            prompt_tokens.append(ids.shape[1])
            start = time.perf_counter()
            with torch.no_grad():
                out = agent.lm(input_ids=ids, use_cache=True)
                prefill = time.perf_counter() - start
                past, token, n = cache_of(out), out.logits[0, -1].argmax(), 0
                t0 = time.perf_counter()
                while n < 24 and int(token) != agent.tokenizer.eos_token_id:
                    out = agent.lm(input_ids=token.view(1, 1), **with_cache(past), use_cache=True)
                    past, token, n = cache_of(out), out.logits[0, -1].argmax(), n + 1
            timings["prefill"].append(prefill * 1e3)
            timings["decode_per_token"].append((time.perf_counter() - t0) * 1e3 / max(1, n))
            timings["image_encode"].append(0.0)
            timings["total"].append((time.perf_counter() - start) * 1e3)
            passes.append(n)
    else:
        if name == "torch_fp32":
            import torch

            from octopus.model.agent import OctopusAgent

            torch.set_num_threads(args.threads)
            backend = OctopusAgent.load(args.model)
            count = lambda q: len(backend.encode_prompt(q))  # noqa: E731
        else:
            from octopus.device.runtime import OnnxAgent

            backend = OnnxAgent(args.onnx, precision=name.split("_")[1], threads=args.threads)
            if name.endswith("_single"):
                backend.drafter = None
            count = lambda q: backend.prefix_length + backend.manifest["prompt"]["num_image_tokens"] + len(  # noqa: E731
                backend.encode(backend.query_part(q)))
        backend.generate(str(base / rows[0]["image"]), rows[0]["query"])  # warm-up
        for row in rows:
            g = backend.generate(str(base / row["image"]), row["query"])
            prompt_tokens.append(count(row["query"]))
            for key in timings:
                timings[key].append(g.timings_ms[key])
            passes.append(g.timings_ms["decode_passes"])
    return {"backend": name, "rows": len(rows), **{k: _percentiles(v) for k, v in timings.items()},
            "decode_passes_mean": round(float(np.mean(passes)), 2),
            "prompt_tokens_mean": round(float(np.mean(prompt_tokens)), 1),
            "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)}


def memory_bandwidth_gbs(size_mb: int = 512, repeats: int = 5) -> float:
    a = np.ones(size_mb * 2**20 // 8)
    b = np.empty_like(a)
    best = min(_timed(lambda: np.copyto(b, a)) for _ in range(repeats))
    return round(2 * a.nbytes / best / 1e9, 2)  # a copy reads and writes every byte


def _timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", required=True)
    parser.add_argument("--onnx", required=True)
    parser.add_argument("--data", required=True)
    parser.add_argument("--rows", type=int, default=30)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--no-readme", action="store_true", help="do not rewrite the README's latency block")
    parser.add_argument("--compare", action="append", default=[], metavar="LABEL=ONNX_DIR",
                        help="also the int8 graphs of another export, as a row labelled LABEL (repeatable)")
    parser.add_argument("--name", default="latency",
                        help="bench/results/<name>.json, .md, .txt and .png (the README's block only for latency)")
    parser.add_argument("--backend", choices=BACKENDS, help=argparse.SUPPRESS)  # child process mode
    args = parser.parse_args()
    if args.backend:
        print(json.dumps(run_backend(args.backend, args)))
        return 0
    compare = []
    for item in args.compare:
        label, _, onnx = item.partition("=")
        if not label or not onnx or not Path(onnx).is_dir():
            parser.error(f"--compare takes LABEL=ONNX_DIR with an existing folder, got {item!r}")
        compare.append((label, onnx))
    common = ["--model", args.model, "--data", args.data, "--rows", str(args.rows), "--threads", str(args.threads)]
    runs = [(name, name, args.onnx) for name in BACKENDS] + [(label, "onnx_int8", onnx) for label, onnx in compare]
    results = []
    for label, backend, onnx in runs:
        child = subprocess.run([sys.executable, __file__, *common, "--onnx", onnx, "--backend", backend],
                               capture_output=True, text=True)
        if child.returncode != 0:
            print(f"{label} failed: {child.stderr.strip().splitlines()[-1:]}", file=sys.stderr)
            return 1
        results.append({**json.loads(child.stdout.strip().splitlines()[-1]), "backend": label})
    from octopus.bundle import Manifest

    manifest = Manifest.load(args.onnx).data
    bandwidth = memory_bandwidth_gbs()
    bounds = {}
    for precision, key in (("fp32", "graphs"), ("int8", "int8")):
        entry = manifest[key]["decoder_model_merged"]
        size = sum((Path(args.onnx) / e["file"]).stat().st_size for e in (entry, entry.get("data")) if e)
        bounds[precision] = round(size / (bandwidth * 1e9) * 1e3, 2)
    torch_total = results[0]["total"]["p50"]
    width = max(14, *(len(r["backend"]) + 1 for r in results))
    lines = [f"{'backend':<{width}}{'encode p50':>11}{'prefill p50':>12}{'tok p50':>9}{'e2e p50':>9}{'e2e p95':>9}"
             f"{'RSS MB':>8}{'prompt':>8}{'passes':>8}{'speed-up':>9}"]
    for r in results:
        lines.append(f"{r['backend']:<{width}}{r['image_encode']['p50']:>11}{r['prefill']['p50']:>12}"
                     f"{r['decode_per_token']['p50']:>9}{r['total']['p50']:>9}{r['total']['p95']:>9}"
                     f"{r['peak_rss_mb']:>8}{r['prompt_tokens_mean']:>8}{r['decode_passes_mean']:>8}"
                     f"{torch_total / r['total']['p50']:>9.2f}")
    lines.append(f"memory bandwidth {bandwidth} GB/s; decode bound per token: fp32 {bounds['fp32']} ms, int8 "
                 f"{bounds['int8']} ms; decoder: {manifest['graphs']['decoder_model_merged'].get('exporter', '?')}")
    print("\n".join(lines))
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / f"{args.name}.txt").write_text("\n".join(lines) + "\n")
    out = {"results": results, "memory_bandwidth_gbs": bandwidth, "decode_bound_ms": bounds,
           "threads": args.threads, "rows": args.rows, "compare": dict(compare)}
    (RESULTS / f"{args.name}.json").write_text(json.dumps(out, indent=2))
    _chart(results, RESULTS / f"{args.name}.png")
    names = {"torch_fp32": "torch fp32 eager", "onnx_fp32": "ONNX fp32",
             "onnx_int8_single": "ONNX int8, one token a pass", "onnx_int8": "**ONNX int8**",
             "rag_baseline": "RAG-style prompt (same LM, ten descriptions, torch)"}
    table = ["| back-end | image encode p50 | prefill p50 | per token p50 | end-to-end p50 / p95 | peak RSS | "
             "prompt tokens | decoder passes | speed-up |", "| --- " * 9 + "|"]
    for r in results:
        table.append(f"| {names.get(r['backend'], r['backend'])} | {r['image_encode']['p50']} ms | "
                     f"{r['prefill']['p50']} ms | "
                     f"{r['decode_per_token']['p50']} ms | {r['total']['p50']:.0f} / {r['total']['p95']:.0f} ms | "
                     f"{r['peak_rss_mb']:.0f} MB | {r['prompt_tokens_mean']:.0f} | {r['decode_passes_mean']:.1f} | "
                     f"{torch_total / r['total']['p50']:.2f}× |")
    table.append("")
    table.append(f"{args.rows} rows, {args.threads} threads, one run, same inputs; memory bandwidth {bandwidth} GB/s, "
                 f"so reading the int8 decoder's weights once bounds a token at {bounds['int8']} ms. "
                 f"![latency](bench/results/{args.name}.png)")
    (RESULTS / f"{args.name}.md").write_text("\n".join(table) + "\n")
    if not args.no_readme and args.name == "latency":
        from accuracy import replace_readme_block  # bench/accuracy.py, beside this script

        replace_readme_block("latency", "\n".join(table))
    return 0


def _chart(results: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 3.5))
    names = [r["backend"] for r in results]
    ax.bar(names, [r["total"]["p50"] for r in results], label="end-to-end p50")
    ax.scatter(names, [r["total"]["p95"] for r in results], color="black", zorder=3, label="p95")
    ax.set(ylabel="ms per request", title="octopus latency, same inputs, one run")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


if __name__ == "__main__":
    sys.exit(main())
