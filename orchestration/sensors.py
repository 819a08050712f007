"""Sensors: ingest the authors whose texts land in the incoming folder, retrain once those ingests
are done (Declarative Automation), and record every failed run of this code location as one JSON line.

Adding data is per author, the Dagster way: `raw_exemplars` has one partition per author.
`new_exemplars_sensor` watches `incoming/<author>/*.txt`; for new or changed files it registers a
newcomer's partition and requests one `persrm_ingest_authors` run per affected author, which lands
the files in `data/raw/<author>/` and re-ingests that author alone. `retrain_on_new_exemplars`
then requests the chain below `raw_exemplars` once no ingest is still in progress."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from pathlib import Path

from dagster import (
    AssetSelection,
    AutomationConditionSensorDefinition,
    DefaultSensorStatus,
    RunFailureSensorContext,
    RunRequest,
    SensorEvaluationContext,
    SensorResult,
    SkipReason,
    run_failure_sensor,
    sensor,
)

from assets import AUTHORS
from assets.resources import DEFAULT_INCOMING, INCOMING_ENV, ArtifactStore
from orchestration.jobs import ingest_job
from orchestration.schedules import INGEST_JOB, automation_tags, current_profile, profile_run_config
from persrm_core.config import default_params_path

FAILURE_LOG = "data/reports/run_failures.jsonl"
WATCHED_SUFFIXES = (".txt",)


def project_dir() -> Path:
    """The directory of the params file: relative paths resolve against it, as in `load_settings`."""
    return default_params_path().resolve().parent


def _resolve(path: str) -> Path:
    p = Path(path).expanduser()
    return p if p.is_absolute() else project_dir() / p


def incoming_dir(store: ArtifactStore | None = None) -> Path:
    """The store's `incoming`, else $PERSRM_INCOMING, else `data/incoming`; relative to the store's
    root (by default the params file's directory)."""
    return (store or ArtifactStore()).incoming_dir()


def failure_log_path() -> Path:
    return _resolve(FAILURE_LOG)


def scan(folder: Path) -> dict[str, list[int]]:
    """Relative POSIX path -> [mtime_ns, size] of each watched file below `folder` (hidden names
    skipped). Files outside an author folder are listed too, so the sensor can say it ignores them."""
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


def author_of(rel: str) -> str | None:
    """`<author>/<name>.txt` -> author; anything else (top level, deeper) is not an author's text."""
    parts = rel.split("/")
    return parts[0] if len(parts) == 2 else None


def run_key_for(new: dict[str, list[int]]) -> str:
    """A stable key for a set of file fingerprints: the same files, unchanged, give the same key."""
    digest = hashlib.sha256(json.dumps(sorted(new.items()), separators=(",", ":")).encode()).hexdigest()
    return f"new-exemplars-{digest[:20]}"


def _files_tag(names: list[str], limit: int = 200) -> str:
    text = ", ".join(names)
    return text if len(text) <= limit else text[: limit - 3] + "..."


@sensor(
    name="new_exemplars_sensor",
    job=ingest_job,
    minimum_interval_seconds=60,
    default_status=DefaultSensorStatus.STOPPED,
    description="For new or changed incoming/<author>/*.txt files (the store's incoming folder: "
                f"${INCOMING_ENV}, default {DEFAULT_INCOMING}/), registers newcomers as partitions of "
                "raw_exemplars and requests one ingest run per affected author.",
)
def new_exemplars_sensor(context: SensorEvaluationContext, store: ArtifactStore) -> SensorResult:
    folder = incoming_dir(store)
    seen = _load_cursor(context.cursor)
    if not folder.is_dir():
        return SensorResult(skip_reason=SkipReason(f"incoming folder {folder} does not exist"),
                            cursor=context.cursor)
    current = scan(folder)
    new = {k: v for k, v in current.items() if seen.get(k) != v}
    # The cursor is what the folder holds now: deleted files drop out of it.
    cursor = json.dumps(current, sort_keys=True, separators=(",", ":"))
    by_author: dict[str, dict[str, list[int]]] = {}
    stray = []
    for rel, fingerprint in sorted(new.items()):
        author = author_of(rel)
        if author is None:
            stray.append(rel)
        else:
            by_author.setdefault(author, {})[rel] = fingerprint
    if stray:
        context.log.warning(f"ignoring {len(stray)} file(s) not in an author folder (expected "
                            f"{folder}/<author>/<name>.txt): {_files_tag(stray)}")
    if not by_author:
        why = f"no new or changed author texts in {folder} ({len(current)} file(s) seen"
        return SensorResult(skip_reason=SkipReason(why + (f", {len(stray)} outside author folders)" if stray else ")")),
                            cursor=cursor)
    known = set(context.instance.get_dynamic_partitions(AUTHORS.name))
    newcomers = sorted(a for a in by_author if a not in known)
    profile = current_profile()
    context.log.info(f"new or changed texts of {len(by_author)} author(s) in {folder}: "
                     f"{', '.join(f'{a} ({len(f)})' for a, f in by_author.items())}; newcomers: "
                     f"{', '.join(newcomers) or 'none'}; requesting {INGEST_JOB} per author on profile {profile}")
    requests = [RunRequest(
        run_key=run_key_for(files), partition_key=author, run_config=profile_run_config(profile),
        tags={**automation_tags(profile, "new_exemplars_sensor"), "persrm/new_files": _files_tag(sorted(files))},
    ) for author, files in by_author.items()]
    return SensorResult(run_requests=requests, cursor=cursor,
                        dynamic_partitions_requests=[AUTHORS.build_add_request(newcomers)] if newcomers else None)


# Declarative Automation, as Dagster recommends for "rebuild downstream when upstream changes":
# every asset below the ingested exemplars carries `AutomationCondition.eager()` (assets/chain.py),
# and this sensor evaluates those conditions. When an author's ingest updates `raw_exemplars`,
# the whole chain below it is requested in one run, once, after no ingest is still in progress
# (eager waits for deps in progress); a chain already rebuilt since (e.g. by `persrm run`) is
# not requested again.
retrain_on_new_exemplars = AutomationConditionSensorDefinition(
    "retrain_on_new_exemplars",
    target=AssetSelection.all() - AssetSelection.assets("raw_exemplars"),
    default_status=DefaultSensorStatus.STOPPED,
    minimum_interval_seconds=60,
    run_tags=automation_tags(current_profile(), "retrain_on_new_exemplars"),
    description=f"Declarative Automation: when {INGEST_JOB} runs have updated raw_exemplars and none is still "
                "in progress, requests the assets below it (pairs -> corpus -> ... -> eval report) in one run, "
                "on the params file's profile.",
)


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
