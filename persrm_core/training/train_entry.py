"""The training process that `accelerate launch` starts: `python -m persrm_core.training.train_entry <job.json>`.

Reads the job spec written by `persrm_core.training.launch.write_job`, resumes from the newest checkpoint
in the job's work dir (when its fingerprint matches), trains in this process (`run_sft` /
`run_grpo`), and publishes the checkpoint and `training_log.json` to the job's out dir. Each
logged step is printed as one `persrm-log {json}` line, which the parent picks out of the stream.

Under Dagster Pipes (started by `PipesSubprocessClient`, see `launch.run_with_pipes`) the main
process also opens Pipes, sends each logged step as `context.log.info`, and at the end reports the
asset materialization with the curve summary as metadata.

`PERSRM_FAULT_EXIT_AT_STEP=N` makes the process die (exit 137, no cleanup, as if killed) when
step N ends: a fault drill for resuming across the process boundary.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
from pathlib import Path

from persrm_core.judging.judge_format import RenderLimits
from persrm_core.training.launch import LOG_PREFIX, read_job
from persrm_core.training.settings import GRPOSettings, TrainConfig
from persrm_core.training.trainers import latest_checkpoint, run_grpo, run_sft

CURVE_KEYS = {"sft": ("loss", "mean_token_accuracy"), "rft": ("reward", "completions/mean_length")}
FAULT_ENV = "PERSRM_FAULT_EXIT_AT_STEP"


def callbacks(stage: str, pipes=None, exit_at_step: int | None = None) -> list:
    """Trainer callbacks of the child: each log of the main process as a `persrm-log` line (and to
    Pipes when open); with `exit_at_step`, death without cleanup when that step ends, as if killed.
    (Built here so that a job that fails early never pays for importing transformers.)"""
    from transformers import TrainerCallback

    class StepLog(TrainerCallback):
        def on_log(self, args, state, control, logs=None, **kwargs):
            if not state.is_world_process_zero or not logs:
                return
            print(LOG_PREFIX + json.dumps({"stage": stage, "step": state.global_step, **logs}, default=str),
                  flush=True)
            if pipes is not None:
                pipes.log.info(f"{stage} step {state.global_step}: " + ", ".join(f"{k}={v}" for k, v in logs.items()))

    class ExitAtStep(TrainerCallback):
        def on_step_end(self, args, state, control, **kwargs):
            if state.global_step == exit_at_step:
                sys.stdout.flush()
                os._exit(137)

    return [StepLog()] + ([ExitAtStep()] if exit_at_step else [])


def curve_summary(stage: str, log: list[dict]) -> dict:
    """First and last value of the stage's curves, steps, and the run's own summary entries."""
    out: dict = {}
    for k in CURVE_KEYS[stage]:
        pts = [h[k] for h in log if k in h and "step" in h]
        if pts:
            name = k.replace("/", "_")
            out[f"{name}_first"] = round(float(pts[0]), 4)
            out[f"{name}_last"] = round(float(pts[-1]), 4)
    steps = [h["step"] for h in log if "step" in h]
    out["steps"] = max(steps) if steps else 0
    final = log[-1] if log and "step" not in log[-1] else {}
    out.update({k: v for k, v in final.items() if k != "stage" and v is not None})
    return out


def _is_main_process() -> bool:
    return int(os.environ.get("RANK", "0")) == 0


def _pipes_process() -> bool:
    from dagster_pipes import PipesEnvVarParamsLoader

    return PipesEnvVarParamsLoader().is_dagster_pipes_process()


def train(job: dict, pipes=None) -> list[dict]:
    stage = job["stage"]
    cfg = (TrainConfig if stage == "sft" else GRPOSettings)(**job["cfg"])
    limits = RenderLimits(**job["limits"])
    with open(job["train_pairs"], encoding="utf-8") as f:
        pairs = [json.loads(line) for line in f if line.strip()]
    model = Path(job["model_dir"])
    if model.is_absolute() and not model.exists():  # the parent makes every local folder absolute
        raise FileNotFoundError(f"model dir {model} does not exist")
    work = Path(job["work_dir"])
    resume = latest_checkpoint(work, job["fingerprint"])
    fault = os.environ.get(FAULT_ENV)
    run = run_sft if stage == "sft" else run_grpo
    return run(job["model_dir"], pairs, job["out_dir"], cfg, limits, work, resume,
               callbacks(stage, pipes, int(fault) if fault else None))


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print("usage: python -m persrm_core.training.train_entry <job.json>", file=sys.stderr)
        return 2
    job = read_job(args[0])
    with contextlib.ExitStack() as stack:
        pipes = None
        if _is_main_process() and _pipes_process():
            from dagster_pipes import open_dagster_pipes

            pipes = stack.enter_context(open_dagster_pipes())
        log = train(job, pipes)
        if pipes is not None and pipes.is_asset_step:
            pipes.report_asset_materialization(metadata=curve_summary(job["stage"], log))
    _leave_process_group()
    return 0


def _leave_process_group() -> None:
    """Tear down the torch.distributed group before the interpreter exits (see `_exit`)."""
    try:
        import torch.distributed as dist
    except ImportError:
        return
    if dist.is_available() and dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()


def _exit(rc: int) -> None:
    """Leave a finished rank of a multi-process run without interpreter teardown. Even with the
    process group destroyed, a rank can abort in a C++ destructor at shutdown ("terminate called
    without an active exception", exit -6: seen now and then in two-process SFT and GRPO runs)
    after its checkpoint was written and its Pipes messages closed, and accelerate then fails the
    whole finished run. Everything the run owes is done by now: outputs are published atomically,
    the Pipes context is closed, and the streams are flushed here."""
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        import logging

        logging.shutdown()
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(rc)
    sys.exit(rc)


if __name__ == "__main__":
    _exit(main())
