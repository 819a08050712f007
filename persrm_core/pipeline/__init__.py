"""The stages of the chain as plain functions of `Settings`: each reads its inputs from their
artifact paths, publishes its outputs atomically, and returns a summary for metadata.

Dagster assets (`assets/`) call these; `persrm run` and `dvc repro` reach them through Dagster. One
module a group of stages: `data` (raw exemplars, synthetic pairs, filtered corpus), `evidence`
(style encoder, evidence model), `models` (base, SFT, RFT, scalar RM) and `evaluation` (the report).
"""

from persrm_core.pipeline.data import (
                                       authors_without_pairs,
                                       corpus_pairs,
                                       filtered_corpus,
                                       generation_backend,
                                       raw_exemplars,
                                       synthesis_exemplars,
                                       synthetic_pairs,
                                       train_texts_by_author,
                                       why_no_own_pairs,
)
from persrm_core.pipeline.evaluation import (
                                       eval_data_digest,
                                       eval_judges,
                                       eval_pairs,
                                       eval_report,
                                       real_author_eval_pairs,
)
from persrm_core.pipeline.evidence import evidence_model, publish_evidence, style_encoder, with_evidence
from persrm_core.pipeline.models import (
                                       base_model,
                                       base_model_ref,
                                       rft_checkpoint,
                                       rft_curriculum,
                                       scalar_rm,
                                       sft_checkpoint,
)

__all__ = ["authors_without_pairs", "base_model", "base_model_ref", "corpus_pairs", "eval_data_digest", "eval_judges",
           "eval_pairs", "eval_report", "evidence_model", "filtered_corpus", "generation_backend", "publish_evidence",
           "raw_exemplars", "real_author_eval_pairs", "rft_checkpoint", "rft_curriculum", "scalar_rm", "sft_checkpoint",
           "style_encoder", "synthesis_exemplars", "synthetic_pairs", "train_texts_by_author", "why_no_own_pairs",
           "with_evidence"]
