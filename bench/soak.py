"""Soak: many requests through a running `octopus daemon`; does its memory stay flat and its latency steady?

    python bench/soak.py --requests 10000                       # a tiny exported model (built here; needs torch)
    python bench/soak.py --model runs/quick/onnx --requests 2000

Starts the daemon as systemd would (its own process, config file, NOTIFY_SOCKET for READY=1, the unit's
MALLOC_ARENA_MAX=2), with a file
camera cycling through a few real frames. Alternates `/ask` (capture + answer, waited for) with `/query` +
`/press` pairs (the button path, then polled on /status). The daemon's RSS is read from /proc after a warm-up
and then every tenth of the run; growth is end vs warm-up. Prints a table, writes bench/results/soak.json.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

import numpy as np
from tables import status_mb

RESULTS = Path(__file__).parent / "results"


def rss_mb(pid: int) -> float:
    return status_mb("VmRSS", pid)


def post(base: str, path: str, payload: dict) -> tuple[int, dict]:
    request = urllib.request.Request(base + path, json.dumps(payload).encode(), {"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=120) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def get(base: str, path: str) -> dict:
    with urllib.request.urlopen(base + path, timeout=30) as response:
        return json.loads(response.read())


def tiny_model(root: Path) -> Path:
    import torch

    from octopus.exporters.onnx_export import export
    from octopus.model.agent import OctopusAgent
    from octopus.model.presets import tiny

    torch.manual_seed(0)
    OctopusAgent.build(tiny()).save(root / "agent")
    export(root / "agent", root / "onnx", int8=True)
    return root / "onnx"


def frames(root: Path) -> Path:
    from PIL import Image

    rng = np.random.default_rng(0)
    folder = root / "frames"
    folder.mkdir()
    for i in range(4):
        Image.fromarray(rng.integers(0, 255, (240, 320, 3), dtype=np.uint8)).save(folder / f"frame{i}.jpg")
    return folder


def start_daemon(root: Path, model: Path, port: int) -> tuple[subprocess.Popen, socket.socket]:
    config = root / "config.toml"
    config.write_text(f'[model]\npath = "{model}"\nmax_new_tokens = 24\n'
                      f'[camera]\nkind = "file"\npath = "{frames(root)}"\n[button]\nenabled = false\n'
                      f'[queries]\nlisten = "127.0.0.1:{port}"\n[daemon]\nstate_dir = "{root / "state"}"\n'
                      f'log_level = "warning"\n')
    return launch_daemon(config, root)


def launch_daemon(config: Path, root: Path, preexec_fn=None) -> tuple[subprocess.Popen, socket.socket]:
    """`octopus daemon --config CONFIG` as systemd starts it: its own process, NOTIFY_SOCKET (waited on for
    READY=1), the unit's MALLOC_ARENA_MAX=2; stderr in ROOT/daemon.log. Returns the process and the notify
    socket, which the caller must keep reading."""
    notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    notify.bind(str(root / "notify.sock"))
    notify.settimeout(300)
    env = {**os.environ, "NOTIFY_SOCKET": str(root / "notify.sock"), "MALLOC_ARENA_MAX": "2"}  # as the unit sets
    proc = subprocess.Popen([sys.executable, "-m", "octopus.cli", "daemon", "--config", str(config)], env=env,
                            preexec_fn=preexec_fn, stderr=open(root / "daemon.log", "w"))
    while b"READY=1" not in notify.recv(4096):
        pass
    return proc, notify


def soak(model: Path | None, requests: int, warmup: int, root: Path) -> dict:
    from tqdm import tqdm

    model = model or tiny_model(root)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    base = f"http://127.0.0.1:{port}"
    proc, notify = start_daemon(root, model, port)
    notices = []  # read as systemd would: a notify socket nobody reads fills up and stalls the sender

    def drain():
        while True:
            try:
                notices.append(notify.recv(4096))
            except OSError:
                return
    threading.Thread(target=drain, daemon=True).start()
    queries = ["order this for me", "把这个发给妈妈", "how do I recycle this", "find a groomer for my dog"]
    latencies, samples, errors, dropped = [], [], 0, 0
    try:
        rss_start = None
        for n in tqdm(range(warmup + requests), desc="soak", unit="req", mininterval=2):
            if n == warmup:
                rss_start = rss_mb(proc.pid)
                samples.append((0, rss_start))
            t0 = time.perf_counter()
            if n % 2 == 0:
                status, answer = post(base, "/ask", {"query": queries[n % 4]})
                errors += status != 200 or "raw" not in answer
            else:
                post(base, "/query", {"query": queries[n % 4]})
                before = get(base, "/status")["requests"]
                status, _ = post(base, "/press", {"gesture": "short"})
                dropped += status == 409
                while status == 202:  # the button path answers nobody: wait until the worker is done with it
                    now = get(base, "/status")
                    if now["requests"] > before and not now["busy"]:
                        break
                    time.sleep(0.001)
            if n >= warmup:
                latencies.append((time.perf_counter() - t0) * 1e3)
            if n >= warmup and (n - warmup + 1) % max(1, requests // 10) == 0:
                samples.append((n - warmup + 1, rss_mb(proc.pid)))
        status = get(base, "/status")
    finally:
        proc.terminate()
        code = proc.wait(timeout=60)
        time.sleep(0.2)  # the drain thread reads the last notices
        notify.close()
    rss_end = samples[-1][1]
    return {"requests": requests, "warmup": warmup, "model": str(model), "errors": errors, "dropped": dropped,
            "daemon_requests": status["requests"], "daemon_errors": status["errors"], "exit_code": code,
            "rss_start_mb": round(rss_start, 1), "rss_end_mb": round(rss_end, 1),
            "rss_growth_pct": round(100 * (rss_end - rss_start) / rss_start, 2),
            "rss_samples": [(n, round(mb, 1)) for n, mb in samples],
            "latency_ms": {p: round(float(np.percentile(latencies, q)), 2) for p, q in
                           (("p50", 50), ("p95", 95), ("p99", 99), ("max", 100))},
            "outbox": status["outbox"],
            "notify_status_messages": sum(n.startswith(b"STATUS=") for n in notices),
            "notify_stopping": any(b"STOPPING=1" in n for n in notices)}


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, help="an exported model folder (default: a tiny one built here)")
    parser.add_argument("--requests", type=int, default=10_000)
    parser.add_argument("--warmup", type=int, default=200)
    parser.add_argument("--out", type=Path, default=RESULTS / "soak.json")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        result = soak(args.model, args.requests, args.warmup, Path(tmp))
    print(f"{'requests':<22}{result['requests']} (+{result['warmup']} warm-up), errors {result['errors']}, "
          f"dropped {result['dropped']}")
    print(f"{'daemon RSS start/end':<22}{result['rss_start_mb']} / {result['rss_end_mb']} MB "
          f"({result['rss_growth_pct']:+.2f}%)")
    print(f"{'latency p50/p95/p99':<22}{result['latency_ms']['p50']} / {result['latency_ms']['p95']} / "
          f"{result['latency_ms']['p99']} ms")
    print(f"{'RSS over the run':<22}" + ", ".join(f"{n}:{mb}" for n, mb in result["rss_samples"]))
    print(f"{'exit on SIGTERM':<22}{result['exit_code']}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    return result


if __name__ == "__main__":
    main()
