"""The corpus gates (persrm_core.data.gates), each on frames of its own: what the blocking checks on
`filtered_corpus` decide, with no stage run (tests/test_checks.py runs them through Dagster)."""

from __future__ import annotations

import polars as pl

from persrm_core.data import gates
from persrm_core.data.gates import CORPUS_SCHEMA


def corpus_frame(n: int = 4, split: str = "train", author: str = "a", prefix: str = "t", **over) -> pl.DataFrame:
    rows = [{"pair_id": f"{prefix}p{i}", "author_id": author, "exemplars": ["x y z"], "prompt": "p",
             "response_a": "one two three", "response_b": "four five six seven", "label": "AB"[i % 2],
             "negative_type": ["cross_author", "rule_perturbation"][i % 2], "split": split,
             "chosen_source": f"{prefix}{i}"} for i in range(n)]
    df = pl.DataFrame(rows, schema=CORPUS_SCHEMA)
    return df.with_columns(**{k: pl.lit(v) for k, v in over.items()}) if over else df


def _leak_frame(df: pl.DataFrame) -> pl.DataFrame:
    """The columns the leakage gate reads besides the schema's."""
    return df.with_columns(negative_source=pl.lit(None, pl.String),
                           exemplar_sources=pl.lit([], pl.List(pl.String)))


def _corpus():
    train = corpus_frame(4)
    evals = pl.concat([corpus_frame(2, "eval_seen", prefix="s"), corpus_frame(2, "eval_unseen", "u", prefix="u")])
    return train, evals


def test_schema_passes_a_good_corpus_and_names_each_problem():
    assert gates.schema(*_corpus()) == (True, {"problems": "none"})
    train, evals = _corpus()
    cases = {"missing column negative_type": (train.drop("negative_type"), evals),
             "column exemplars is String": (train.with_columns(pl.col("exemplars").list.join(" ")), evals),
             "labels other than A/B: ['C']": (train, evals.with_columns(label=pl.lit("C"))),
             "duplicate pair_id values": (pl.concat([train, train]), evals)}
    for problem, frames in cases.items():
        passed, meta = gates.schema(*frames)
        assert not passed and problem in meta["problems"], (problem, meta)


def test_not_empty_counts_each_split():
    assert gates.not_empty(*_corpus()) == (True, {"train": 4, "eval_seen": 2, "eval_unseen": 2})
    train, evals = _corpus()
    passed, counts = gates.not_empty(train, evals.filter(pl.col("split") != "eval_unseen"))
    assert not passed and counts["eval_unseen"] == 0
    assert gates.not_empty(train.head(0), evals)[0] is False


def test_no_leakage_finds_an_eval_text_or_an_unseen_author_in_train():
    train, evals = (_leak_frame(f) for f in _corpus())
    assert gates.no_leakage(train, evals) == (True, {"problems": "none"})
    copied = pl.concat([train, evals.head(1).with_columns(split=pl.lit("train"))])
    passed, meta = gates.no_leakage(copied, evals)
    assert not passed and "1 eval response text(s) also appear in train" in meta["problems"]
    as_exemplar = train.with_columns(exemplar_sources=pl.lit(["s0"]))
    assert gates.no_leakage(as_exemplar, evals)[0] is False  # an eval text shown as a train exemplar
    unseen_in_train = pl.concat([train, _leak_frame(corpus_frame(1, author="u", prefix="v"))])
    passed, meta = gates.no_leakage(unseen_in_train, evals)
    assert not passed and "unseen-eval author(s) present in train: ['u']" in meta["problems"]


def test_labels_balanced_within_the_skew_in_every_split():
    passed, meta = gates.labels_balanced(*_corpus(), max_skew=0.02)
    assert passed and meta["label_A_share"] == {"train": 0.5, "eval_seen": 0.5, "eval_unseen": 0.5}
    train, evals = _corpus()
    passed, meta = gates.labels_balanced(train.with_columns(label=pl.lit("A")), evals, max_skew=0.02)
    assert not passed and meta["max_skew"] == 0.5 and meta["label_A_share_by_negative_type"]["train/cross_author"] == 1.0
    assert gates.labels_balanced(train.head(3), evals, max_skew=0.2)[0] is True  # 2/3 A: within 0.2
    assert gates.labels_balanced(train.head(3), evals, max_skew=0.1)[0] is False
