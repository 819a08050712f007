"""Materialize the chain (or part of it) through Dagster, in-process, on the persistent instance."""

from __future__ import annotations

import os

from dagster import DagsterInstance, materialize

from assets import ALL_ASSETS, ALL_CHECKS
from assets.resources import default_resources

ASSET_KEYS = [a.key.path[-1] for a in ALL_ASSETS]


def run_chain(profile: str | None = None, select: list[str] | None = None, params_path: str | None = None,
              root: str | None = None, progress: bool = True):
    """Materialize `select` (asset keys; all when None) with `profile`. Raises on failure."""
    unknown = sorted(set(select or []) - set(ASSET_KEYS))
    if unknown:
        raise ValueError(f"unknown asset key(s) {unknown}; known: {', '.join(ASSET_KEYS)}")
    resource_kwargs = {"profile": profile or "", "progress": progress}
    if params_path:
        resource_kwargs["params_path"] = params_path
    if root:
        resource_kwargs["root"] = root
    # Runs land in DAGSTER_HOME when it is set, so `dagster dev` shows them.
    instance = DagsterInstance.get() if os.environ.get("DAGSTER_HOME") else DagsterInstance.ephemeral()
    return materialize(
        [*ALL_ASSETS, *ALL_CHECKS], selection=select or None, instance=instance,
        resources=default_resources(**resource_kwargs),
        run_config={"loggers": {"console": {"config": {"log_level": "INFO"}}}},
        tags={"persrm/profile": profile or "default", "persrm/launched_by": "persrm run"},
        raise_on_error=False,
    )


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
