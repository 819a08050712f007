"""Sensors: request a full retrain when new exemplar files land in the incoming folder, and record
every failed run of this code location as one JSON line.

`new_exemplars_sensor` only *requests* runs: it never copies, moves or reads the files it sees.
The chain reads exemplars from `paths.raw` in params.yaml (`data/raw/` by default), so a file in
the incoming folder feeds training only once it has been copied there (see the README)."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
from pathlib import Path

from dagster import (
    DefaultSensorStatus,
    RunFailureSensorContext,
    RunRequest,
    SensorEvaluationContext,
    SensorResult,
    SkipReason,
    run_failure_sensor,
    sensor,
)

from orchestration.schedules import FULL_RETRAIN_JOB, automation_tags, current_profile, profile_run_config
from persrm_core.config import default_params_path

INCOMING_ENV = "PERSRM_INCOMING"
DEFAULT_INCOMING = "data/incoming"
FAILURE_LOG = "data/reports/run_failures.jsonl"
WATCHED_SUFFIXES = (".txt", ".jsonl", ".json")


def project_dir() -> Path:
    """The directory of the params file: relative paths resolve against it, as in `load_settings`."""
    return default_params_path().resolve().parent


def _resolve(path: str) -> Path:
    p = Path(path).expanduser()
    return p if p.is_absolute() else project_dir() / p


def incoming_dir() -> Path:
    """$PERSRM_INCOMING, else `data/incoming`; relative to the params file's directory."""
    return _resolve(os.environ.get(INCOMING_ENV) or DEFAULT_INCOMING)


def failure_log_path() -> Path:
    return _resolve(FAILURE_LOG)


def scan(folder: Path) -> dict[str, list[int]]:
    """Relative POSIX path -> [mtime_ns, size] of each watched file below `folder` (hidden names skipped)."""
    found: dict[str, list[int]] = {}
    for path in sorted(folder.rglob("*")):
        rel = path.relative_to(folder)
        if any(part.startswith(".") for part in rel.parts) or path.suffix.lower() not in WATCHED_SUFFIXES:
            continue
        try:
            if not path.is_file():
                continue
            st = path.stat()
        except OSError:  # removed while scanning
            continue
        found[rel.as_posix()] = [st.st_mtime_ns, st.st_size]
    return found


def _load_cursor(cursor: str | None) -> dict[str, list[int]]:
    if not cursor:
        return {}
    try:
        data = json.loads(cursor)
    except json.JSONDecodeError:
        return {}
    return {k: list(v) for k, v in data.items()} if isinstance(data, dict) else {}


def run_key_for(new: dict[str, list[int]]) -> str:
    """A stable key for a set of file fingerprints: the same files, unchanged, give the same key."""
    digest = hashlib.sha256(json.dumps(sorted(new.items()), separators=(",", ":")).encode()).hexdigest()
    return f"new-exemplars-{digest[:20]}"


def _files_tag(names: list[str], limit: int = 200) -> str:
    text = ", ".join(names)
    return text if len(text) <= limit else text[: limit - 3] + "..."


@sensor(
    name="new_exemplars_sensor",
    job_name=FULL_RETRAIN_JOB,
    minimum_interval_seconds=60,
    default_status=DefaultSensorStatus.STOPPED,
    description="Requests one full retrain when new or changed .txt/.jsonl/.json files appear in the incoming "
                f"folder (${INCOMING_ENV}, default {DEFAULT_INCOMING}/). It does not copy them into data/raw.",
)
def new_exemplars_sensor(context: SensorEvaluationContext) -> SensorResult:
    folder = incoming_dir()
    seen = _load_cursor(context.cursor)
    if not folder.is_dir():
        return SensorResult(skip_reason=SkipReason(f"incoming folder {folder} does not exist"),
                            cursor=context.cursor)
    current = scan(folder)
    new = {k: v for k, v in current.items() if seen.get(k) != v}
    # The cursor is what the folder holds now: deleted files drop out of it.
    cursor = json.dumps(current, sort_keys=True, separators=(",", ":"))
    if not new:
        return SensorResult(skip_reason=SkipReason(f"no new or changed files in {folder} ({len(current)} seen)"),
                            cursor=cursor)
    names = sorted(new)
    profile = current_profile()
    context.log.info(f"{len(names)} new or changed file(s) in {folder}: {', '.join(names)}; requesting "
                     f"{FULL_RETRAIN_JOB} on profile {profile}")
    request = RunRequest(
        run_key=run_key_for(new),
        run_config=profile_run_config(profile),
        tags={**automation_tags(profile, "new_exemplars_sensor"), "persrm/new_files": _files_tag(names)},
    )
    return SensorResult(run_requests=[request], cursor=cursor)


def _root_message(error) -> str:
    while error is not None and error.cause is not None:
        error = error.cause
    return (error.message or "").strip() if error is not None else ""


@run_failure_sensor(
    name="record_run_failures",
    default_status=DefaultSensorStatus.RUNNING,
    description=f"Appends one JSON line per failed run of this code location to {FAILURE_LOG} "
                "(relative to the params file's directory) and logs it.",
)
def record_run_failures(context: RunFailureSensorContext) -> None:
    run = context.dagster_run
    step_errors = {}
    for event in context.get_step_failure_events():
        data = event.step_failure_data
        step_errors[event.step_key] = _root_message(data.error) if data is not None else ""
    error = next((m for m in step_errors.values() if m), "")
    if not error:  # a run-level failure (e.g. the run worker died) carries its own error
        error = _root_message(getattr(context.failure_event.event_specific_data, "error", None))
    record = {
        "time": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "run_id": run.run_id,
        "job_name": run.job_name,
        "failed_steps": sorted(step_errors),
        "error": error or (context.failure_event.message or "").strip(),
        "step_errors": step_errors,
        "tags": {k: v for k, v in run.tags.items() if k.startswith("persrm/")},
    }
    path = failure_log_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a", encoding="utf-8") as fh:
        fh.write(json.dumps(record, ensure_ascii=False) + "\n")
    context.log.error(f"run {run.run_id} of {run.job_name} failed at {record['failed_steps'] or 'no step'}: "
                      f"{record['error']} (recorded in {path})")
