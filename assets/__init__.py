"""Dagster software-defined assets of the persrm chain (thin wrappers over `persrm_core.pipeline`)."""

from assets.chain import (
    ALL_ASSETS,
    AUTHORS,
    base_model,
    eval_report,
    filtered_corpus,
    raw_exemplars,
    rft_checkpoint,
    sft_checkpoint,
    synthetic_pairs,
)
from assets.checks import ALL_CHECKS
from assets.resources import ArtifactStore, ComputeProfile, GenerationBackend

__all__ = ["ALL_ASSETS", "ALL_CHECKS", "AUTHORS", "ArtifactStore", "ComputeProfile", "GenerationBackend", "base_model",
           "eval_report", "filtered_corpus", "raw_exemplars", "rft_checkpoint", "sft_checkpoint", "synthetic_pairs"]
