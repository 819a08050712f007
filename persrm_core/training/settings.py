"""Training settings: what SFT and GRPO compute (`TrainConfig`, `GRPOSettings`) on the launch settings
they share (`LaunchSettings`), checked before a run starts, and the logging integrations (`report_to`)
they may write to.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

LAUNCHERS = ("accelerate", "inprocess")
VLLM_MODES = ("colocate", "server")

# Settings that choose where training runs but not what it computes: left out of the work-dir
# fingerprint, so a run started in-process resumes under `accelerate launch` and back.
LAUNCH_ONLY_FIELDS = ("launcher", "report_to", "logging_dir")  # where it runs and logs, not what it computes


@dataclass
class LaunchSettings:
    """What SFT and RFT share: where a run goes and how it scales (`launcher`, `accelerate_config`,
    `num_processes`, `deepspeed`, `bf16`), LoRA, the seed and the training-log integrations.

    launcher: "accelerate" = train in its own process via `accelerate launch`; "inprocess" = here.
    accelerate_config: an accelerate config yaml (see configs/accelerate/); None = one generated
      per run: `num_processes` processes, CPU when there is no CUDA, bf16 mixed precision when
      `bf16`, DeepSpeed with `deepspeed` when that is set.
    num_processes: processes `accelerate launch` starts (passed on its command line, so it wins
      over the yaml's own `num_processes`).
    deepspeed: a DeepSpeed JSON (configs/deepspeed/zero2.json, zero3.json) for TrainingArguments;
      with `accelerate_config` of DEEPSPEED type and this unset, the yaml's `deepspeed_config_file`.
    lora_r: 0 = full fine-tune; > 0 = PEFT LoRA of that rank (`lora_alpha`, `lora_dropout`,
      `lora_target_modules`). The published checkpoint is still a plain merged model.
    """

    seed: int = 0
    bf16: bool = False
    deepspeed: str | None = None  # path to a DeepSpeed JSON config (launched under accelerate)
    launcher: str = "accelerate"  # "accelerate" (own process, `accelerate launch`) or "inprocess"
    accelerate_config: str | None = None  # accelerate config yaml; None = a generated default
    num_processes: int = 1
    lora_r: int = 0  # 0 = full fine-tune; > 0 = LoRA rank, merged into the published model
    lora_alpha: int = 16
    lora_dropout: float = 0.05
    lora_target_modules: str | list[str] = "all-linear"
    report_to: str | list[str] = "none"  # training-log integrations: none | tensorboard (offline) | wandb | mlflow ...
    logging_dir: str | None = None  # where they write; None = beside the checkpoints (the pipeline sets a folder)


@dataclass
class TrainConfig(LaunchSettings):
    """SFT settings (`sft:` in params.yaml), with the launch settings of `LaunchSettings`.

    packing: TRL packing (best-fit decreasing, padding-free). The loss stays on the completion
      only: TRL 1.16 turns `completion_mask` into -100 labels before it packs, and packed
      sequences are kept apart by their position ids.
    """

    learning_rate: float = 1e-3
    epochs: float = 1.0
    max_steps: int = -1  # overrides epochs when > 0
    batch_size: int = 8
    grad_accum: int = 1
    max_length: int = 1024
    warmup_ratio: float = 0.05
    weight_decay: float = 0.0
    logging_steps: int = 5
    rejection_sampling: bool = True  # SFT only on traces whose evidence agrees with the label
    save_steps: int = 50  # checkpoint every N steps; a re-run after a crash resumes from the last
    traces: str = "offline"  # offline (measured stylometric trace writer) | teacher (an LLM via `generation`)
    teacher_fallback: str = "none"  # with teacher traces: "offline" = pairs the teacher got wrong get an offline trace
    teacher_pairs: int = 0  # > 0: ask the teacher about at most this many train pairs (a seeded sample)
    packing: bool = False
    max_traces: int = 0  # > 0: train on at most this many traces (a seeded sample after rejection sampling)
    both_orders: bool = True  # each pair's trace in both A/B orders: the verdict follows the evidence, not a side


@dataclass
class GRPOSettings(LaunchSettings):
    """RFT settings (`rft:` in params.yaml), with the launch settings of `LaunchSettings`.
    `vllm_mode` ("colocate" or "server") applies when `use_vllm`."""

    learning_rate: float = 5e-5
    max_steps: int = 30
    batch_size: int = 8  # completions per device step (a multiple of num_generations)
    num_generations: int = 4
    max_completion_length: int = 96
    temperature: float = 1.0
    beta: float = 0.0
    use_vllm: bool = False
    logging_steps: int = 2
    save_steps: int = 10
    vllm_mode: str = "colocate"  # with use_vllm: "colocate" (in the trainer) or "server" (`trl vllm-serve`)


# report_to names and the packages that provide them (any one of them will do)
REPORTERS = {"tensorboard": ("tensorboard", "tensorboardX"), "wandb": ("wandb",), "mlflow": ("mlflow",),
             "trackio": ("trackio",), "comet_ml": ("comet_ml",), "clearml": ("clearml",), "dvclive": ("dvclive",)}


def reporters(cfg: LaunchSettings) -> list[str]:
    """The `report_to` integrations as a list ([] for "none")."""
    names = [cfg.report_to] if isinstance(cfg.report_to, str) else list(cfg.report_to)
    return [n for n in names if n != "none"]


def _report_setup(cfg: LaunchSettings, stage: str) -> list[str] | str:
    """The TrainingArguments `report_to`; with TensorBoard, its log folder: one subfolder a run
    under `logging_dir` (transformers reads it from TENSORBOARD_LOGGING_DIR)."""
    names = reporters(cfg)
    if "tensorboard" in names and cfg.logging_dir:
        import time

        run = Path(cfg.logging_dir) / f"{stage}-{time.strftime('%Y%m%d-%H%M%S')}"
        os.environ["TENSORBOARD_LOGGING_DIR"] = str(run)
        print(f"{stage}: TensorBoard logs in {run} (tensorboard --logdir {cfg.logging_dir})", flush=True)
    return names or "none"


def check_settings(cfg: LaunchSettings) -> None:
    """Reject values that would only fail deep inside a training process."""
    if cfg.launcher not in LAUNCHERS:
        raise ValueError(f"launcher must be one of {LAUNCHERS}, not {cfg.launcher!r}")
    if cfg.num_processes < 1:
        raise ValueError(f"num_processes must be >= 1, not {cfg.num_processes}")
    if cfg.lora_r < 0:
        raise ValueError(f"lora_r must be >= 0 (0 = full fine-tune), not {cfg.lora_r}")
    if cfg.num_processes > 1 and cfg.launcher == "inprocess":
        raise ValueError("num_processes > 1 needs launcher='accelerate'")
    if isinstance(cfg, GRPOSettings) and cfg.vllm_mode not in VLLM_MODES:
        raise ValueError(f"vllm_mode must be one of {VLLM_MODES}, not {cfg.vllm_mode!r}")
    import importlib.util

    for name in reporters(cfg):
        if name not in REPORTERS:
            raise ValueError(f"report_to: {name!r} is not one of none, {', '.join(REPORTERS)}")
        if not any(importlib.util.find_spec(m) for m in REPORTERS[name]):
            raise ValueError(f"report_to: {name} needs the {REPORTERS[name][0]} package, which is not installed "
                             f"(pip install {REPORTERS[name][0]})")


def _has_cuda() -> bool:
    import torch

    return torch.cuda.is_available()
