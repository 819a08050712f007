"""The jobs of the code location. Ingest is per author (`raw_exemplars` is partitioned by author);
every other job reads the exemplars already ingested, so none of them re-ingests anyone."""

from __future__ import annotations

from dagster import AssetSelection, define_asset_job

from orchestration.schedules import FULL_RETRAIN_JOB, INGEST_JOB

_exemplars = AssetSelection.assets("raw_exemplars")

ingest_job = define_asset_job(
    INGEST_JOB, selection=_exemplars,
    description="Ingest the selected authors (partitions of raw_exemplars): land their new texts from the "
                "incoming folder in data/raw, validate them, rebuild the exemplar union. Nobody else is re-read.")

retrain_job = define_asset_job(
    FULL_RETRAIN_JOB, selection=AssetSelection.all() - _exemplars,
    description="Rebuild everything from the ingested exemplars: pairs -> corpus -> base -> SFT -> RFT -> "
                "scalar RM -> eval report.")

data_only_job = define_asset_job(
    "persrm_data_only", selection=AssetSelection.assets("synthetic_pairs", "filtered_corpus"),
    description="Rebuild the data only, from the ingested exemplars: pairs -> gated corpus (with its blocking "
                "checks); no training.")

eval_only_job = define_asset_job(
    "persrm_eval_only", selection=AssetSelection.assets("eval_report"),
    description="Re-evaluate the checkpoints already on disk and rewrite the eval report.")

ALL_JOBS = [ingest_job, retrain_job, data_only_job, eval_only_job]
