"""The filtered corpus's gates, as plain functions of its two frames (train, eval).

They are the one place each gate lives: the blocking Dagster asset checks on `filtered_corpus`
(assets/checks.py) call them, and a failed one stops every asset downstream (training never sees a
leaking, empty, unbalanced or malformed corpus). Each returns `(passed, metadata)` and is tested on
frames of its own (tests/test_gates.py), with no stage run.
"""

from __future__ import annotations

import polars as pl

from persrm_core.data.corpus import check_no_leakage

# Column -> the Polars dtype every corpus file must have (the pair record plus what the filter needs).
CORPUS_SCHEMA = {
    "pair_id": pl.String, "author_id": pl.String, "exemplars": pl.List(pl.String), "prompt": pl.String,
    "response_a": pl.String, "response_b": pl.String, "label": pl.String, "negative_type": pl.String,
    "split": pl.String, "chosen_source": pl.String,
}
SPLITS = ("train", "eval_seen", "eval_unseen")


def schema(train: pl.DataFrame, evals: pl.DataFrame) -> tuple[bool, dict]:
    """Both files have the pair schema, A/B labels and unique pair ids."""
    problems = []
    for name, df in (("train.parquet", train), ("eval.parquet", evals)):
        for col, dtype in CORPUS_SCHEMA.items():
            if col not in df.columns:
                problems.append(f"{name}: missing column {col}")
            elif df.schema[col] != dtype:
                problems.append(f"{name}: column {col} is {df.schema[col]}, expected {dtype}")
        if "label" in df.columns and (bad := set(df["label"].unique().to_list()) - {"A", "B"}):
            problems.append(f"{name}: labels other than A/B: {sorted(map(str, bad))}")
        if "pair_id" in df.columns and df["pair_id"].n_unique() != df.height:
            problems.append(f"{name}: duplicate pair_id values")
    return not problems, {"problems": "; ".join(problems) or "none"}


def not_empty(train: pl.DataFrame, evals: pl.DataFrame) -> tuple[bool, dict]:
    """Train, eval_seen and eval_unseen each hold pairs."""
    counts = {"train": train.height,
              **{s: evals.filter(pl.col("split") == s).height if "split" in evals.columns else 0
                 for s in SPLITS[1:]}}
    return min(counts.values()) > 0, counts


def no_leakage(train: pl.DataFrame, evals: pl.DataFrame) -> tuple[bool, dict]:
    """No eval text (response or exemplar source) in train, no unseen-eval author in train."""
    problems = check_no_leakage(train, evals)
    return not problems, {"problems": "; ".join(problems) or "none"}


def labels_balanced(train: pl.DataFrame, evals: pl.DataFrame, max_skew: float) -> tuple[bool, dict]:
    """The share of label A is within 0.5 +/- `max_skew` in every split."""
    df = pl.concat([train, evals], how="diagonal_relaxed")
    shares = {r["split"]: round(r["share"], 4) for r in
              df.group_by("split").agg((pl.col("label") == "A").mean().alias("share")).to_dicts()}
    by_type = {f"{r['split']}/{r['negative_type']}": round(r["share"], 4) for r in
               df.group_by("split", "negative_type").agg((pl.col("label") == "A").mean().alias("share"))
               .sort("split", "negative_type").to_dicts()}
    worst = max((abs(v - 0.5) for v in shares.values()), default=0.0)
    return worst <= max_skew + 1e-9, {"label_A_share": shares, "label_A_share_by_negative_type": by_type,
                                      "max_skew": round(worst, 4)}
