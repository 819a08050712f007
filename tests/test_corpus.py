"""persrm_core.data.corpus: each quality gate on small hand-built frames (one passing, one failing
case), the removed counts of filter_pairs, and check_no_leakage."""

from __future__ import annotations

import polars as pl
import pytest

from persrm_core.data.corpus import (
    FilterConfig,
    check_no_leakage,
    drop_bad_charset,
    drop_blank,
    drop_exact_duplicates,
    drop_identical_responses,
    drop_leakage,
    drop_length_outliers,
    filter_pairs,
    rebalance_labels,
)

SCHEMA = {
    "pair_id": pl.String, "author_id": pl.String, "exemplars": pl.List(pl.String), "prompt": pl.String,
    "response_a": pl.String, "response_b": pl.String, "label": pl.String, "negative_type": pl.String,
    "perturbed_factors": pl.List(pl.String), "split": pl.String, "chosen_source": pl.String,
    "negative_source": pl.String, "exemplar_sources": pl.List(pl.String),
}
CFG = FilterConfig()


def words(n: int, stem: str = "word") -> str:
    return " ".join(f"{stem}{i}" for i in range(n))


def row(pair_id: str, **kw) -> dict:
    base = {
        "pair_id": pair_id, "author_id": "alice", "exemplars": ["an exemplar text"],
        "prompt": f"prompt of {pair_id}", "response_a": words(20, f"{pair_id}a"),
        "response_b": words(20, f"{pair_id}b"), "label": "A", "negative_type": "cross_author",
        "perturbed_factors": [], "split": "train", "chosen_source": f"src-{pair_id}",
        "negative_source": None, "exemplar_sources": ["ex-1"],
    }
    return base | kw


def frame(*rows: dict) -> pl.DataFrame:
    return pl.DataFrame(list(rows), schema=SCHEMA)


def ids(df: pl.DataFrame) -> list[str]:
    return sorted(df["pair_id"].to_list())


# --- drop_blank ----------------------------------------------------------------------------------

def test_drop_blank_keeps_complete_rows():
    assert ids(drop_blank(frame(row("p1"), row("p2")))) == ["p1", "p2"]


@pytest.mark.parametrize("field,value", [("prompt", "   "), ("response_a", ""), ("response_b", "\n\t"),
                                         ("exemplars", [])])
def test_drop_blank_drops_row_with_blank_field(field, value):
    assert ids(drop_blank(frame(row("ok"), row("bad", **{field: value})))) == ["ok"]


# --- drop_bad_charset ----------------------------------------------------------------------------

def test_drop_bad_charset_keeps_ordinary_unicode_newlines_and_tabs():
    good = row("ok", response_a="Café déjà vu 😊 — naïve\nnew line\tand tab " + words(15))
    assert ids(drop_bad_charset(frame(good))) == ["ok"]


@pytest.mark.parametrize("field,bad", [("response_a", "replacement \ufffd char"),
                                       ("response_b", "bell \x07 char"),
                                       ("prompt", "nul \x00 byte"), ("prompt", "esc \x1b[0m")])
def test_drop_bad_charset_drops_replacement_and_control_characters(field, bad):
    assert ids(drop_bad_charset(frame(row("ok"), row("bad", **{field: bad})))) == ["ok"]


# --- drop_identical_responses ----------------------------------------------------------------------

def test_drop_identical_responses_keeps_different_responses():
    assert ids(drop_identical_responses(frame(row("ok", response_a="one two", response_b="one three")))) == ["ok"]


def test_drop_identical_responses_drops_equal_up_to_spacing_but_keeps_a_casing_change():
    bad = row("bad", response_a="hello  world\n again ", response_b="hello world again")
    casing = row("casing", response_a="Hello World again", response_b="hello world again",
                 negative_type="rule_perturbation")
    assert ids(drop_identical_responses(frame(row("ok"), bad, casing))) == ["casing", "ok"]


def one_word_changed(text: str, at: int = 5, new: str = "CHANGED") -> str:
    w = text.split()
    w[at] = new
    return " ".join(w)


def test_drop_non_negatives_removes_near_copies_and_swaps_that_are_not_three_or_four_words():
    from persrm_core.data.corpus import FilterConfig, drop_non_negatives

    base = words(40, "t")
    swapped4 = base
    for k, at in enumerate((3, 12, 22, 33)):
        swapped4 = one_word_changed(swapped4, at, f"syn{k}")
    df = frame(row("copy", response_a=base, response_b=one_word_changed(base)),  # cross_author, J = 35/41
               row("other", response_a=base, response_b=words(40, "u")),
               row("swap1", response_a=base, response_b=one_word_changed(base), negative_type="lexicon_swap"),
               row("swap4", response_a=base, response_b=swapped4, negative_type="lexicon_swap"),
               row("respaced", response_a=base, response_b=base.replace(" ", "  ", 3), negative_type="minimal_word_swap"),
               row("rule", response_a=base, response_b=one_word_changed(base), negative_type="rule_perturbation"),
               row("b-copy", label="B", response_b=base, response_a=one_word_changed(base)))
    assert ids(drop_non_negatives(df, FilterConfig())) == ["other", "rule", "swap4"]


def test_drop_near_duplicate_texts_keeps_one_source_per_cluster():
    from persrm_core.data.corpus import FilterConfig, drop_near_duplicate_texts

    base = words(40, "t")
    df = frame(row("p1", chosen_source="s1", response_a=base),
               row("p1b", chosen_source="s1", response_a=base, negative_type="rule_perturbation"),
               row("p2", chosen_source="s2", response_a=one_word_changed(base)),  # the same text, edited
               row("p3", chosen_source="s3"))
    assert ids(drop_near_duplicate_texts(df, FilterConfig())) == ["p1", "p1b", "p3"]


def test_drop_near_duplicate_leakage_drops_train_pairs_near_an_eval_text():
    from persrm_core.data.corpus import FilterConfig, drop_near_duplicate_leakage

    text = words(40, "e")
    df = frame(row("t1", response_b=one_word_changed(text)),
               row("t2"),
               row("e1", split="eval_seen", response_a=text, chosen_source="E1"))
    assert ids(drop_near_duplicate_leakage(df, FilterConfig())) == ["e1", "t2"]


# --- drop_exact_duplicates -------------------------------------------------------------------------

def test_drop_exact_duplicates_keeps_distinct_pairs_and_columns():
    df = frame(row("p1"), row("p2"), row("p3", prompt="prompt of p1", response_a=row("p1")["response_a"]))
    out = drop_exact_duplicates(df)
    assert ids(out) == ["p1", "p2", "p3"]
    assert out.columns == df.columns
    assert out.schema["exemplars"] == pl.List(pl.String)
    assert out.filter(pl.col("pair_id") == "p1").to_dicts() == df.filter(pl.col("pair_id") == "p1").to_dicts()


def test_drop_exact_duplicates_drops_later_copy_with_same_prompt_and_responses():
    first = row("p1")
    dup = first | {"pair_id": "p2", "label": "B", "author_id": "bob"}
    assert ids(drop_exact_duplicates(frame(dup, first, row("p3")))) == ["p1", "p3"]


def test_drop_exact_duplicates_counts_swapped_a_b_order_as_duplicate():
    first = row("p1")
    swapped = first | {"pair_id": "p2", "response_a": first["response_b"],
                       "response_b": first["response_a"], "label": "B"}
    assert ids(drop_exact_duplicates(frame(first, swapped))) == ["p1"]


# --- drop_length_outliers --------------------------------------------------------------------------

def test_drop_length_outliers_keeps_responses_within_bounds_and_ratio():
    df = frame(row("p1", response_a=words(15), response_b=words(24)),  # ratio 1.6 exactly
               row("p2", response_a=words(400), response_b=words(300)))
    assert ids(drop_length_outliers(df, CFG)) == ["p1", "p2"]


@pytest.mark.parametrize("n_a,n_b", [(14, 20), (20, 401), (20, 33), (40, 20)])
def test_drop_length_outliers_drops_too_short_too_long_or_unbalanced(n_a, n_b):
    df = frame(row("ok"), row("bad", response_a=words(n_a), response_b=words(n_b)))
    assert ids(drop_length_outliers(df, CFG)) == ["ok"]


# --- drop_leakage ----------------------------------------------------------------------------------

def leakage_frame(*extra: dict) -> pl.DataFrame:
    return frame(
        row("e1", split="eval_seen", chosen_source="E1", negative_source="E2", exemplar_sources=["T9"]),
        row("u1", author_id="ursula", split="eval_unseen", chosen_source="U1", exemplar_sources=["U2"]),
        row("t1", chosen_source="T1", negative_source="T2", exemplar_sources=["T3", "T9"]),
        *extra,
    )


def test_drop_leakage_keeps_clean_train_and_all_eval_rows():
    # T9 is an eval pair's *exemplar* (a seen author's train text): allowed in train
    assert ids(drop_leakage(leakage_frame())) == ["e1", "t1", "u1"]


@pytest.mark.parametrize("leak", [
    {"chosen_source": "E1"},                                  # train answers with an eval chosen text
    {"negative_source": "E2"},                                # train negative is an eval negative
    {"exemplar_sources": ["T3", "E1"]},                       # train exemplar is an eval response
    {"negative_source": "U1"},                                # unseen author's eval text as negative
    {"author_id": "ursula", "chosen_source": "U9", "exemplar_sources": ["U8"]},  # unseen author in train
])
def test_drop_leakage_drops_train_pair_touching_eval_texts_or_unseen_authors(leak):
    out = drop_leakage(leakage_frame(row("t2", **leak)))
    assert ids(out) == ["e1", "t1", "u1"]


# --- rebalance_labels ------------------------------------------------------------------------------

def test_rebalance_labels_keeps_balanced_splits():
    df = frame(*(row(f"t{i}", label="AB"[i % 2]) for i in range(6)),
               *(row(f"e{i}", label="AB"[i % 2], split="eval_seen") for i in range(4)))
    assert rebalance_labels(df, CFG).height == 10


def test_rebalance_labels_drops_surplus_majority_in_skewed_split_only():
    df = frame(*(row(f"t{i}", label="A" if i < 6 else "B") for i in range(10)),
               *(row(f"e{i}", label="AB"[i % 2], split="eval_seen") for i in range(4)))
    out = rebalance_labels(df, CFG)
    train = out.filter(pl.col("split") == "train")
    assert (train["label"] == "A").sum() == 4 and (train["label"] == "B").sum() == 4
    assert ids(train) == ["t0", "t1", "t2", "t3", "t6", "t7", "t8", "t9"]  # earliest A rows kept
    assert out.filter(pl.col("split") == "eval_seen").height == 4


def test_rebalance_labels_result_is_within_max_label_skew():
    df = frame(*(row(f"t{i:03d}", label="A" if i < 130 else "B") for i in range(230)))
    cfg = FilterConfig(max_label_skew=0.02)
    out = rebalance_labels(df, cfg)
    share = float((out["label"] == "A").mean())
    assert abs(share - 0.5) <= 0.02
    assert out.height == 100 + 100 + int(0.02 * 2 * 100)


# --- filter_pairs ----------------------------------------------------------------------------------

def test_filter_pairs_reports_rows_removed_by_each_rule_in_order():
    clean = [row("t1", label="A"), row("t2", label="B"), row("t3", label="A"), row("t4", label="B"),
             row("t5", label="A"),  # makes train 3 A : 2 B -> label_balance drops one A
             row("e1", split="eval_seen", label="A", chosen_source="E1"),
             row("e2", split="eval_seen", label="B", chosen_source="E2"),
             row("u1", split="eval_unseen", author_id="ursula", label="A", chosen_source="U1"),
             row("u2", split="eval_unseen", author_id="ursula", label="B", chosen_source="U2")]
    t1 = clean[0]
    bad = [row("x-blank", prompt=" "),
           row("x-charset", response_a="broken \ufffd " + words(20)),
           row("x-identical", response_b=row("x-identical")["response_a"].replace(" ", "  ")),
           t1 | {"pair_id": "t1-dup", "response_a": t1["response_b"], "response_b": t1["response_a"]},
           row("x-copy", response_b=one_word_changed(words(40, "c")), response_a=words(40, "c")),
           row("x-near", response_a=clean[1]["response_b"], response_b=words(20, "xn"), label="A"),
           row("x-short", response_a=words(5)),
           row("x-leak", exemplar_sources=["E2"]),
           row("x-near-eval", response_a=one_word_changed(words(40, "ev"), 2), response_b=words(40, "xe"))]
    clean[5] = clean[5] | {"response_a": words(40, "ev"), "response_b": words(40, "eb")}
    result = filter_pairs(frame(*clean, *bad), CFG)
    assert result.removed == [("empty_or_whitespace", 1), ("bad_charset", 1), ("negative_equals_chosen", 1),
                              ("exact_duplicate", 1), ("negative_nearly_equals_chosen", 1),
                              ("near_duplicate_text", 1), ("length_bounds_and_ratio", 1),
                              ("train_eval_leakage", 1), ("train_eval_near_duplicate", 1), ("label_balance", 1),
                              ("label_balance_per_negative_type", 0)]
    assert ids(result.train) == ["t1", "t2", "t3", "t4"]
    assert ids(result.eval) == ["e1", "e2", "u1", "u2"]
    assert check_no_leakage(result.train, result.eval) == []
    summary = result.summary()
    assert summary["splits"]["train"] == {"pairs": 4, "authors": 1, "label_A_share": 0.5}
    assert summary["splits"]["eval_unseen"]["pairs"] == 2


def test_filter_pairs_on_clean_frame_removes_nothing():
    df = frame(row("t1", label="A"), row("t2", label="B"),
               row("e1", split="eval_seen", label="A", chosen_source="E1"),
               row("e2", split="eval_seen", label="B", chosen_source="E2"))
    result = filter_pairs(df)
    assert [n for _, n in result.removed] == [0] * 11
    assert result.train.height == 2 and result.eval.height == 2


# --- check_no_leakage ------------------------------------------------------------------------------

def test_check_no_leakage_finds_nothing_in_clean_split():
    df = leakage_frame()
    assert check_no_leakage(df.filter(pl.col("split") == "train"), df.filter(pl.col("split") != "train")) == []


def test_check_no_leakage_reports_shared_texts_and_unseen_authors():
    df = leakage_frame(row("t2", exemplar_sources=["E2"]),
                       row("t3", chosen_source="E1"),
                       row("t4", author_id="ursula", chosen_source="U7"))
    problems = check_no_leakage(df.filter(pl.col("split") == "train"), df.filter(pl.col("split") != "train"))
    assert len(problems) == 2
    assert problems[0].startswith("2 eval response text(s) also appear in train")
    assert "['ursula']" in problems[1]


def test_vectorised_swap_counts_agree_with_changed_words():
    import random

    from persrm_core.data.corpus import swap_counts
    from persrm_core.synthesis.swap import changed_words, minimal_swap

    rng = random.Random(3)
    base = ["The company said profits rose sharply, and the big firm was happy.",
            "i think the small shop sold many old books  last week.\nit was quick.",
            "Analysts said the market fell quickly after the large deal."]
    a, b = [], []
    for text in base * 20:
        made = minimal_swap(text, rng)
        a.append(text)
        b.append(made[0] if made and rng.random() < 0.6 else rng.choice([text, text + " extra", text.replace(" ", "  ", 1)]))
    got = swap_counts(pl.Series(a), pl.Series(b)).to_list()
    want = [None if (c := changed_words(x, y)) is None else len(c) for x, y in zip(a, b)]
    assert got == want and any(w in (3, 4) for w in want) and None in want and 0 in want
