"""What a training checkpoint costs (training/checkpoints.py): the whole model against only what the stage trains,
side by side in one run on a profile's stage-2 set-up (LoRA and token rows on the LM, the rest frozen). Each
repeat writes both, alternating which goes first; prints a table and writes bench/results/checkpoint_save.json.

    python bench/checkpoint_save.py --agent runs/quick/stage1_alignment/agent

The quick profile's stage 2 writes one every 25 optimizer steps (15 in 3,000 examples, 30 in 6,000).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

RESULTS = Path(__file__).parent / "results"


def _bytes(folder: Path) -> int:
    return sum(f.stat().st_size for f in folder.rglob("*") if f.is_file())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--agent", type=Path, required=True, help="a stage-1 agent folder")
    parser.add_argument("--profile", default="quick", help="whose stage 2 sets what trains")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads (the target machine has 2)")
    parser.add_argument("--out", type=Path, default=RESULTS / "checkpoint_save.json")
    args = parser.parse_args(argv)
    if not (args.agent / "config.json").is_file():
        print(f"error: no agent folder at {args.agent}", file=sys.stderr)
        return 2

    import torch
    from accelerate import Accelerator

    from octopus.model.agent import OctopusAgent
    from octopus.training.checkpoints import save_checkpoint
    from octopus.training.loop import apply_train_modes, resolve_precision
    from octopus.training.stages import PROFILES

    torch.set_num_threads(args.threads)
    stage = next(s for s in PROFILES[args.profile]().stages if s.kind == "functional")
    agent = OctopusAgent.load(args.agent).train()
    apply_train_modes(agent, stage)
    params = [p for p in agent.parameters() if p.requires_grad]
    accelerator = Accelerator(mixed_precision=resolve_precision(stage.precision))
    optimizer = torch.optim.AdamW(params, lr=stage.lr)
    agent, optimizer = accelerator.prepare(agent, optimizer)
    for p in params:  # one step, so the optimizer holds its moments as it does mid-stage
        p.grad = torch.zeros_like(p)
    optimizer.step()
    counts = {"trainable": sum(p.numel() for p in params), "all": sum(p.numel() for p in agent.parameters())}

    def whole(folder: Path) -> None:
        hooks = dict(accelerator._save_model_state_pre_hook)  # what save_checkpoint registers, set aside
        accelerator._save_model_state_pre_hook.clear()
        try:
            accelerator.save_state(str(folder / "step_000001"))
        finally:
            accelerator._save_model_state_pre_hook.update(hooks)

    def trainable(folder: Path) -> None:
        save_checkpoint(folder, 1, {"epoch": 0, "batch_in_epoch": 1, "history": []}, accelerator)

    recipes = {"whole model (before)": whole, "what the stage trains (shipped)": trainable}
    seconds = {name: [] for name in recipes}
    sizes = {}
    for repeat in range(args.repeats):
        order = list(recipes) if repeat % 2 == 0 else list(reversed(recipes))
        for name in order:
            with tempfile.TemporaryDirectory() as tmp:
                start = time.perf_counter()
                recipes[name](Path(tmp))
                seconds[name].append(time.perf_counter() - start)
                sizes[name] = _bytes(Path(tmp))
    base = min(seconds["whole model (before)"])
    results = []
    print(f"{'checkpoint':34} {'best s':>7} {'MB':>8} {'speed-up':>9}")
    for name in recipes:
        best = min(seconds[name])
        results.append({"checkpoint": name, "seconds": [round(s, 3) for s in seconds[name]],
                        "best_seconds": round(best, 3), "megabytes": round(sizes[name] / 1e6, 1),
                        "speedup": round(base / best, 2)})
        print(f"{name:34} {best:7.2f} {sizes[name] / 1e6:8.1f} {base / best:8.2f}x")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"agent": str(args.agent), "profile": args.profile, "threads": args.threads,
                                    "parameters": counts, "results": results}, indent=2) + "\n")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
