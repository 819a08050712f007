"""The Dagster code location: `dagster dev -m orchestration.definitions`."""

from __future__ import annotations

from dagster import AssetSelection, Definitions, define_asset_job

from assets import ALL_ASSETS, ALL_CHECKS, PersrmConfig

retrain_job = define_asset_job(
    "persrm_full_retrain", selection=AssetSelection.all(),
    description="Rebuild the whole chain: exemplars -> pairs -> corpus -> SFT -> RFT -> eval report.")

defs = Definitions(
    assets=ALL_ASSETS,
    asset_checks=ALL_CHECKS,
    jobs=[retrain_job],
    resources={"persrm": PersrmConfig()},
)
