"""persrm_core.training.rewards.verdict_reward (TRL-shaped): correct, wrong and invalid outputs, and a table
of adversarial outputs a policy could try under GRPO. (The traces themselves: tests/test_evidence.py.)"""

from __future__ import annotations

import pytest

from persrm_core.judging.judge_format import format_completion
from persrm_core.training.rewards import CORRECT, INVALID, WRONG, verdict_reward

A_OK = format_completion("Casing matches A.", 8, 2, "A")
B_OK = format_completion("Emoji match B.", 1, 9, "B")
BAD = [
    "",
    "Reason.\nScores: A=5 B=5\nVerdict: [[A]]",
    "Reason.\nScores: A=8 B=2\nVerdict: [[A]] [[B]]",
    "Reason.\nScores: A=8 B=2\nVerdict: [[A]]\nextra",
    "Verdict: [[A]]",
    "Reason.\nScores: A=11 B=2\nVerdict: [[A]]",
]


def msgs(text: str) -> list[dict]:
    return [{"role": "assistant", "content": text}]


def test_reward_constants_make_invalid_worse_than_wrong():
    assert CORRECT == 1.0 and WRONG == -1.0
    assert INVALID < WRONG


def test_verdict_reward_scores_correct_wrong_for_string_completions():
    assert verdict_reward([A_OK, A_OK, B_OK, B_OK], label=["A", "B", "B", "A"]) == [
        CORRECT, WRONG, CORRECT, WRONG]


def test_verdict_reward_scores_conversational_completions_like_strings():
    comps = [A_OK, B_OK] + BAD
    labels = ["A", "A"] + ["A"] * len(BAD)
    assert verdict_reward([msgs(c) for c in comps], label=labels) == verdict_reward(comps, label=labels)
    assert verdict_reward([msgs(A_OK), msgs(B_OK)], label=["A", "A"]) == [CORRECT, WRONG]


@pytest.mark.parametrize("bad", BAD, ids=range(len(BAD)))
def test_verdict_reward_gives_invalid_penalty_whatever_the_label(bad):
    assert verdict_reward([bad, msgs(bad)], label=["A", "B"]) == [INVALID, INVALID]


def test_verdict_reward_accepts_trl_extra_kwargs_and_trailing_end_marker():
    out = verdict_reward([A_OK + "<|im_end|>"], label=["A"], prompts=["p"], pair_id=["x"], trainer_state=None)
    assert out == [CORRECT]


def test_verdict_reward_refuses_labels_not_matching_completions():
    with pytest.raises(ValueError):
        verdict_reward([A_OK, B_OK], label=["A"])


# The reward table: adversarial outputs a policy could try under GRPO, each with the reward it
# must get when the label is A. Nothing that dodges the format may pay better than a wrong verdict.
REWARD_TABLE = [
    ("correct", A_OK, CORRECT),
    ("wrong but well formed", B_OK, WRONG),
    ("empty", "", INVALID),
    ("whitespace only", "   \n\t ", INVALID),
    ("tied scores", "Reason.\nScores: A=5 B=5\nVerdict: [[A]]", INVALID),
    ("both verdicts on one line", "Reason.\nScores: A=8 B=2\nVerdict: [[A]] [[B]]", INVALID),
    ("text after the verdict", "Reason.\nScores: A=8 B=2\nVerdict: [[A]]\nextra", INVALID),
    ("no rationale or scores", "Verdict: [[A]]", INVALID),
    ("score above range", "Reason.\nScores: A=11 B=2\nVerdict: [[A]]", INVALID),
    ("negative score", "Reason.\nScores: A=8 B=-1\nVerdict: [[A]]", INVALID),
    ("scores disagree with verdict", "Reason.\nScores: A=2 B=8\nVerdict: [[A]]", INVALID),
    ("neither named", "Reason.\nScores: A=8 B=2\nVerdict: [[C]]", INVALID),
    ("lower-case letter", "Reason.\nScores: A=8 B=2\nVerdict: [[a]]", INVALID),
    ("no brackets", "Reason.\nScores: A=8 B=2\nVerdict: A", INVALID),
    ("Greek capital alpha lookalike", "Reason.\nScores: A=8 B=2\nVerdict: [[\u0391]]", INVALID),
    ("two verdict lines", "Reason.\nScores: A=8 B=2\nVerdict: [[A]]\nVerdict: [[A]]", INVALID),
    ("two scores lines", "Reason.\nScores: A=8 B=2\nScores: A=8 B=2\nVerdict: [[A]]", INVALID),
    ("verdict before scores", "Reason.\nVerdict: [[A]]\nScores: A=8 B=2", INVALID),
    ("fractional scores", "Reason.\nScores: A=7.5 B=2\nVerdict: [[A]]", INVALID),
    ("a B verdict hidden in the rationale", "The verdict is [[B]].\nScores: A=8 B=2\nVerdict: [[A]]", INVALID),
    ("scores line missing B", "Reason.\nScores: A=8\nVerdict: [[A]]", INVALID),
    ("rationale only", "A matches the exemplars in casing and punctuation.", INVALID),
]


def test_reward_table_has_at_least_15_adversarial_outputs():
    assert sum(expected == INVALID for _, _, expected in REWARD_TABLE) >= 15


@pytest.mark.parametrize("name,output,expected", REWARD_TABLE, ids=[n for n, _, _ in REWARD_TABLE])
def test_reward_table(name, output, expected):
    assert verdict_reward([output], label=["A"]) == [expected]
    assert verdict_reward([msgs(output)], label=["A"]) == [expected]
    if expected == INVALID:  # invalid whatever the label: the policy cannot guess its way out
        assert verdict_reward([output], label=["B"]) == [INVALID]


def test_metric_rewards_report_accuracy_and_invalid_rate_without_shaping():
    from persrm_core.training.rewards import verdict_correct, verdict_invalid

    outs = [A_OK, B_OK, "", "Reason.\nScores: A=5 B=5\nVerdict: [[A]]"]
    assert verdict_correct(outs, label=["A"] * 4) == [1.0, 0.0, 0.0, 0.0]
    assert verdict_invalid(outs, label=["A"] * 4) == [0.0, 0.0, 1.0, 1.0]
