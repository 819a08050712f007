"""The evaluation stage: every judge on the eval split, on real authors' writing and by exemplar
count, into metrics.json and the report.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import logging
import random
from pathlib import Path

import polars as pl

from persrm_core.atomic import atomic_dir, write_jsonl
from persrm_core.config import Settings
from persrm_core.pipeline.data import corpus_pairs
from persrm_core.pipeline.models import base_model_ref
from persrm_core.pipeline.stages import stage
from persrm_core.records import Pair, pair_from_dict

log = logging.getLogger(__name__)


def eval_pairs(s: Settings) -> tuple[list[Pair], dict[str, str]]:
    """The eval split, subsampled to `eval.max_pairs` evenly across split and negative type."""
    rows = corpus_pairs(s.paths.corpus / "eval.parquet")
    if 0 < s.eval.max_pairs < len(rows):
        rng = random.Random(s.seed)
        groups: dict[tuple, list[dict]] = {}
        for r in rows:
            groups.setdefault((r["split"], r["negative_type"]), []).append(r)
        for g in groups.values():
            rng.shuffle(g)
        picked, i = [], 0
        while len(picked) < s.eval.max_pairs:
            for g in groups.values():
                if i < len(g) and len(picked) < s.eval.max_pairs:
                    picked.append(g[i])
            i += 1
        rows = sorted(picked, key=lambda r: r["pair_id"])
    pairs = [pair_from_dict(r, s.paths.corpus / "eval.parquet", f"row {i}") for i, r in enumerate(rows)]
    return pairs, {r["pair_id"]: r["split"] for r in rows}


def real_author_eval_pairs(s: Settings) -> tuple[list[Pair], str | None]:
    """Pairs from the real-author corpus of `eval.real_authors` (`persrm_core.data.real_authors`), or no
    pairs and the reason the report gives for skipping that section."""
    from persrm_core.data.real_authors import real_author_pairs
    from persrm_core.errors import InputError

    ra = s.eval.real_authors
    if ra.dir is None:
        return [], "eval.real_authors.dir is empty in params.yaml (turned off)"
    authors = None
    if ra.only_unseen:  # a profile trained on this corpus: only the authors it never trained on
        eval_df = pl.read_parquet(s.paths.corpus / "eval.parquet", columns=["author_id", "split"])
        authors = sorted(set(eval_df.filter(pl.col("split") == "eval_unseen")["author_id"].to_list()))
        if not authors:
            return [], "eval.real_authors.only_unseen is set but the corpus holds no unseen author"
    try:
        real = real_author_pairs(ra.dir, ra.max_pairs, ra.num_exemplars, s.seed, authors=authors)
    except InputError as exc:  # an unreadable optional corpus should not cost the whole evaluation
        log.warning("real-authors evaluation skipped: %s", exc)
        return [], f"the corpus could not be read: {exc}"
    if real is None:
        return [], f"no corpus at {ra.dir}"
    if not real:
        return [], f"no cross-author pairs could be built from {ra.dir} (too few or too short texts)"
    return real, None


@stage(reads=("seed", "base_model", "render", "eval"),
       deps=("corpus/eval.parquet", "corpus/train.parquet", "base_model", "sft", "rft", "scalar_rm", "evidence"),
       outs=("report",))
def eval_report(s: Settings) -> dict:
    from persrm_core.evaluation.metrics import judge_metrics
    from persrm_core.evaluation.report import NO_EVIDENCE, headline_rows, pick_examples, write_report
    from persrm_core.judging.judge import DecodingSettings, ModelJudge

    pairs, splits = eval_pairs(s)
    real, real_skipped = real_author_eval_pairs(s)
    gen = DecodingSettings(batch_size=s.eval.batch_size, max_new_tokens=s.eval.max_new_tokens,
                             engine=s.eval.engine, closing=s.eval.closing)
    judgments: dict[str, list[dict]] = {}
    real_judgments: dict[str, list[dict]] = {}
    judges = eval_judges(s, gen)
    for name, judge in judges.items():  # one loop for model judges and baselines alike
        judgments[name] = judge.judge(pairs, both_orders=s.eval.both_orders)
        if real and name != "base":  # the untrained base is judged on the eval split only (it never parses)
            real_judgments[name] = judge.judge(real, both_orders=s.eval.both_orders)
        if isinstance(judge, ModelJudge) and name in s.eval.without_evidence and s.render.evidence:
            blind = copy.copy(judge)  # the loaded model again (not a second copy in memory), no evidence shown
            blind.limits, blind.evidence = dataclasses.replace(judge.limits, evidence=False), None
            judgments[name + NO_EVIDENCE] = blind.judge(pairs, both_orders=s.eval.both_orders)
            if real and name != "base":
                real_judgments[name + NO_EVIDENCE] = blind.judge(real, both_orders=s.eval.both_orders)
    metrics = {"judges": {n: judge_metrics(pairs, j, splits) for n, j in judgments.items()},
               "settings": {"profile": s.profile, "eval_pairs": len(pairs), "eval_data": eval_data_digest(pairs),
                            "base_model": s.base_model.name, "both_orders": s.eval.both_orders}}
    metrics["by_exemplar_count"] = _by_exemplar_count(s, pairs, judges, judgments)
    if real:
        metrics["real_authors"] = {"source": str(s.eval.real_authors.dir), "pairs": len(real),
                                   "authors": len({p.author_id for p in real}),
                                   "unseen_by_training": bool(s.eval.real_authors.only_unseen
                                                              or str(s.paths.raw) != str(s.eval.real_authors.dir)),
                                   "judges": {n: judge_metrics(real, j) for n, j in real_judgments.items()}}
    else:
        metrics["real_authors"] = {"skipped": real_skipped}
    curves = {}
    for stage, path in (("sft", s.paths.sft), ("rft", s.paths.rft)):
        log_file = path / "training_log.json"
        curves[stage] = json.loads(log_file.read_text()) if log_file.exists() else []
    examples = pick_examples(pairs, judgments.get("rft", []), s.eval.examples, "rft")
    with atomic_dir(s.paths.report) as tmp:
        files = write_report(tmp, metrics, curves, examples)
        write_jsonl(tmp / "judgments.jsonl",
                    [*({"judge": n, "eval_set": "eval", **j} for n, js in judgments.items() for j in js),
                     *({"judge": n, "eval_set": "real_authors", **j} for n, js in real_judgments.items() for j in js)])
    return {"metrics": metrics, "headline": headline_rows(metrics),
            "files": {k: str(s.paths.report / Path(v).name) for k, v in files.items()}}


def eval_data_digest(pairs: list[Pair]) -> str:
    """A short digest of the pairs judged (ids, labels, both responses, exemplars), so two reports are
    compared only when they measured the same thing."""
    import hashlib

    h = hashlib.sha1()
    for p in pairs:
        h.update(json.dumps([p.pair_id, p.label, p.response_a, p.response_b, list(p.exemplars)]).encode("utf-8"))
    return h.hexdigest()[:12]


EXEMPLAR_COUNT_JUDGES = ("rft", "sft", "combined", "stylometric", "ngram", "embedding")


def exemplar_counts(n_max: int) -> list[int]:
    """1, 2, 4, ... below `n_max`, then `n_max` itself."""
    counts, c = [], 1
    while c < n_max:
        counts.append(c)
        c *= 2
    return counts + [n_max] if n_max >= 1 else []


def _by_exemplar_count(s: Settings, pairs: list[Pair], judges: dict, judgments: dict[str, list[dict]]) -> dict:
    """The same eval pairs re-judged with only the first k exemplars, for each k of
    `exemplar_counts` (the full count reuses the main judgments). The model judges' prompt shows
    at most `render.max_exemplars` of them, so their curve is flat beyond it."""
    from dataclasses import replace

    from persrm_core.evaluation.metrics import judge_metrics

    n_max = max((len(p.exemplars) for p in pairs), default=0)
    out: dict[str, dict[str, float]] = {}
    for name in (n for n in EXEMPLAR_COUNT_JUDGES if n in judgments and n in s.eval.exemplar_count_judges):
        out[name] = {}
        for k in exemplar_counts(n_max):
            if k == n_max:
                js = judgments[name]
                subset = pairs
            else:
                subset = [replace(p, exemplars=p.exemplars[:k]) for p in pairs]
                # accuracy counts the first order's verdict, so one order is enough here
                js = judges[name].judge(subset, both_orders=False)
            out[name][str(k)] = judge_metrics(subset, js)["accuracy"]
    return out


def eval_judges(s: Settings, gen) -> dict:
    """Every judge the evaluation runs, by name, each behind the `persrm_core.judging.judge.Judge` protocol:
    the base, SFT and RFT model judges, then `eval.baselines` (the training-free ones over the fitted
    evidence, and `scalar_rm`, a Bradley-Terry scalar reward model trained on the same train split)."""
    from persrm_core.judging.judge import BaselineJudge, ModelJudge

    fitted = s.paths.evidence if (s.paths.evidence / "evidence.json").is_file() else None
    judges: dict = {}
    for name, ref in (("base", base_model_ref(s)), ("sft", str(s.paths.sft)), ("rft", str(s.paths.rft))):
        judges[name] = ModelJudge(ref, s.render, gen, s.base_model.dtype, s.base_model.trust_remote_code,
                                  evidence=fitted if name == "base" else None)
    for name in s.eval.baselines:
        judges[name] = _scalar_rm_judge(s) if name == "scalar_rm" else BaselineJudge(name, s.seed, fitted)
    return judges


def _scalar_rm_judge(s: Settings):
    from persrm_core.training.scalar_rm import ScalarRMJudge

    if not (s.paths.scalar_rm / "config.json").exists():
        raise RuntimeError(f"eval.baselines names scalar_rm but {s.paths.scalar_rm} holds no model; "
                           "materialize the scalar_rm asset first")
    return ScalarRMJudge(s.paths.scalar_rm, batch_size=s.eval.batch_size)
