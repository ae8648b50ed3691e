"""`octopus train`: one entry point per stage, and `train all` chaining them for a profile.

    OUT/stage0_clip/clip.pt            the project's CLIP (left out of `all` when the agent's image tower is
                                       pretrained already: the quick profile reads the ImageNet trunk itself)
    OUT/init/agent                     the assembled agent before training (tokens added and initialised)
    OUT/stage1_alignment/agent         projector aligned on captions
    OUT/stage2_functional/agent        functional tokens learned (with `soup=N`: the mean of N seeds, each
                                       trained in OUT/stage2_functional/seed_<k>)
    OUT/reward_model                   stage 3's reward model (TRL RewardTrainer) and its pairwise accuracy
    OUT/stage3_rl/agent                GRPO on the stage-2 agent (best step by the held-out probe)
    OUT/agent                          the final agent (a copy of the last stage's)
    OUT/pipeline.json                  wall time per stage, stage-0 zero-shot scores

Every stage skips when its output exists and resumes from its checkpoints otherwise, so re-running the same
command after a kill continues where it stopped. Under `accelerate launch`, the main process assembles shared
files first and the others wait. The stage runners (training/loop.py, rl.py, reward_model.py, rewards.py) are
imported when their stage runs: they bring peft, trl and datasets, which `train stage0` and `data` never need.
"""

from __future__ import annotations

import json
import logging
import shutil
import time
from pathlib import Path

from octopus.model.agent import OctopusAgent
from octopus.model.delta import base_agent
from octopus.training.clip import ClipStageConfig, accelerator_available, train_clip, zero_shot
from octopus.training.data.build import BuildConfig, build
from octopus.training.data.concepts import CATEGORY_NAMES, CONCEPTS
from octopus.training.stages import STAGE_KINDS, Profile, profile

log = logging.getLogger(__name__)
STAGES = ("stage0", "stage1", "stage2", "stage3")


def ensure_data(data_dir: Path, prof: Profile, out_dir: Path | None = None) -> None:
    if (data_dir / "train.jsonl").is_file():
        warn_if_other_build(data_dir, prof)
        return

    log.info("no data in %s: building %d rows per function per language", data_dir, prof.data_n_per_function)
    started = time.perf_counter()
    build(data_dir, BuildConfig(n_per_function=prof.data_n_per_function,
                                captions_per_concept=prof.data_captions_per_concept))
    if out_dir is not None:
        _record(out_dir, "data_seconds", round(time.perf_counter() - started, 1))


def warn_if_other_build(data_dir: Path, prof: Profile) -> list[str]:
    """A data folder is used as it is; say so where its build (`build.json`) differs from what the profile would
    build, since its figures are then not the recipe's. Returns the differences it logged."""
    try:
        built = json.loads((data_dir / "build.json").read_text(encoding="utf-8"))["config"]
    except (OSError, ValueError, KeyError, TypeError):
        return []
    if not isinstance(built, dict):
        return []
    wanted = {"n_per_function": prof.data_n_per_function, "captions_per_concept": prof.data_captions_per_concept}
    differ = [f"{key} {built[key]} (the {prof.name} profile builds {value})"
              for key, value in wanted.items() if key in built and built[key] != value]
    if differ:
        log.warning("%s was built with %s; training on it as it is (build a fresh folder to follow the recipe)",
                    data_dir, ", ".join(differ))
    return differ


def git_commit() -> str:
    """The short commit of this checkout, '+changes' when tracked files differ from it ('unknown' outside git)."""
    import subprocess

    try:
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=True,
                              cwd=Path(__file__).parent).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], capture_output=True,
                               text=True, cwd=Path(__file__).parent).stdout.strip()
        return head + ("+changes" if dirty else "")
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def _record(out_dir: Path, key: str, value) -> None:
    from accelerate import PartialState

    if not PartialState().is_main_process:
        return
    path = out_dir / "pipeline.json"
    record = json.loads(path.read_text()) if path.is_file() else {}
    record[key] = value
    path.write_text(json.dumps(record, indent=2))


def run_stage0(prof: Profile, data_dir: Path, out_dir: Path, explicit: bool = False) -> None:
    """Train the profile's CLIP. In `all` only when the agent's image tower needs it (no pretrained weights);
    `explicit` (`octopus train stage0`) trains it anyway, for its zero-shot report."""
    from accelerate import PartialState

    if prof.clip is None:
        log.info("stage 0 skipped: the profile has no CLIP stage (%s)", prof.agent.vision.pretrained)
        return
    if prof.agent.vision.pretrained is not None and not explicit:
        log.info("stage 0 left out of the agent build: the image tower is %s already, and stage 0 trains only "
                 "the CLIP head and text tower, which the agent does not read (`octopus train stage0` still "
                 "trains it for its zero-shot report)", prof.agent.vision.pretrained)
        return
    started = time.perf_counter()
    stage_dir = out_dir / prof.clip.name
    existed = (stage_dir / "clip.pt").is_file()
    checkpoint = train_clip(data_dir, stage_dir, prof.clip)
    if prof.agent.vision.pretrained is None:
        prof.agent.vision.pretrained = str(checkpoint.resolve())
    state = PartialState()
    if not existed and state.is_main_process:
        scores = zero_shot(checkpoint, prof.clip.model, data_dir, mean=prof.clip.image_mean, std=prof.clip.image_std)
        (stage_dir / "zero_shot.json").write_text(json.dumps(scores, indent=2))
        _record(out_dir, "stage0_seconds", round(time.perf_counter() - started, 1))
        _record(out_dir, "stage0_zero_shot", scores)
        log.info("stage 0 zero-shot top-1: %s", scores)
    state.wait_for_everyone()


def _init_agent(prof: Profile, out_dir: Path) -> Path:
    target = out_dir / "init" / "agent"
    if not (target / "config.json").is_file():
        base_agent(prof.agent).save(target)  # seeded: the base a trained delta is packed against
    return target


def announce_processes(state) -> None:
    """Say how many processes train, and catch the launch that silently gives one: `accelerate launch --cpu
    --num_processes N` starts N processes only through mpirun, otherwise one process with MASTER_ADDR set."""
    import os

    log.info("training: %d process(es), distributed type %s, this is process %d on %s", state.num_processes,
             state.distributed_type.value if hasattr(state.distributed_type, "value") else state.distributed_type,
             state.process_index, state.device)
    if state.num_processes == 1 and "MASTER_ADDR" in os.environ and "WORLD_SIZE" not in os.environ:
        log.warning("a multi-process launch was asked for but this is the only process: on CPUs use "
                    "`torchrun --nproc_per_node N -m octopus.cli train ...` (accelerate launch --cpu needs mpirun)")


def name_the_concepts(prof: Profile) -> None:
    """Name slots asked for (`--set 'projector.name_slots={"en": 4, "zh": 10}'`) with no names given: the
    agent can name every object of the data's concept table, in English and Chinese; with
    `projector.slot_text=category` each object's slots spell its category's name instead."""
    projector = prof.agent.projector
    if projector.slot_text not in ("name", "category"):
        raise ValueError(f"projector.slot_text is 'name' or 'category', got {projector.slot_text!r}")
    if projector.name_slots and not projector.names:
        projector.names = [{"en": c.en, "zh": c.zh} for c in CONCEPTS]
        if projector.slot_text == "category":
            for entry, c in zip(projector.names, CONCEPTS):
                en, zh = CATEGORY_NAMES[c.category]
                entry["show"] = {"en": en, "zh": zh}


def apply_overrides(prof: Profile, overrides: tuple[str, ...]) -> None:
    """Each `--set` to its stage by name (`stage0_clip.epochs=5`, `stage2_functional.lr=1e-3`) or to the agent."""
    for assignment in overrides:
        prof.override(assignment)


def _run(prof: Profile, index: int, data_dir: Path, out_dir: Path, max_steps: int | None) -> Path:
    from octopus.training.loop import run_stage

    stage = prof.stages[index]
    previous = out_dir / (prof.stages[index - 1].name if index else "init") / "agent"
    if not (previous / "config.json").is_file():
        raise FileNotFoundError(f"{stage.name} needs {previous}; run the earlier stages first")
    if (out_dir / stage.name / "agent" / "config.json").is_file():
        log.info("stage %s: done already", stage.name)  # (and its recorded wall time stays the real one)
        return out_dir / stage.name / "agent"
    started = time.perf_counter()
    if stage.kind == "rl":
        result = _run_rl(prof, stage, previous, data_dir, out_dir, max_steps)
    elif stage.soup > 1:
        result = _run_soup(stage, previous, data_dir, out_dir / stage.name, max_steps)
    else:
        result = run_stage(OctopusAgent.load(previous).train(), stage, data_dir, out_dir / stage.name, max_steps)
    _record(out_dir, f"{stage.name}_seconds_last_run", round(time.perf_counter() - started, 1))
    return result


def _run_soup(stage, previous: Path, data_dir: Path, stage_dir: Path, max_steps: int | None) -> Path:
    """`stage.soup` seeds of one stage, each in `stage_dir/seed_<k>` (each skips when done and resumes from its
    checkpoints), then the mean of their weights as `stage_dir/agent`."""
    from dataclasses import replace

    from accelerate import PartialState

    from octopus.training.loop import run_stage
    from octopus.training.soup import soup

    seeds = []
    for k in range(stage.soup):
        seed = replace(stage, seed=stage.seed + k, soup=1)
        log.info("stage %s: seed %d of %d (seed=%d)", stage.name, k + 1, stage.soup, seed.seed)
        seeds.append(run_stage(OctopusAgent.load(previous).train(), seed, data_dir, stage_dir / f"seed_{k}",
                               max_steps))
    state = PartialState()
    if state.is_main_process:
        soup(seeds, stage_dir / "agent")
        (stage_dir / "stage.json").write_text(json.dumps(stage.to_dict(), indent=2))
        log.info("stage %s: the soup of %d seeds written to %s", stage.name, stage.soup, stage_dir / "agent")
    state.wait_for_everyone()
    return stage_dir / "agent"


def _mined(stage, previous: Path, data_dir: Path, stage_dir: Path, on_policy: bool) -> dict:
    """Stage 3's prompts (and, when a reward model is to be trained, the SFT model's wrong calls as its
    on-policy negatives), mined once by the main process and kept for a resume."""
    from accelerate import PartialState

    from octopus.training.rl import mine_prompts, sft_calls

    path = stage_dir / "prompts.json"
    state = PartialState()
    with state.main_process_first():
        if state.is_main_process:
            mined = json.loads(path.read_text()) if path.is_file() else None
            if mined is None:
                stage_dir.mkdir(parents=True, exist_ok=True)
                mined = mine_prompts(OctopusAgent.load(previous), stage, data_dir, stage_dir / "vision_cache",
                                     with_on_policy=on_policy)
            elif on_policy and not mined["on_policy"] and mined.get("wrong"):
                mined["on_policy"] = sft_calls(OctopusAgent.load(previous), mined["wrong"])
            else:
                mined = None  # the file holds what is needed
            if mined is not None:
                path.with_suffix(".tmp").write_text(json.dumps(mined, ensure_ascii=False))
                path.with_suffix(".tmp").rename(path)
    return json.loads(path.read_text())


def train_reward(prof: Profile, data_dir: Path, out_dir: Path, sft: Path | None = None) -> Path:
    """Stage 3's reward model into OUT/reward_model (skips when it exists), with the SFT model's own wrong calls
    as extra negatives when the stage-2 agent is there."""
    from octopus.training.reward_model import is_trained, train_reward_model

    stage = next(s for s in prof.stages if s.kind == "rl")
    target = out_dir / "reward_model"
    existed = is_trained(target)
    on_policy = []
    # the SFT model's wrong calls (~1.4 s each on 2 cores) only feed a reward model still to be trained
    if not existed and sft is not None and (sft / "config.json").is_file():
        on_policy = _mined(stage, sft, data_dir, out_dir / stage.name, on_policy=True)["on_policy"]
    started = time.perf_counter()
    rl = stage.rl
    result = train_reward_model(prof.agent.lm, data_dir, target, pairs=rl.reward_model_pairs,
                                steps=rl.reward_model_steps, batch_size=rl.reward_model_batch, lr=rl.reward_model_lr,
                                seed=stage.seed, on_policy=on_policy, train_layers=rl.reward_model_layers)
    if not existed:
        _record(out_dir, "reward_model_seconds", round(time.perf_counter() - started, 1))
    return result


def _run_rl(prof: Profile, stage, previous: Path, data_dir: Path, out_dir: Path, max_steps: int | None) -> Path:
    from octopus.training.reward_model import RewardModel, is_trained
    from octopus.training.rewards import build_rewards
    from octopus.training.rl import run_rl_stage

    rl = stage.rl
    stage_dir = out_dir / stage.name
    needs_reward_model = bool(rl.rewards.get("reward_model")) and not rl.reward_model
    trained = is_trained(out_dir / "reward_model")
    mined = _mined(stage, previous, data_dir, stage_dir, on_policy=needs_reward_model and not trained)
    reward_model = None
    if rl.rewards.get("reward_model"):
        location = Path(rl.reward_model) if rl.reward_model else train_reward(prof, data_dir, out_dir, previous)
        reward_model = RewardModel(location)
    rewards = build_rewards(rl.rewards, environment_config=rl.environment_config, reward_model=reward_model,
                            judge_url=rl.judge_url, judge_model=rl.judge_model, seed=stage.seed)
    return run_rl_stage(OctopusAgent.load(previous).train(), stage, data_dir, stage_dir, rewards, max_steps, mined)


def train(which: str, profile_name: str, data_dir: Path, out_dir: Path, max_steps: int | None = None,
          overrides: tuple[str, ...] = ()) -> Path:
    """Run one stage (`stage0` ... `stage3`), `reward` (stage 3's reward model alone) or `all` for a profile;
    returns the newest agent dir (the reward model's dir for `reward`).

    `overrides` are `section.key=value` assignments on the agent config, e.g. `vision.model=ViT-B-32` and
    `vision.pretrained=openai` (or a local checkpoint path) to use a pretrained CLIP and skip stage 0, or on a
    stage's hyper-parameters by its name, e.g. `stage2_functional.max_examples=6000`.
    """
    from accelerate import PartialState

    state = PartialState(cpu=not accelerator_available())  # on CPUs, N launched processes form a gloo group
    announce_processes(state)
    prof = profile(profile_name)
    apply_overrides(prof, overrides)
    name_the_concepts(prof)
    out_dir.mkdir(parents=True, exist_ok=True)
    _record(out_dir, "commit", git_commit())  # the code that trained it, for the model card
    with state.main_process_first():
        ensure_data(data_dir, prof, out_dir)
    clip_checkpoint = out_dir / ClipStageConfig.name / "clip.pt"
    if which in ("all", "stage0"):
        run_stage0(prof, data_dir, out_dir, explicit=which == "stage0")
        if which == "stage0":
            return clip_checkpoint
    if prof.clip is not None and prof.agent.vision.pretrained is None:
        if not clip_checkpoint.is_file():
            raise FileNotFoundError(f"no stage-0 CLIP at {clip_checkpoint}; run `octopus train stage0` first")
        prof.agent.vision.pretrained = str(clip_checkpoint.resolve())
    with state.main_process_first():
        _init_agent(prof, out_dir)
    if which == "reward":
        return train_reward(prof, data_dir, out_dir, out_dir / prof.stages[prof.index("functional")].name / "agent")
    indices = range(len(prof.stages)) if which == "all" else [prof.index(STAGE_KINDS[which])]
    result = out_dir / "init" / "agent"
    for index in indices:
        result = _run(prof, index, data_dir, out_dir, max_steps)
    if which == "all":
        final = out_dir / "agent"
        if state.is_main_process:
            shutil.rmtree(final, ignore_errors=True)
            shutil.copytree(result, final)
        state.wait_for_everyone()
        result = final
    return result
