"""persrm_core.evaluation.metrics: accuracy (invalid counts as wrong), format-valid rate, position
consistency, breakdowns, and the bootstrap interval."""

from __future__ import annotations

import pytest

from persrm_core.evaluation.metrics import bootstrap_ci, judge_metrics
from persrm_core.records import Pair


def pair(pid: str, label: str, neg: str | None = "cross_author") -> Pair:
    return Pair(pid, "alice", ["ex"], "prompt", "resp a", "resp b", label, neg)


PAIRS = [pair("p1", "A"), pair("p2", "B"), pair("p3", "A", "rule_perturbation"),
         pair("p4", "B", "rule_perturbation"), pair("p5", "A", None)]


def judgments(*choices: str | None, **extra) -> list[dict]:
    out = []
    for i, c in enumerate(choices):
        j = {"pair_id": f"p{i + 1}", "choice": c, "scores": None, "rationale": ""}
        for k, vals in extra.items():
            j[k] = vals[i]
        out.append(j)
    return out


def test_accuracy_counts_invalid_choice_as_wrong():
    # p1 right, p2 wrong, p3 invalid, p4 right, p5 invalid
    m = judge_metrics(PAIRS, judgments("A", "A", None, "B", None))
    assert m["accuracy"] == 0.4
    assert m["n"] == 5


def test_format_valid_rate_is_share_of_non_null_choices():
    m = judge_metrics(PAIRS, judgments("A", "A", None, "B", None))
    assert m["format_valid_rate"] == 0.6
    assert judge_metrics(PAIRS, judgments(*[None] * 5))["format_valid_rate"] == 0.0
    assert judge_metrics(PAIRS, judgments(*[None] * 5))["accuracy"] == 0.0


def test_by_negative_type_groups_accuracy_and_names_missing_type_unknown():
    m = judge_metrics(PAIRS, judgments("A", "A", None, "B", "A"))
    assert m["by_negative_type"] == {"cross_author": 0.5, "rule_perturbation": 0.5, "unknown": 1.0}


def test_by_split_uses_the_given_split_map():
    splits = {"p1": "eval_seen", "p2": "eval_seen", "p3": "eval_unseen", "p4": "eval_unseen"}
    m = judge_metrics(PAIRS, judgments("A", "B", "B", "B", "A"), splits=splits)
    assert m["by_split"] == {"eval_seen": 1.0, "eval_unseen": 0.5, "unknown": 1.0}
    assert judge_metrics(PAIRS, judgments("A", "B", "B", "B", "A"))["by_split"] == {}


def test_position_consistency_is_none_without_swapped_choices():
    m = judge_metrics(PAIRS, judgments("A", "B", "A", "B", "A"))
    assert m["position_consistency"] is None
    assert m["debiased_accuracy"] is None


def test_position_consistency_counts_agreeing_orders_and_invalid_as_inconsistent():
    m = judge_metrics(PAIRS, judgments(
        "A", "B", "A", None, "A",
        choice_swapped=["A", "A", "A", None, "B"],
        debiased_choice=["A", None, "A", None, None]))
    assert m["position_consistency"] == 0.4  # p1, p3 agree; p4 both invalid is not consistent
    assert m["debiased_accuracy"] == 0.4


def test_perfect_judge_scores_one_everywhere():
    m = judge_metrics(PAIRS, judgments("A", "B", "A", "B", "A", choice_swapped=["A", "B", "A", "B", "A"]))
    assert m["accuracy"] == 1.0 and m["format_valid_rate"] == 1.0 and m["position_consistency"] == 1.0
    assert m["accuracy_ci95"] == [1.0, 1.0]


def test_accuracy_ci95_contains_accuracy_and_lies_in_unit_interval():
    pairs = [pair(f"q{i}", "AB"[i % 2]) for i in range(40)]
    choices = ["AB"[i % 2] if i % 3 else ("AB"[(i + 1) % 2] if i % 2 else None) for i in range(40)]
    js = [{"pair_id": f"q{i}", "choice": c} for i, c in enumerate(choices)]
    m = judge_metrics(pairs, js)
    lo, hi = m["accuracy_ci95"]
    assert 0.0 <= lo <= m["accuracy"] <= hi <= 1.0
    assert lo < hi


@pytest.mark.parametrize("hits", [[1, 0, 1, 1, 0, 1, 0, 1, 1, 1], [0] * 7 + [1] * 3, [1] * 30 + [0] * 70])
def test_bootstrap_ci_brackets_the_mean(hits):
    lo, hi = bootstrap_ci(hits, n_boot=500, seed=1)
    mean = sum(hits) / len(hits)
    assert 0.0 <= lo <= mean <= hi <= 1.0
    assert bootstrap_ci(hits, n_boot=500, seed=1) == [lo, hi]  # seeded: reproducible


def test_bootstrap_ci_narrows_with_more_data():
    small = bootstrap_ci([1, 0] * 10)
    large = bootstrap_ci([1, 0] * 500)
    assert large[1] - large[0] < small[1] - small[0]


def test_bootstrap_ci_of_no_hits_is_zero_interval():
    assert bootstrap_ci([]) == [0.0, 0.0]


def test_judgments_out_of_pair_order_raise():
    js = judgments("A", "B", "A", "B", "A")
    js[0], js[1] = js[1], js[0]
    with pytest.raises(ValueError, match="not in the order of the pairs"):
        judge_metrics(PAIRS, js)


def test_judgment_count_mismatch_raises():
    with pytest.raises(ValueError, match="5 pairs but 4 judgments"):
        judge_metrics(PAIRS, judgments("A", "B", "A", "B"))


def test_report_sentences_compare_judges_without_evidence_and_explain_the_smoke_profile():
    from persrm_core.evaluation.report import verdict_sentences

    def m(acc, valid=1.0):
        return {"accuracy": acc, "format_valid_rate": valid}

    metrics = {"judges": {"base": m(0.0, 0.0), "sft": m(0.5), "rft": m(0.75), "rft_no_evidence": m(0.5, 0.9),
                          "ngram": m(0.6)}, "settings": {"profile": "smoke"}}
    said = " ".join(verdict_sentences(metrics))
    assert "RFT beat the best baseline, ngram (0.750 vs 0.600)" in said  # rft_no_evidence is no baseline
    assert "Shown no evidence block, RFT scored 0.500 (format-valid 0.900) against 0.750 with it." in said
    assert "smoke profile" in said and "0.000" in said
    metrics["settings"]["profile"] = "default"
    assert "smoke profile" not in " ".join(verdict_sentences(metrics))


def test_report_examples_spread_over_authors_right_and_wrong_with_what_was_judged():
    from persrm_core.evaluation.report import _example_md, pick_examples

    long = " ".join(f"w{i}" for i in range(100))
    pairs = [Pair(f"p{a}{k}", f"author{a}", [long, "second", "third"], "a prompt", long, "short b", "A", None)
             for a in range(3) for k in range(3)]
    chosen = ["A", "B", "A", "A", "A", "B", "A", "A", "A"]  # right except p01 and p12
    js = [{"pair_id": p.pair_id, "choice": c, "scores": [7.0, 3.0], "rationale": "weighed"}
          for p, c in zip(pairs, chosen)]
    ex = pick_examples(pairs, js, 4, "rft")
    assert [e["pair_id"] for e in ex] == ["p00", "p10", "p01", "p12"]  # two right (two authors), two wrong
    assert ex[0]["exemplars"] == [" ".join(f"w{i}" for i in range(40)) + " ...", "second"]
    assert ex[0]["response_a"].endswith(" ...") and ex[0]["response_b"] == "short b"
    md = "\n".join(_example_md(ex[2]))
    assert "author author0, rft chose B, label A (wrong, scores A=7 B=3)" in md
    assert "> exemplar 1: w0 w1" in md and "**A:** w0" in md and "**B:** short b" in md
    assert len(pick_examples(pairs, js, 20, "rft")) == 9  # no more than there are


def test_smoothed_is_a_debiased_ema():
    from persrm_core.evaluation.plots import smoothed

    assert smoothed([1.0, 1.0, 1.0]) == pytest.approx([1.0, 1.0, 1.0])  # no pull towards 0 at the start
    out = smoothed([0.0, 1.0] * 10)
    assert max(out[5:]) - min(out[5:]) < 0.5 < 1.0  # the zig-zag's swing shrinks


def test_baselines_and_model_judges_share_one_protocol():
    """`BaselineJudge` puts the training-free baselines behind the same `judge(pairs, both_orders)`
    as the model judges, and refuses an unknown name up front."""
    import pytest

    from persrm_core.judging.judge import BASELINES, BaselineJudge, Judge, ModelJudge, baseline_judge
    from persrm_core.records import Pair

    pairs = [Pair(pair_id=f"p{i}", author_id="a", exemplars=["short words here.", "more short words."],
                  prompt="Say:", response_a="tiny." if i % 2 else "a much longer answer than the other one",
                  response_b="a much longer answer than the other one" if i % 2 else "tiny.", label="A")
             for i in range(6)]
    judge = BaselineJudge("length", seed=3)
    assert isinstance(judge, Judge)
    assert judge.judge(pairs, both_orders=True) == baseline_judge("length", pairs, seed=3, both_orders=True)
    assert [j["choice"] for j in judge.judge(pairs)] == ["A", "B", "A", "B", "A", "B"]
    assert issubclass(ModelJudge, Judge)
    with pytest.raises(ValueError, match="unknown baseline 'lenght'; known: " + ", ".join(BASELINES)):
        BaselineJudge("lenght")
