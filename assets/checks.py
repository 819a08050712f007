"""Blocking asset checks on the corpus: no leakage between splits, balanced A/B labels."""


import polars as pl
from dagster import AssetCheckResult, AssetCheckSeverity, asset_check

from assets.chain import filtered_corpus
from assets.resources import PersrmConfig
from persrm_core.corpus import check_no_leakage


@asset_check(asset=filtered_corpus, blocking=True, description="No eval text or unseen author in train.")
def corpus_has_no_leakage(persrm: PersrmConfig) -> AssetCheckResult:
    s = persrm.settings()
    train = pl.read_parquet(s.paths.corpus / "train.parquet")
    evals = pl.read_parquet(s.paths.corpus / "eval.parquet")
    problems = check_no_leakage(train, evals)
    return AssetCheckResult(passed=not problems, severity=AssetCheckSeverity.ERROR,
                            metadata={"problems": "; ".join(problems) or "none"})


@asset_check(asset=filtered_corpus, blocking=True, description="Label A share within 50% +/- max_label_skew per split.")
def corpus_labels_balanced(persrm: PersrmConfig) -> AssetCheckResult:
    s = persrm.settings()
    frames = [pl.read_parquet(s.paths.corpus / f) for f in ("train.parquet", "eval.parquet")]
    df = pl.concat(frames)
    shares = {r["split"]: round(r["share"], 4) for r in
              df.group_by("split").agg((pl.col("label") == "A").mean().alias("share")).to_dicts()}
    worst = max(abs(v - 0.5) for v in shares.values())
    return AssetCheckResult(passed=worst <= s.filter.max_label_skew + 1e-9, severity=AssetCheckSeverity.ERROR,
                            metadata={"label_A_share": shares, "max_skew": round(worst, 4)})


ALL_CHECKS = [corpus_has_no_leakage, corpus_labels_balanced]
