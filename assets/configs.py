"""Typed run config per asset: what a user may override for one run from the Dagster launchpad
(or `run_config`) without editing params.yaml. Every field defaults to None = params.yaml's value;
each names the params section and key it overrides, so a run's config reads like a diff."""

import dataclasses
from typing import Optional

from dagster import Config
from pydantic import Field

from persrm_core.config import Settings


class _Overrides(Config):
    """Fields map onto `SECTION.<field>` of the settings."""

    _section = ""

    def apply(self, s: Settings) -> Settings:
        over = {k: v for k, v in self.model_dump().items() if v is not None}
        if not over:
            return s
        section = getattr(s, self._section)
        return dataclasses.replace(s, **{self._section: dataclasses.replace(section, **over)})


class RawExemplarsConfig(_Overrides):
    """raw_exemplars has no per-run settings beyond the resource's profile and data root."""


class SyntheticPairsConfig(_Overrides):
    _section = "synthesis"
    workers: Optional[int] = Field(default=None, description="synthesis.workers: processes building pairs")
    num_exemplars: Optional[int] = Field(default=None, description="synthesis.num_exemplars per pair")


class FilteredCorpusConfig(_Overrides):
    _section = "filter"
    near_duplicate: Optional[float] = Field(default=None, description="filter.near_duplicate Jaccard threshold")
    max_length_ratio: Optional[float] = Field(default=None, description="filter.max_length_ratio")


class StyleEncoderConfig(_Overrides):
    _section = "style_encoder"
    steps: Optional[int] = Field(default=None, description="style_encoder.steps (0 = the bundled MiniLM untuned)")
    learning_rate: Optional[float] = Field(default=None, description="style_encoder.learning_rate")


class EvidenceModelConfig(_Overrides):
    _section = "evidence"
    cross_author_weight: Optional[float] = Field(default=None, description="evidence.cross_author_weight")


class BaseModelConfig(_Overrides):
    """base_model's settings are the profile's `base_model` section; nothing to override per run."""


class SftConfig(_Overrides):
    _section = "sft"
    max_steps: Optional[int] = Field(default=None, description="sft.max_steps (> 0 overrides epochs)")
    learning_rate: Optional[float] = Field(default=None, description="sft.learning_rate")
    launcher: Optional[str] = Field(default=None, description="sft.launcher: accelerate | inprocess")


class RftConfig(_Overrides):
    _section = "rft"
    max_steps: Optional[int] = Field(default=None, description="rft.max_steps")
    learning_rate: Optional[float] = Field(default=None, description="rft.learning_rate")
    launcher: Optional[str] = Field(default=None, description="rft.launcher: accelerate | inprocess")


class ScalarRMConfig(_Overrides):
    _section = "scalar_rm"
    max_steps: Optional[int] = Field(default=None, description="scalar_rm.max_steps")


class EvalReportConfig(_Overrides):
    _section = "eval"
    max_pairs: Optional[int] = Field(default=None, description="eval.max_pairs (0 = all)")
    both_orders: Optional[bool] = Field(default=None, description="eval.both_orders")
