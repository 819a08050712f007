"""Quality gates and splits that turn synthetic pairs into the training and eval corpus.

Every gate is a named step over a Polars frame (through DuckDB SQL where a join or a window is
the natural expression) and reports how many rows it removed, so the filter is auditable.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import duckdb
import numpy as np
import polars as pl

from persrm_core.synthesis.splits import EVAL_SEEN, EVAL_UNSEEN, TRAIN
from persrm_core.synthesis.strategies import EDIT, SWAP, gated

PAIR_COLUMNS = ["pair_id", "author_id", "exemplars", "prompt", "response_a", "response_b", "label",
                "negative_type"]


@dataclass
class FilterConfig:
    min_response_words: int = 15
    max_response_words: int = 400
    max_length_ratio: float = 1.6  # longer / shorter response, in words
    max_label_skew: float = 0.02  # |share of label A - 0.5| allowed in each split
    near_duplicate: float = 0.8  # word 3-gram Jaccard at which two texts count as near-duplicates


@dataclass
class FilterResult:
    train: pl.DataFrame
    eval: pl.DataFrame
    removed: list[tuple[str, int]]  # (rule, rows removed), in the order applied

    def summary(self) -> dict:
        return {
            "rules": [{"rule": r, "removed": n} for r, n in self.removed],
            "splits": {s: self.split_counts(s) for s in (TRAIN, EVAL_SEEN, EVAL_UNSEEN)},
        }

    def split_counts(self, split: str) -> dict:
        frame = self.train if split == TRAIN else self.eval.filter(pl.col("split") == split)
        share_a = float((frame["label"] == "A").mean()) if frame.height else 0.0
        return {"pairs": frame.height, "authors": frame["author_id"].n_unique(), "label_A_share": share_a}


def _words(col: str) -> pl.Expr:
    return pl.col(col).str.split(" ").list.len()


def drop_blank(df: pl.DataFrame) -> pl.DataFrame:
    fields = ["prompt", "response_a", "response_b"]
    ok = pl.all_horizontal([pl.col(c).str.strip_chars().str.len_chars() > 0 for c in fields])
    return df.filter(ok & (pl.col("exemplars").list.len() > 0))


def drop_bad_charset(df: pl.DataFrame) -> pl.DataFrame:
    """Replacement characters and control characters mean a decoding accident upstream."""
    bad = r"[\x{FFFD}\x00-\x08\x0B\x0C\x0E-\x1F]"
    cols = ["prompt", "response_a", "response_b"]
    return df.filter(~pl.any_horizontal([pl.col(c).str.contains(bad) for c in cols]))


def drop_identical_responses(df: pl.DataFrame) -> pl.DataFrame:
    """A negative equal to the chosen response (up to spacing) teaches nothing. Case counts: a
    rule perturbation that only changed casing is a real stylistic negative."""
    norm = lambda c: pl.col(c).str.replace_all(r"\s+", " ").str.strip_chars()  # noqa: E731
    return df.filter(norm("response_a") != norm("response_b"))


# Negatives that are edits of the chosen text by design: a near-duplicate of it is what they are
# meant to be, so they are checked for the edit they promise instead (see drop_non_negatives).
EDITS = gated(EDIT)
SWAPS = gated(SWAP)


def _chosen_rejected(df: pl.DataFrame) -> tuple[pl.Series, pl.Series]:
    a_chosen = df["label"] == "A"
    chosen = pl.select(pl.when(a_chosen).then(df["response_a"]).otherwise(df["response_b"])).to_series()
    rejected = pl.select(pl.when(a_chosen).then(df["response_b"]).otherwise(df["response_a"])).to_series()
    return chosen, rejected


def swap_counts(chosen: pl.Series, rejected: pl.Series) -> pl.Series:
    """Words substituted between two texts at the same positions, vectorised: null where the texts
    differ by more than substitutions (a different whitespace layout or word count). The same
    rule as `persrm_core.synthesis.swap.changed_words`."""
    layout = lambda s: s.str.replace_all(r"\S+", "x")  # noqa: E731  whitespace skeleton
    same_layout = layout(chosen) == layout(rejected)
    frame = pl.DataFrame({"a": chosen.str.split(" "), "b": rejected.str.split(" ")}).with_row_index("i")
    # rows with a different word count stay out of the join below, so their count is null
    flat = frame.filter(pl.col("a").list.len() == pl.col("b").list.len()).explode("a", "b")
    diffs = flat.group_by("i").agg((pl.col("a") != pl.col("b")).sum().alias("n"))
    counts = frame.select("i").join(diffs, on="i", how="left")["n"]
    return pl.select(pl.when(same_layout).then(counts).otherwise(None)).to_series()


def drop_non_negatives(df: pl.DataFrame, cfg: FilterConfig) -> pl.DataFrame:
    """Negatives that are not really different: a free-text negative (another author's text, an
    LLM continuation) whose word 3-grams nearly equal the chosen response's, and a word swap that
    did not change exactly 3-4 words and nothing else (a "swap" that changed nothing)."""
    from persrm_core.data.neardup import rowwise_similarity

    if df.height == 0:
        return df
    types = df["negative_type"].fill_null("")
    free = ~types.is_in(list(EDITS + SWAPS))
    swap = types.is_in(list(SWAPS))
    bad = pl.Series([False] * df.height)
    if free.any():
        chosen, rejected = _chosen_rejected(df.filter(free))
        sim = rowwise_similarity(chosen, rejected, normalize=False).fill_null(0.0)
        bad = bad.scatter(free.arg_true(), sim >= cfg.near_duplicate)
    if swap.any():
        chosen, rejected = _chosen_rejected(df.filter(swap))
        n = swap_counts(chosen, rejected)
        bad = bad.scatter(swap.arg_true(), ~(n.is_between(3, 4).fill_null(False)))
    return df.filter(~bad)


def drop_near_duplicate_texts(df: pl.DataFrame, cfg: FilterConfig) -> pl.DataFrame:
    """Two different source texts that are near-duplicates (a text ingested twice with small
    edits, an author repeating themselves): keep the pairs of the first source text of each
    cluster only (MinHash/LSH over the distinct chosen texts, verified by exact Jaccard)."""
    from persrm_core.data.neardup import near_duplicate_clusters

    if df.height == 0:
        return df
    firsts = df.select("split", "chosen_source", "label", "response_a", "response_b").unique(
        "chosen_source", keep="first", maintain_order=True)  # one row per source text
    chosen, _ = _chosen_rejected(firsts)
    keep: list[str] = []
    sources = pl.DataFrame({"split": firsts["split"], "src": firsts["chosen_source"], "text": chosen})
    for _, part in sources.group_by("split"):  # across splits, drop_near_duplicate_leakage decides
        texts = part.sort("src")
        cluster = near_duplicate_clusters(texts["text"], threshold=cfg.near_duplicate)
        keep += texts["src"].filter(pl.Series(cluster == np.arange(len(cluster)))).to_list()
    return df.filter(pl.col("chosen_source").is_in(keep))


def drop_near_duplicate_leakage(df: pl.DataFrame, cfg: FilterConfig) -> pl.DataFrame:
    """Train pairs whose chosen or rejected response near-duplicates any eval response (the exact
    source-id join of drop_leakage cannot see a text that reached both splits under two ids)."""
    from persrm_core.data.neardup import cross_near_duplicates

    train = df.filter(pl.col("split") == TRAIN)
    evals = df.filter(pl.col("split") != TRAIN)
    if train.height == 0 or evals.height == 0:
        return df
    eval_texts = pl.concat([evals["response_a"], evals["response_b"]]).unique(maintain_order=True)
    # Each distinct train text once (a text is the chosen response of several pairs).
    train_texts = pl.concat([train["response_a"], train["response_b"]]).unique(maintain_order=True)
    near = train_texts.filter(pl.Series(cross_near_duplicates(train_texts, eval_texts, threshold=cfg.near_duplicate)))
    if near.len() == 0:
        return df
    bad = train.filter(pl.col("response_a").is_in(near.implode()) | pl.col("response_b").is_in(near.implode()))
    return df.filter(~pl.col("pair_id").is_in(bad["pair_id"].implode()))


def _sql(query: str, df: pl.DataFrame) -> pl.DataFrame:
    con = duckdb.connect()
    try:
        con.execute("SET enable_progress_bar = false")
        con.register("df", df.to_arrow())
        return con.sql(query).pl()
    finally:
        con.close()


def drop_exact_duplicates(df: pl.DataFrame) -> pl.DataFrame:
    """Keep the first (by pair_id) of pairs with the same prompt and the same two responses, in
    either order. Compared by 64-bit hashes of each text (no concatenated copies of the texts, so
    1M pairs fit in memory); a false match needs two 64-bit collisions at once."""
    a, b = pl.col("response_a").hash(), pl.col("response_b").hash()
    key = pl.struct(pl.col("prompt").hash().alias("p"), pl.min_horizontal(a, b).alias("lo"),
                    pl.max_horizontal(a, b).alias("hi"))
    return df.sort("pair_id").filter(key.is_first_distinct())


def drop_length_outliers(df: pl.DataFrame, cfg: FilterConfig) -> pl.DataFrame:
    a, b = _words("response_a"), _words("response_b")
    return df.filter(
        (pl.min_horizontal(a, b) >= cfg.min_response_words)
        & (pl.max_horizontal(a, b) <= cfg.max_response_words)
        & (pl.max_horizontal(a, b) / pl.min_horizontal(a, b) <= cfg.max_length_ratio)
    )


def drop_leakage(df: pl.DataFrame) -> pl.DataFrame:
    """Drop train pairs that use any text an eval pair's responses come from, and train pairs of
    authors reserved as unseen (a DuckDB join over the id columns only)."""
    leaky = _sql(f"""
        WITH eval_texts AS (
          SELECT chosen_source AS tid FROM df WHERE split <> '{TRAIN}'
          UNION SELECT negative_source FROM df WHERE split <> '{TRAIN}' AND negative_source IS NOT NULL),
        unseen AS (SELECT DISTINCT author_id FROM df WHERE split = '{EVAL_UNSEEN}'),
        train_texts AS (
          SELECT pair_id, chosen_source AS tid FROM df WHERE split = '{TRAIN}'
          UNION ALL SELECT pair_id, negative_source FROM df WHERE split = '{TRAIN}'
          UNION ALL SELECT pair_id, unnest(exemplar_sources) FROM df WHERE split = '{TRAIN}')
        SELECT DISTINCT pair_id FROM train_texts JOIN eval_texts USING (tid)
        UNION SELECT pair_id FROM df WHERE split = '{TRAIN}' AND author_id IN (SELECT author_id FROM unseen)
    """, df.select("pair_id", "split", "author_id", "chosen_source", "negative_source", "exemplar_sources"))
    return df.filter(~pl.col("pair_id").is_in(leaky["pair_id"].implode())).sort("pair_id")


def rebalance_labels(df: pl.DataFrame, cfg: FilterConfig, by: tuple[str, ...] = ("split",)) -> pl.DataFrame:
    """Drop surplus pairs of the majority label in any group (by default each split) whose A share
    is outside the bound (rows removed are reported like any rule's)."""
    parts = []
    for _, part in df.group_by(list(by), maintain_order=True):
        n_a = int((part["label"] == "A").sum())
        n_b = part.height - n_a
        if part.height and abs(n_a / part.height - 0.5) > cfg.max_label_skew:
            major = "A" if n_a > n_b else "B"
            keep = min(n_a, n_b) + int(cfg.max_label_skew * 2 * min(n_a, n_b))
            surplus = part.filter(pl.col("label") == major).sort("pair_id").head(keep)
            part = pl.concat([part.filter(pl.col("label") != major), surplus])
        parts.append(part)
    return pl.concat(parts).sort("pair_id") if parts else df


def corpus_stats(df: pl.DataFrame) -> dict:
    """What the drift checks compare between materializations: response lengths (words) and the
    share of each negative type."""
    if df.height == 0:
        return {"pairs": 0, "mean_words": 0.0, "median_words": 0.0, "negative_type_share": {}}
    lengths = pl.concat([df.select(_words("response_a").alias("w")), df.select(_words("response_b").alias("w"))])["w"]
    shares = df.group_by("negative_type").len().with_columns(share=pl.col("len") / df.height)
    return {"pairs": df.height, "mean_words": round(float(lengths.mean()), 3),
            "median_words": float(lengths.median()),
            "negative_type_share": {r["negative_type"]: round(r["share"], 4) for r in shares.sort("negative_type").to_dicts()}}


def stats_shift(previous: dict, current: dict, max_length_change: float = 0.2,
                max_share_change: float = 0.1) -> list[str]:
    """Human-readable shifts beyond the bounds (empty when none): mean length changed by more than
    `max_length_change` (relative), or a negative type's share moved by more than `max_share_change`."""
    problems = []
    before, after = previous.get("mean_words") or 0.0, current.get("mean_words") or 0.0
    if before and abs(after - before) / before > max_length_change:
        problems.append(f"mean response length moved {before:.1f} -> {after:.1f} words")
    types = set(previous.get("negative_type_share", {})) | set(current.get("negative_type_share", {}))
    for t in sorted(types):
        a, b = previous.get("negative_type_share", {}).get(t, 0.0), current.get("negative_type_share", {}).get(t, 0.0)
        if abs(a - b) > max_share_change:
            problems.append(f"negative type {t!r} share moved {a:.0%} -> {b:.0%}")
    return problems


def filter_pairs(pairs: pl.DataFrame, cfg: FilterConfig | None = None) -> FilterResult:
    cfg = cfg or FilterConfig()
    steps = [
        ("empty_or_whitespace", drop_blank),
        ("bad_charset", drop_bad_charset),
        ("negative_equals_chosen", drop_identical_responses),
        ("exact_duplicate", drop_exact_duplicates),
        ("negative_nearly_equals_chosen", lambda d: drop_non_negatives(d, cfg)),
        ("near_duplicate_text", lambda d: drop_near_duplicate_texts(d, cfg)),
        ("length_bounds_and_ratio", lambda d: drop_length_outliers(d, cfg)),
        ("train_eval_leakage", drop_leakage),
        ("train_eval_near_duplicate", lambda d: drop_near_duplicate_leakage(d, cfg)),
        ("label_balance", lambda d: rebalance_labels(d, cfg)),
        ("label_balance_per_negative_type", lambda d: rebalance_labels(d, cfg, by=("split", "negative_type"))),
    ]
    df, removed = pairs, []
    for name, step in steps:
        before = df.height
        df = step(df)
        removed.append((name, before - df.height))
    train = df.filter(pl.col("split") == TRAIN)
    evals = df.filter(pl.col("split") != TRAIN)
    return FilterResult(train=train, eval=evals, removed=removed)


def check_no_leakage(train: pl.DataFrame, evals: pl.DataFrame) -> list[str]:
    """Problems found (empty when clean): eval texts in train, unseen authors in train."""
    problems = []
    eval_texts = set(evals["chosen_source"]) | set(evals["negative_source"].drop_nulls())
    train_texts = (set(train["chosen_source"]) | set(train["negative_source"].drop_nulls())
                   | set(train.explode("exemplar_sources")["exemplar_sources"].drop_nulls()))
    if shared := eval_texts & train_texts:
        problems.append(f"{len(shared)} eval response text(s) also appear in train")
    unseen = set(evals.filter(pl.col("split") == EVAL_UNSEEN)["author_id"])
    if both := unseen & set(train["author_id"]):
        problems.append(f"unseen-eval author(s) present in train: {sorted(both)}")
    return problems


def write_parquet(df: pl.DataFrame, path: str | Path) -> None:
    from persrm_core.atomic import atomic_path

    with atomic_path(path, suffix=".parquet") as tmp:
        df.write_parquet(tmp)
