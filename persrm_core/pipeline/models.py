"""Model stages: the base model, the SFT and RFT (GRPO) checkpoints, and the scalar reward-model
baseline.
"""

from __future__ import annotations

import json
import logging
import math
import random
import shutil
from pathlib import Path

from persrm_core.atomic import atomic_dir
from persrm_core.config import Settings
from persrm_core.errors import InputError
from persrm_core.pipeline.data import corpus_pairs, generation_backend, sampling_params
from persrm_core.pipeline.evidence import publish_evidence, with_evidence
from persrm_core.pipeline.stages import stage

log = logging.getLogger(__name__)


BASE_REF = "persrm_base_ref.json"  # in paths.base_model when the base is not built here


@stage(reads=("seed", "base_model", "render"),
       deps=("corpus/train.parquet", "evidence"),
       outs=("base_model",))
def base_model(s: Settings) -> dict:
    """Build the offline `tiny` base from train-split text only, or record a hub id / path."""
    if s.base_model.name != "tiny":
        from persrm_core.llm.model import resolve_model

        ref = {"base_model": s.base_model.name, "built": False, "found_at": str(resolve_model(s.base_model.name))}
        # A reference, not the weights: the stage's DVC output exists whatever the base, and a changed
        # base (name or where it resolves) is a changed output.
        with atomic_dir(s.paths.base_model) as tmp:
            (tmp / BASE_REF).write_text(json.dumps(ref, indent=1), encoding="utf-8")
        return ref
    from persrm_core.llm.model import build_tiny
    from persrm_core.training.trainers import sft_rows

    train = corpus_pairs(s.paths.corpus / "train.parquet")
    texts = sorted({t for p in train for t in (p["prompt"], p["response_a"], p["response_b"], *p["exemplars"])})
    # Judge-format text too, so its words are single tokens: train pairs rendered as the judge reads
    # them, with evidence of seeded random readings (only its words and layout matter here; measuring
    # the real evidence would load the style encoder for a tokenizer).
    texts += [r["completion"][0]["content"] + "\n" + r["prompt"][-1]["content"]
              for r in sft_rows(_format_sample_evidence(train[:400], s.seed), s.render)]
    with atomic_dir(s.paths.base_model) as tmp:
        build_tiny(texts, tmp, s.base_model.tiny)
        n_params = _count_params(tmp)
    return {"base_model": str(s.paths.base_model), "built": True, "parameters": n_params,
            "tokenizer_training_texts": len(texts)}


def _format_sample_evidence(pairs: list[dict], seed: int) -> list[dict]:
    from persrm_core.evidence.signals import SIGNALS

    rng = random.Random(seed)
    return [{**p, "evidence": {"signals": {n: [round(rng.random(), 2), round(rng.random(), 2)] for n in SIGNALS},
                               "p_a": round(rng.random(), 2)}} for p in pairs]


def base_model_ref(s: Settings) -> str:
    """What training and judging load as the base: the built `tiny`, a bundled model's converted
    folder, or the name as given (a folder or a cached hub id)."""
    from persrm_core.llm.bundled_lm import locate

    return str(s.paths.base_model) if s.base_model.name == "tiny" else locate(s.base_model.name)


def _count_params(model_dir: Path) -> int:
    from safetensors import safe_open

    total = 0
    for f in Path(model_dir).glob("*.safetensors"):
        with safe_open(str(f), "pt") as st:
            total += sum(math.prod(st.get_slice(k).get_shape()) for k in st.keys())
    return total


def _curve_summary(log: list[dict], keys: tuple[str, ...]) -> dict:
    out = {}
    for k in keys:
        pts = [h[k] for h in log if k in h]
        if pts:
            out[f"{k.replace('/', '_')}_first"] = round(float(pts[0]), 4)
            out[f"{k.replace('/', '_')}_last"] = round(float(pts[-1]), 4)
    return out


@stage(reads=("seed", "base_model", "render", "sft", "generation"),
       deps=("corpus/train.parquet", "base_model", "evidence"),
       outs=("sft",))
def sft_checkpoint(s: Settings, runner=None) -> dict:
    """SFT of the base on the train pairs' traces into `paths.sft` (`runner`: how a launched
    training job runs, `training.launch.PipesRunner` from the Dagster asset)."""
    from persrm_core.training.trainers import train_sft

    train = with_evidence(s, corpus_pairs(s.paths.corpus / "train.parquet"))
    teacher: dict = {}
    if s.sft.traces == "teacher":
        from persrm_core.training.teacher import teacher_sample, teacher_traces

        if s.generation.backend == "rules":
            raise InputError("params.yaml", "sft.traces is teacher but generation.backend is rules (no LLM)", "sft")
        asked = teacher_sample(train, s.sft.teacher_pairs, s.sft.seed)
        kept, stats = teacher_traces(asked, generation_backend(s), sampling_params(s),
                                     s.generation.cache, s.render)
        teacher = stats.as_dict()
        if s.sft.teacher_fallback == "offline":  # the rest get the measured offline trace (rejection-sampled)
            from persrm_core.training.teacher import with_offline_fallback

            kept, teacher["offline_fallback_pairs"] = with_offline_fallback(train, kept)
        train = kept
        if not train:
            raise RuntimeError(f"the teacher's verdicts matched the label in both orders for none of "
                               f"{stats.pairs} train pairs: {teacher} (sft.teacher_fallback: offline trains "
                               "the rest on offline traces)")
    with atomic_dir(s.paths.sft) as tmp:
        # Checkpoints live beside the target, outside the atomic temp dir, so a killed run resumes.
        log = train_sft(base_model_ref(s), train, tmp, _logged(s, s.sft), s.render, work_dir=_work_dir(s.paths.sft),
                        runner=runner)
        _clean_trainer_files(tmp)
        publish_evidence(s, tmp)
    kept = next((h for h in log if "trace_keep_rate" in h), {})
    return {"checkpoint": str(s.paths.sft), "train_pairs": len(train), "traces": kept.get("traces"), **teacher,
            "trace_keep_rate": kept.get("trace_keep_rate"),
            **_curve_summary(log, ("loss", "mean_token_accuracy")), "curve": _points(log, "loss")}


@stage(reads=("seed", "base_model", "render", "rft"),
       deps=("corpus/train.parquet", "sft", "evidence"),
       outs=("rft",))
def rft_checkpoint(s: Settings, runner=None) -> dict:
    """GRPO from `paths.sft` on the hard-pair curriculum into `paths.rft` (`runner` as in `sft_checkpoint`)."""
    from persrm_core.training.trainers import train_grpo

    train = rft_curriculum(with_evidence(s, corpus_pairs(s.paths.corpus / "train.parquet")), s.seed)
    with atomic_dir(s.paths.rft) as tmp:
        log = train_grpo(str(s.paths.sft), train, tmp, _logged(s, s.rft), s.render, work_dir=_work_dir(s.paths.rft),
                         runner=runner)
        _clean_trainer_files(tmp)
        publish_evidence(s, tmp)
    return {"checkpoint": str(s.paths.rft), "rft_pairs": len(train),
            **_curve_summary(log, ("reward", "completions/mean_length")),
            "curve": _points(log, "reward")}


def rft_curriculum(pairs: list[dict], seed: int, easy_share: float = 0.25) -> list[dict]:
    """The RFT pairs: those whose readings disagree (some favour A, some B) or whose weighed evidence
    is unsure (P within 0.2 of a coin), plus easy ones worth `easy_share` of them so the judge
    keeps its easy cases; GRPO spends its steps where copying the weighed line is not enough
    (P-GenRM's hard negatives). Every pair when fewer than 16 are hard."""
    from persrm_core.evidence.readings import evidence_of

    def hard(p: dict) -> bool:
        if not p.get("evidence"):
            return False
        ev = evidence_of(p)
        sides = {r.nearer for r in ev.readings if r.nearer}
        return len(sides) > 1 or (ev.weighed is not None and abs(ev.weighed.a - 0.5) < 0.2)

    hard_pairs = [p for p in pairs if hard(p)]
    if len(hard_pairs) < 16:
        return pairs
    easy = [p for p in pairs if not hard(p)]
    random.Random(seed).shuffle(easy)
    return hard_pairs + easy[: int(len(hard_pairs) * easy_share)]


def _logged(s: Settings, cfg):
    """A training section with its log folder: `logging_dir` as set, else data/reports/tensorboard
    (beside the eval report) when an integration such as TensorBoard is on."""
    import dataclasses

    from persrm_core.training.settings import reporters

    if cfg.logging_dir or not reporters(cfg):
        return cfg
    return dataclasses.replace(cfg, logging_dir=str(s.paths.report.parent / "tensorboard"))


def _work_dir(target: Path) -> Path:
    return target.parent / f".{target.name}-checkpoints"


def _points(log: list[dict], key: str) -> list[tuple[int, float]]:
    return [(int(h["step"]), float(h[key])) for h in log if key in h and "step" in h]


def _clean_trainer_files(out: Path) -> None:
    for name in ("training_args.bin",):  # pickled by Trainer; nothing here needs it
        (out / name).unlink(missing_ok=True)
    for ckpt in out.glob("checkpoint-*"):
        shutil.rmtree(ckpt, ignore_errors=True)


@stage(reads=("seed", "base_model", "scalar_rm"),
       deps=("corpus/train.parquet", "base_model"),
       outs=("scalar_rm",))
def scalar_rm(s: Settings) -> dict:
    """The scalar Bradley-Terry reward model baseline (TRL RewardTrainer), trained on the train split."""
    from persrm_core.training.scalar_rm import train_scalar_rm

    train = corpus_pairs(s.paths.corpus / "train.parquet")
    with atomic_dir(s.paths.scalar_rm) as tmp:
        log = train_scalar_rm(base_model_ref(s), train, tmp, s.scalar_rm)
        _clean_trainer_files(tmp)
    return {"checkpoint": str(s.paths.scalar_rm), "train_pairs": len(train),
            **_curve_summary(log, ("loss", "accuracy")), "curve": _points(log, "loss")}
