"""Training in a process of its own: `accelerate launch -m persrm_core.training.train_entry <job.json>`.

The parent (`train_sft` / `train_grpo` with `launcher="accelerate"`, or a Dagster asset through
`run_with_pipes`) prepares the fingerprinted work dir exactly as in-process training does, writes a
job spec there (`write_job`), and starts the child with `launch_command`. The child
(`persrm_core.training.train_entry`) resumes from the newest checkpoint in the work dir, trains, publishes
the checkpoint and `training_log.json` to the out dir, and removes the work dir. A child that is
killed leaves its checkpoints; the next launch with the same model, data and settings resumes.

Job spec (`<work_dir>/job/job.json`), every path absolute:
    {"stage": "sft" | "rft", "model_dir", "train_pairs" (a JSONL file beside the spec), "out_dir",
     "work_dir", "fingerprint", "cfg" (TrainConfig / GRPOSettings as a dict), "limits" (RenderLimits)}
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import re
import shlex
import signal
import socket
import subprocess
import sys
from collections import deque
from pathlib import Path

import yaml

from persrm_core.judging.judge_format import RenderLimits
from persrm_core.training.settings import LaunchSettings, check_settings
from persrm_core.training.trainers import prepare_work_dir, run_fingerprint

log = logging.getLogger(__name__)

REPO_ROOT = Path(__file__).resolve().parents[2]
STAGES = ("sft", "rft")
LOG_PREFIX = "persrm-log "  # the child prints each logged step as this prefix + one JSON object
TAIL_LINES = 20  # lines of the child's output quoted when it fails
JOB_DIR = "job"


def resolve_config_path(path: str | Path) -> Path:
    """A config file named in params: absolute, else relative to the working directory, else to the
    repository root (where `configs/` lives)."""
    p = Path(path).expanduser()
    for candidate in ((p,) if p.is_absolute() else (Path.cwd() / p, REPO_ROOT / p)):
        if candidate.is_file():
            return candidate.resolve()
    raise FileNotFoundError(f"config file {path} not found (looked in {Path.cwd()} and {REPO_ROOT})")


def _local_or_id(model_dir: str | Path) -> str:
    """A local folder as an absolute path (so the child finds it wherever it runs, and reports it
    by that path if it is missing); a hub id ("org/name", "name") unchanged."""
    text = str(model_dir)
    p = Path(text).expanduser()
    local = (isinstance(model_dir, Path) or p.exists() or text.startswith(("/", ".", "~"))
             or text.count("/") >= 2)
    return str(p.resolve()) if local else text


def _read_yaml(path: Path) -> dict:
    return yaml.safe_load(path.read_text(encoding="utf-8")) or {}


def deepspeed_file(cfg: LaunchSettings) -> str | None:
    """The DeepSpeed JSON this run uses, absolute: `cfg.deepspeed`, else the one named by a
    DeepSpeed-type `cfg.accelerate_config` (its `deepspeed_config_file`; relative = to the yaml's
    folder, the working directory or the repository root). Both set and different is an error."""
    own = str(resolve_config_path(cfg.deepspeed)) if cfg.deepspeed else None
    if not cfg.accelerate_config:
        return own
    acc_path = resolve_config_path(cfg.accelerate_config)
    acc = _read_yaml(acc_path)
    named = (acc.get("deepspeed_config") or {}).get("deepspeed_config_file")
    if acc.get("distributed_type") != "DEEPSPEED":
        if own:
            raise ValueError(f"deepspeed={cfg.deepspeed} needs an accelerate config of distributed_type DEEPSPEED; "
                             f"{acc_path} has {acc.get('distributed_type')!r}")
        return None
    if not named:
        return own
    p = Path(named)
    if p.is_absolute():
        from_yaml = p.resolve()
    elif (acc_path.parent / p).is_file():
        from_yaml = (acc_path.parent / p).resolve()
    else:
        from_yaml = resolve_config_path(p)
    if own and Path(own) != from_yaml:
        raise ValueError(f"deepspeed={own} differs from the deepspeed_config_file {from_yaml} of {acc_path}")
    return str(from_yaml)


def write_job(stage: str, model_dir: str | Path, train_pairs: list[dict], out_dir: str | Path,
              cfg: LaunchSettings, limits: RenderLimits, work_dir: str | Path | None = None) -> Path:
    """Prepare the work dir (kept, and resumed from, when model, data and settings match its
    fingerprint; emptied otherwise), write the train pairs and the job spec into it, and return
    the spec's path."""
    if stage not in STAGES:
        raise ValueError(f"stage must be one of {STAGES}, not {stage!r}")
    check_settings(cfg)
    work = Path(work_dir or Path(out_dir) / "_work").resolve()
    run = run_fingerprint(stage, model_dir, cfg, limits, train_pairs)
    prepare_work_dir(work, run)
    job_dir = work / JOB_DIR
    job_dir.mkdir(parents=True, exist_ok=True)
    pairs_path = job_dir / "train_pairs.jsonl"
    with pairs_path.open("w", encoding="utf-8") as f:
        for p in train_pairs:
            f.write(json.dumps(p, ensure_ascii=False, default=str) + "\n")
    settings = dataclasses.asdict(cfg)
    settings["deepspeed"] = deepspeed_file(cfg)
    settings["accelerate_config"] = str(resolve_config_path(cfg.accelerate_config)) if cfg.accelerate_config else None
    job = {"stage": stage, "model_dir": _local_or_id(model_dir), "train_pairs": str(pairs_path),
           "out_dir": str(Path(out_dir).resolve()), "work_dir": str(work), "fingerprint": run,
           "cfg": settings, "limits": dataclasses.asdict(limits)}
    job_path = job_dir / "job.json"
    job_path.write_text(json.dumps(job, indent=1), encoding="utf-8")
    return job_path


def read_job(job_path: str | Path) -> dict:
    return json.loads(Path(job_path).read_text(encoding="utf-8"))


def default_accelerate_config(cfg: LaunchSettings, deepspeed: str | None = None) -> dict:
    """The accelerate config used when `cfg.accelerate_config` is None: `num_processes` processes on
    this machine; CPU when there is no CUDA; bf16 mixed precision when `cfg.bf16`; DeepSpeed with
    `deepspeed` (whose JSON then owns mixed precision, so the yaml leaves it out, as accelerate
    requires)."""
    import torch

    cuda = torch.cuda.is_available()
    n = cfg.num_processes
    out = {"compute_environment": "LOCAL_MACHINE", "debug": False, "num_machines": 1, "machine_rank": 0,
           "num_processes": n, "main_training_function": "main", "rdzv_backend": "static",
           "same_network": True, "use_cpu": not cuda, "gpu_ids": "all" if cuda else None}
    if deepspeed:
        stage = json.loads(Path(deepspeed).read_text(encoding="utf-8")).get("zero_optimization", {}).get("stage", 0)
        out.update(distributed_type="DEEPSPEED", use_cpu=False,
                   deepspeed_config={"deepspeed_config_file": deepspeed, "deepspeed_multinode_launcher": "standard",
                                     "zero3_init_flag": stage == 3})
    else:
        out.update(distributed_type="NO" if n == 1 else ("MULTI_GPU" if cuda else "MULTI_CPU"),
                   mixed_precision="bf16" if cfg.bf16 else "no")
    return {k: v for k, v in out.items() if v is not None}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def launch_command(stage: str, job_path: str | Path,
                   cfg: LaunchSettings) -> tuple[list[str], dict[str, str]]:
    """The argv that trains `job_path` under `accelerate launch`, and the environment variables to
    add to the current environment for it (not the whole environment: `PipesSubprocessClient`
    and `run_job` merge them over `os.environ`).

    `cfg.accelerate_config` is used as given (resolved to an absolute path); None writes the
    generated default (`default_accelerate_config`) beside the job spec. `--num_processes` is
    always `cfg.num_processes`; a DeepSpeed JSON is passed as an absolute `--deepspeed_config_file`
    so a relative path in the yaml cannot depend on the working directory; a distributed run whose
    yaml names no port gets a free one (so concurrent runs do not collide on 29500)."""
    if stage not in STAGES:
        raise ValueError(f"stage must be one of {STAGES}, not {stage!r}")
    job_path = Path(job_path).resolve()
    ds = deepspeed_file(cfg)
    if cfg.accelerate_config:
        config = resolve_config_path(cfg.accelerate_config)
        acc = _read_yaml(config)
    else:
        acc = default_accelerate_config(cfg, ds)
        config = job_path.parent / "accelerate_config.yaml"
        config.write_text(yaml.safe_dump(acc, sort_keys=True), encoding="utf-8")
    argv = [sys.executable, "-m", "accelerate.commands.launch", "--config_file", str(config),
            "--num_processes", str(cfg.num_processes)]
    if ds:
        argv += ["--deepspeed_config_file", ds]
    distributed = cfg.num_processes > 1 or acc.get("distributed_type", "NO") != "NO"
    if distributed and not acc.get("main_process_port"):
        argv += ["--main_process_port", str(_free_port())]
    argv += ["-m", "persrm_core.training.train_entry", str(job_path)]
    pythonpath = os.pathsep.join(p for p in (str(REPO_ROOT), os.environ.get("PYTHONPATH", "")) if p)
    env = {"PERSRM_STAGE": stage, "PYTHONUNBUFFERED": "1", "PYTHONPATH": pythonpath,
           "TOKENIZERS_PARALLELISM": os.environ.get("TOKENIZERS_PARALLELISM", "false"),
           # Piped output is not a terminal: one progress-bar line every few seconds, not every step.
           "TQDM_MININTERVAL": os.environ.get("TQDM_MININTERVAL", "5")}
    return argv, env


def _log_line(stage: str, text: str) -> None:
    """Echo a line of the child's output; logged steps also go to this module's logger."""
    sys.stdout.write(text + "\n")
    sys.stdout.flush()
    at = text.find(LOG_PREFIX)  # a progress bar's redraw may share the line
    if at >= 0:
        try:
            rec = json.loads(text[at + len(LOG_PREFIX):])
        except json.JSONDecodeError:
            return
        step = rec.pop("step", "?")
        rec.pop("stage", None)
        log.info("%s step %s: %s", stage, step, ", ".join(f"{k}={v}" for k, v in rec.items()))


def run_job(stage: str, job_path: str | Path, cfg: LaunchSettings) -> list[dict]:
    """Run the job's training under `accelerate launch`, streaming the child's output line by line
    to stdout (logged steps also to the logger), and return the log the child wrote. A non-zero
    exit raises RuntimeError with the exit code and the last lines of output; an interrupt of this
    process stops the child's whole process group."""
    job = read_job(job_path)
    argv, env = launch_command(stage, job_path, cfg)
    log.info("%s: %s", stage, shlex.join(argv))
    tail: deque[str] = deque(maxlen=4 * TAIL_LINES)
    proc = subprocess.Popen(argv, env={**os.environ, **env}, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            start_new_session=True)
    try:
        for raw in proc.stdout:
            text = raw.decode("utf-8", errors="replace").rstrip("\n")
            last = text.rsplit("\r", 1)[-1].rstrip()  # a progress bar's final state, not every redraw
            if last:
                tail.append(last)
            _log_line(stage, text)
        code = proc.wait()
    except BaseException:
        _stop(proc)
        raise
    if code != 0:
        code, lines = child_failure(code, list(tail))
        raise RuntimeError(f"{stage} training under `accelerate launch` exited with code {code}; "
                           f"last {len(lines)} lines of its output:\n" + "\n".join(lines))
    return read_log(job)


_LAUNCHER_ERROR = re.compile(r"CalledProcessError: Command .* (?:returned non-zero exit status (-?\d+)"
                             r"|died with <Signals\.\w+: (\d+)>)")


def child_failure(code: int, lines: list[str]) -> tuple[int, list[str]]:
    """The training process's own exit code and the last `TAIL_LINES` lines of output that matter.
    accelerate's single-process launcher answers a failed child with exit 1 and a traceback of its
    own (`CalledProcessError`); that traceback is dropped and the child's status taken from it
    (a signal N reads as 128 + N, as a shell would)."""
    if lines and (m := _LAUNCHER_ERROR.search(lines[-1])):
        code = int(m.group(1)) if m.group(1) is not None else 128 + int(m.group(2))
        starts = [i for i, line in enumerate(lines) if line.startswith("Traceback (most recent call last)")]
        if starts:
            lines = lines[:starts[-1]]
    return code, lines[-TAIL_LINES:]


def _stop(proc: subprocess.Popen) -> None:
    """Stop the launcher and the training processes it started (they share its session)."""
    if proc.poll() is not None:
        return
    for sig, wait in ((signal.SIGTERM, 15), (signal.SIGKILL, 5)):
        try:
            os.killpg(proc.pid, sig)
            proc.wait(timeout=wait)
            return
        except ProcessLookupError:
            return
        except subprocess.TimeoutExpired:
            continue


def read_log(job: dict | str | Path) -> list[dict]:
    """The training log the child published in the job's out dir."""
    job = job if isinstance(job, dict) else read_job(job)
    path = Path(job["out_dir"]) / "training_log.json"
    if not path.is_file():
        raise RuntimeError(f"the {job['stage']} training process exited cleanly but wrote no log at {path}")
    return json.loads(path.read_text(encoding="utf-8"))


class PipesRunner:
    """Runs training jobs through a Dagster Pipes client from an asset's `context`: the child's logged
    steps reach the Dagster UI as log events, and what the child reports (`report_asset_materialization`,
    its curve summary) is kept in `reports`, for the asset to publish. The assets build one and pass
    it down (`pipeline.sft_checkpoint(s, runner=...)` -> `train_sft(..., runner=...)`)."""

    def __init__(self, context, pipes_client):
        self.context, self.client = context, pipes_client
        self.reports: list[dict] = []

    def __call__(self, stage: str, job_path: str | Path, cfg: LaunchSettings) -> None:
        invocation = run_with_pipes(self.context, self.client, stage, job_path, cfg)
        self.reports.append(dict(invocation.get_materialize_result().metadata or {}))


def run_stage(stage: str, model_dir: str | Path, train_pairs: list[dict], out_dir: str | Path,
              cfg: LaunchSettings, limits: RenderLimits, work_dir: str | Path | None = None,
              runner=None) -> list[dict]:
    """`write_job`, then run it: with `runner` (a `PipesRunner`, or any callable of (stage, job path,
    cfg)) when given, else `run_job` in a plain subprocess. What `train_sft` / `train_grpo` do with
    `launcher="accelerate"`; returns the training log the child wrote."""
    job_path = write_job(stage, model_dir, train_pairs, out_dir, cfg, limits, work_dir)
    if runner is None:
        return run_job(stage, job_path, cfg)
    job = read_job(job_path)  # before the run: the child removes the work dir holding it
    runner(stage, job_path, cfg)
    return read_log(job)


def run_with_pipes(context, pipes_client, stage: str, job_path: str | Path, cfg: LaunchSettings):
    """Run a job written by `write_job` through a Dagster `PipesSubprocessClient`, from inside an
    asset: the same command as `run_job`, so the child opens Dagster Pipes, sends each logged step
    as `context.log.info` and reports the asset's materialization with the curve summary.

    Returns the `PipesClientCompletedInvocation`; an asset returns
    `invocation.get_materialize_result()` (the child's metadata), and may read the full curve with
    `read_log(job)` (read the job first: the child deletes the work dir holding it on success).
    A failed child raises `DagsterPipesExecutionError`. Sketch:

        job = launch.write_job("sft", base, train_pairs, tmp, s.sft, s.render, work_dir)
        invocation = launch.run_with_pipes(context, pipes_subprocess_client, "sft", job, s.sft)
        return invocation.get_materialize_result()
    """
    argv, env = launch_command(stage, job_path, cfg)
    context.log.info(f"{stage}: {shlex.join(argv)}")
    return pipes_client.run(context=context, command=argv, env=env,
                            extras={"stage": stage, "job": str(Path(job_path).resolve())})
