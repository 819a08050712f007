"""Materialize the chain (or part of it) through Dagster, in-process, on the persistent instance."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from dagster import AssetKey, DagsterInstance, Definitions

from assets import ALL_ASSETS, ALL_CHECKS, AUTHORS
from assets.resources import default_resources
from orchestration.jobs import ALL_JOBS, data_only_job, eval_only_job, ingest_job, retrain_job

ASSET_KEYS = [a.key.path[-1] for a in ALL_ASSETS]
RANGE_START_TAG = "dagster/asset_partition_range_start"
RANGE_END_TAG = "dagster/asset_partition_range_end"


@dataclass
class ChainResult:
    """The Dagster runs one `run_chain` call made (the author partitions first, then the rest)."""

    results: list = field(default_factory=list)

    @property
    def success(self) -> bool:
        return all(r.success for r in self.results)

    @property
    def all_events(self) -> list:
        return [e for r in self.results for e in r.all_events]


EPHEMERAL_ENV = "PERSRM_EPHEMERAL_INSTANCE"
LAUNCHED_BY_CLI = "persrm run"  # the `persrm/launched_by` tag of the runs `run_chain` makes


def job_for(keys: list[str]) -> str:
    """The named job a selection runs as, so its history shows under that job in the UI (never
    `__ephemeral_asset_job__`): the ingest job for `raw_exemplars`, the data-only or eval-only job
    when the selection is exactly theirs, else the full-retrain job (a subset of it when partial)."""
    if keys == ["raw_exemplars"]:
        return ingest_job.name
    for job, selected in ((data_only_job, {"synthetic_pairs", "filtered_corpus"}), (eval_only_job, {"eval_report"})):
        if set(keys) == selected:
            return job.name
    if "raw_exemplars" in keys:
        raise ValueError("raw_exemplars runs on its own (the ingest job), before the rest of a selection")
    return retrain_job.name


def project_instance(root: Path) -> DagsterInstance:
    """The Dagster instance runs land in, so `dagster dev` (`make ui`) shows every run however it was
    started (`make`, `persrm run`, `dvc repro`): $DAGSTER_HOME when set, else the project's own
    `.dagster/` beside params.yaml (made on first use, telemetry off). $PERSRM_EPHEMERAL_INSTANCE=1
    keeps a run's history in memory only (the test suite sets it)."""
    if os.environ.get("DAGSTER_HOME"):
        return DagsterInstance.get()
    if os.environ.get(EPHEMERAL_ENV):
        return DagsterInstance.ephemeral()
    home = Path(root) / ".dagster"
    home.mkdir(parents=True, exist_ok=True)
    if not (home / "dagster.yaml").exists():
        (home / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    os.environ["DAGSTER_HOME"] = str(home.resolve())
    return DagsterInstance.get()


def sync_author_partitions(instance: DagsterInstance, present: list[str]) -> tuple[list[str], list[str]]:
    """Make the `authors` partitions exactly the authors in `paths.raw`: register newcomers, drop
    authors whose texts are gone. Returns (added, removed)."""
    known = instance.get_dynamic_partitions(AUTHORS.name)
    known_set, present_set = set(known), set(present)
    added = [a for a in present if a not in known_set]
    removed = [a for a in known if a not in present_set]
    if added:
        instance.add_dynamic_partitions(AUTHORS.name, added)
    for a in removed:
        instance.delete_dynamic_partition(AUTHORS.name, a)
    return added, removed


def run_chain(profile: str | None = None, select: list[str] | None = None, params_path: str | None = None,
              root: str | None = None, progress: bool = True, authors: list[str] | None = None,
              land_incoming: bool = True) -> ChainResult:
    """Materialize `select` (asset keys; all when None) with `profile`; never raises on a failed step
    (see `failures`).

    `raw_exemplars` is partitioned by author. When it is selected, the authors found in `paths.raw`
    become its partitions, and all of them (or only `authors`, each in its own run) are ingested
    before the rest of the selection runs once over the union. Authors' new texts waiting in the
    incoming folder land in `paths.raw` first, unless `land_incoming` is false (`dvc repro`)."""
    from persrm_core.data.ingest import incoming_authors, list_authors, read_exemplars
    from persrm_core.errors import InputError

    unknown = sorted(set(select or []) - set(ASSET_KEYS))
    if unknown:
        raise ValueError(f"unknown asset key(s) {unknown}; known: {', '.join(ASSET_KEYS)}")
    keys = list(select or ASSET_KEYS)
    resources = default_resources(profile=profile, params_path=params_path, root=root, progress=progress,
                                  land_incoming=land_incoming)
    instance = project_instance(resources["store"].base(params_path))
    tags = {"persrm/profile": profile or "default", "persrm/launched_by": LAUNCHED_BY_CLI}
    run_config = {"loggers": {"console": {"config": {"log_level": "INFO"}}}}
    out = ChainResult()
    defs = Definitions(assets=ALL_ASSETS, asset_checks=ALL_CHECKS, jobs=ALL_JOBS, resources=resources)

    def _materialize(selection: list[str], **kwargs):
        # The selected assets with their checks, run as the named job that holds them.
        job = defs.resolve_job_def(job_for(selection))
        result = job.execute_in_process(run_config=run_config, instance=instance, raise_on_error=False,
                                        asset_selection=[AssetKey(k) for k in selection], **kwargs)
        out.results.append(result)
        return result.success

    if "raw_exemplars" in keys:
        s = resources["compute"].settings(resources["store"])
        present = list_authors(s.paths.raw) if s.paths.raw.exists() else []
        # Authors whose texts wait in the incoming folder are ingested too (their texts land in paths.raw).
        waiting = incoming_authors(resources["store"].incoming_dir(params_path)) if land_incoming else []
        todo = sorted(set(authors)) if authors else sorted(set(present) | set(waiting))
        if not todo:  # nothing to ingest: the reader's own error (missing folder, no .txt, ...)
            read_exemplars(s.paths.raw, s.min_texts_per_author)
            raise InputError(s.paths.raw, "no authors found")
        sync_author_partitions(instance, sorted(set(present) | set(waiting) | set(todo)))
        if authors:
            ok = all([_materialize(["raw_exemplars"], partition_key=a, tags=tags) for a in todo])
        else:  # every author, in one run (the asset's single-run backfill policy)
            ordered = instance.get_dynamic_partitions(AUTHORS.name)
            ok = _materialize(["raw_exemplars"], tags={**tags, RANGE_START_TAG: ordered[0],
                                                        RANGE_END_TAG: ordered[-1]})
        keys.remove("raw_exemplars")
        if not ok:
            return out
    if keys:
        _materialize(keys, tags=tags)
    return out


def failures(result) -> list[str]:
    """One line per failed step: the asset and the root cause's message."""
    lines = []
    for event in result.all_events:
        if event.is_step_failure:
            error = event.step_failure_data.error
            while error.cause is not None:
                error = error.cause
            lines.append(f"asset {event.step_key} failed: {error.message.strip()}")
    return lines
