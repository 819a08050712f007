"""Evidence stages: the style encoder fine-tuned on the training authors and the fitted evidence
(IDF tables, encoder, combined weights) every checkpoint carries.
"""

from __future__ import annotations

import json
import logging
import random
import shutil
from pathlib import Path

from persrm_core.atomic import atomic_dir
from persrm_core.config import Settings
from persrm_core.errors import InputError
from persrm_core.pipeline.data import corpus_pairs, train_texts_by_author
from persrm_core.pipeline.stages import stage
from persrm_core.synthesis.strategies import CROSS_AUTHOR

log = logging.getLogger(__name__)


@stage(reads=("seed", "style_encoder"),
       deps=("corpus/train.parquet",),
       outs=("style_encoder",))
def style_encoder(s: Settings, progress: bool = True) -> dict:
    """Fine-tune the bundled MiniLM contrastively on the training split's authors, less the
    calibration authors (`style_encoder.calibration_authors`), into `paths.style_encoder`."""
    from persrm_core.evidence.style_encoder import calibration_authors, train_style_encoder

    by_author = train_texts_by_author(s)
    held = calibration_authors(list(by_author), s.style_encoder.calibration_fraction, s.seed)
    train = {a: t for a, t in by_author.items() if a not in held}
    with atomic_dir(s.paths.style_encoder) as tmp:
        out = train_style_encoder(train, tmp, s.style_encoder, progress=progress)
        (tmp / "persrm_style_encoder.json").write_text(json.dumps(
            {"calibration_authors": held, "trained_on_authors": sorted(train),
             **{k: v for k, v in out.items() if k != "curve"}}, indent=1), encoding="utf-8")
    return {"path": str(s.paths.style_encoder), "calibration_authors": held, **out}


@stage(reads=("seed", "evidence"),
       deps=("corpus/train.parquet", "style_encoder"),
       outs=("evidence",))
def evidence_model(s: Settings, progress: bool = True) -> dict:
    """Fit the evidence the judge reads, into `paths.evidence`: IDF tables on every training-split
    text, the style encoder of `paths.style_encoder`, and the `combined` weights fitted on the train
    pairs of the calibration authors (all train pairs when there are none), cross-author pairs
    weighed up (`evidence.cross_author_weight`)."""
    from persrm_core.evidence.combined import fit_combined, prob_a
    from persrm_core.evidence.signals import EvidenceModel, fit_idf

    enc_meta_path = s.paths.style_encoder / "persrm_style_encoder.json"
    if not enc_meta_path.is_file():
        raise InputError(s.paths.style_encoder, "no trained style encoder here; materialize style_encoder first")
    enc_meta = json.loads(enc_meta_path.read_text(encoding="utf-8"))
    train = corpus_pairs(s.paths.corpus / "train.parquet")
    texts = sorted({t for p in train for t in (p["response_a"], p["response_b"], *p["exemplars"])})
    held = set(enc_meta.get("calibration_authors") or [])
    fit = [p for p in train if p["author_id"] in held] or train
    if s.evidence.fit_negative_types:
        fit = [p for p in fit if p["negative_type"] in s.evidence.fit_negative_types] or fit
    rng = random.Random(s.seed)
    if 0 < s.evidence.fit_pairs < len(fit):
        fit = rng.sample(fit, s.evidence.fit_pairs)
    model = EvidenceModel(fit_idf(texts), encoder_dir=s.paths.style_encoder)
    rows = model.signals([(p["exemplars"], p["response_a"], p["response_b"]) for p in fit], progress=progress)
    weights = [s.evidence.cross_author_weight if p["negative_type"] == CROSS_AUTHOR else 1.0 for p in fit]
    model.combined = fit_combined(rows, [p["label"] for p in fit], weights, l2=s.evidence.l2,
                                  signals=s.evidence.fit_signals)
    by_type: dict[str, list[bool]] = {}
    for p, r in zip(fit, rows):
        by_type.setdefault(p["negative_type"], []).append((prob_a(model.combined, r) > 0.5) == (p["label"] == "A"))
    model.meta = {"idf_texts": len(texts), "fit_pairs": len(fit), "fit_authors": sorted({p["author_id"] for p in fit}),
                  "fit_accuracy_by_negative_type": {k: round(sum(v) / len(v), 4) for k, v in sorted(by_type.items())}}
    with atomic_dir(s.paths.evidence) as tmp:
        model.save(tmp)
    return {"path": str(s.paths.evidence), "weights": model.combined["weights"],
            "fit_accuracy": model.combined["train_accuracy"], **model.meta}


def with_evidence(s: Settings, pairs: list[dict]) -> list[dict]:
    """Pairs with their evidence attached (`evidence.attach_evidence`) from `paths.evidence`, or as
    they are when the judge is shown no evidence."""
    if not s.render.evidence:
        return pairs
    from persrm_core.evidence.readings import attach_evidence
    from persrm_core.evidence.signals import EvidenceModel

    return attach_evidence(EvidenceModel.load(s.paths.evidence), pairs)


def publish_evidence(s: Settings, checkpoint: Path) -> None:
    """Copy the fitted evidence into a checkpoint (`<checkpoint>/evidence/`), so a judge loaded from
    the folder alone reads the evidence it was trained on."""
    from persrm_core.judging.judge import EVIDENCE_DIR

    if s.render.evidence and s.paths.evidence.is_dir():
        shutil.copytree(s.paths.evidence, Path(checkpoint) / EVIDENCE_DIR, dirs_exist_ok=True)
