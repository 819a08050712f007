"""The Dagster code location: `dagster dev -m orchestration.definitions`."""

from __future__ import annotations

from dagster import AssetSelection, Definitions, define_asset_job

from assets import ALL_ASSETS, ALL_CHECKS
from assets.resources import default_resources
from orchestration.schedules import FULL_RETRAIN_JOB, weekly_full_retrain
from orchestration.sensors import new_exemplars_sensor, record_run_failures
from persrm_core.redact import install_log_redaction

install_log_redaction()  # no secret from the environment reaches a log line

retrain_job = define_asset_job(
    FULL_RETRAIN_JOB, selection=AssetSelection.all(),
    description="Rebuild the whole chain: exemplars -> pairs -> corpus -> SFT -> RFT -> eval report.")

data_only_job = define_asset_job(
    "persrm_data_only",
    selection=AssetSelection.assets("raw_exemplars", "synthetic_pairs", "filtered_corpus"),
    description="Rebuild the data only: exemplars -> pairs -> gated corpus (with its blocking checks); no training.")

eval_only_job = define_asset_job(
    "persrm_eval_only", selection=AssetSelection.assets("eval_report"),
    description="Re-evaluate the checkpoints already on disk and rewrite the eval report.")

defs = Definitions(
    assets=ALL_ASSETS,
    asset_checks=ALL_CHECKS,
    jobs=[retrain_job, data_only_job, eval_only_job],
    schedules=[weekly_full_retrain],
    sensors=[new_exemplars_sensor, record_run_failures],
    resources=default_resources(),
)
