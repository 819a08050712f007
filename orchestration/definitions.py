"""The Dagster code location: `dagster dev -m orchestration.definitions`."""

from __future__ import annotations

from dagster import Definitions

from assets import ALL_ASSETS, ALL_CHECKS
from assets.resources import default_resources
from orchestration.jobs import ALL_JOBS
from orchestration.schedules import weekly_full_retrain
from orchestration.sensors import new_exemplars_sensor, record_run_failures, retrain_on_new_exemplars
from persrm_core.redact import install_log_redaction

install_log_redaction()  # no secret from the environment reaches a log line

defs = Definitions(
    assets=ALL_ASSETS,
    asset_checks=ALL_CHECKS,
    jobs=ALL_JOBS,
    schedules=[weekly_full_retrain],
    sensors=[new_exemplars_sensor, retrain_on_new_exemplars, record_run_failures],
    resources=default_resources(),
)
