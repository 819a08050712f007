"""The weekly full-retrain schedule (off until turned on in the UI) and the profile every automated
run is pinned to and tagged with. The full retrain rebuilds everything downstream of the ingested
exemplars; ingesting is per author (`persrm_ingest_authors`), so a retrain never re-ingests anyone."""

from __future__ import annotations

import os

import yaml
from dagster import DefaultScheduleStatus, ScheduleDefinition

from persrm_core.config import default_params_path

FULL_RETRAIN_JOB = "persrm_full_retrain"
INGEST_JOB = "persrm_ingest_authors"
WEEKLY_CRON = "0 3 * * 1"  # Mondays 03:00 (UTC, Dagster's default timezone)


def current_profile() -> str:
    """The profile a run uses when none is given: $PERSRM_PROFILE, else `profile:` in params.yaml,
    else `default` (the same rule as the `compute` resource and `load_settings`)."""
    if env := os.environ.get("PERSRM_PROFILE"):
        return env
    try:
        params = yaml.safe_load(default_params_path().read_text(encoding="utf-8")) or {}
    except (OSError, yaml.YAMLError):
        return "default"
    return str(params.get("profile") or "default")


def profile_run_config(profile: str) -> dict:
    """Run config that pins the `compute` resource to `profile`, so a run's tag and its settings agree."""
    return {"resources": {"compute": {"config": {"profile": profile}}}}


def automation_tags(profile: str, launched_by: str) -> dict[str, str]:
    return {"persrm/profile": profile, "persrm/launched_by": launched_by}


def build_weekly_retrain_schedule(profile: str | None = None) -> ScheduleDefinition:
    profile = profile or current_profile()
    return ScheduleDefinition(
        name="persrm_weekly_full_retrain",
        cron_schedule=WEEKLY_CRON,
        job_name=FULL_RETRAIN_JOB,
        run_config=profile_run_config(profile),
        tags=automation_tags(profile, "persrm_weekly_full_retrain"),
        default_status=DefaultScheduleStatus.STOPPED,
        description=f"Full retrain (pairs -> corpus -> SFT -> RFT -> report, from the ingested exemplars) on the "
                    f"`{profile}` profile every Monday at 03:00 UTC (off by default: turn it on in the UI).",
    )


weekly_full_retrain = build_weekly_retrain_schedule()
