"""persrm_core.judging.judge_format: the strict verdict parser, completion text, and rendering limits."""

from __future__ import annotations

import pytest

from persrm_core.judging.judge_format import (
    RenderLimits,
    completion_text,
    format_completion,
    parse_verdict,
    render_messages,
    user_message,
)

GOOD = "Capital letters: the exemplars are all lowercase, like A.\nScores: A=8 B=3\nVerdict: [[A]]"


def test_parse_verdict_accepts_well_formed_output():
    v = parse_verdict(GOOD)
    assert v.valid and v.choice == "A"
    assert v.scores == (8.0, 3.0)
    assert v.rationale == "Capital letters: the exemplars are all lowercase, like A."
    assert v.error is None


@pytest.mark.parametrize("marker", ["<|im_end|>", "\n<|im_end|>", "<|endoftext|>", "</s>", "<eos>\n"])
def test_parse_verdict_accepts_a_trailing_end_marker(marker):
    v = parse_verdict(GOOD + marker)
    assert v.choice == "A" and v.scores == (8.0, 3.0)


def test_parse_verdict_reads_a_b_verdict_with_multi_line_rationale_and_surrounding_space():
    out = "\n  Emoji: B has none, like the exemplars.\n\nWord length: B is closer.  \nScores: A=2 B=9\n Verdict: [[B]] \n"
    v = parse_verdict(out)
    assert v.choice == "B" and v.scores == (2.0, 9.0)
    assert v.rationale == "Emoji: B has none, like the exemplars.\nWord length: B is closer."


def test_parse_verdict_accepts_extreme_scores_0_and_10():
    assert parse_verdict("Reason.\nScores: A=0 B=10\nVerdict: [[B]]").choice == "B"


def test_format_completion_round_trips_through_parse_verdict():
    for label, (a, b) in (("A", (9, 1)), ("B", (4, 7))):
        v = parse_verdict(format_completion("  Some reason.  ", a, b, label))
        assert (v.choice, v.scores, v.rationale) == (label, (float(a), float(b)), "Some reason.")


R, S, V = "The exemplars avoid exclamation marks, like A.", "Scores: A=8 B=3", "Verdict: [[A]]"
ADVERSARIAL = {
    "both_named_two_brackets": f"{R}\n{S}\nVerdict: [[A]] [[B]]",
    "both_named_slash": f"{R}\n{S}\nVerdict: [[A/B]]",
    "neither_named": f"{R}\n{S}\nVerdict: [[C]]",
    "empty_brackets": f"{R}\n{S}\nVerdict: [[]]",
    "text_after_verdict": f"{R}\n{S}\n{V}\nI hope this helps.",
    "marker_then_text": f"{R}\n{S}\n{V}<|im_end|>\nmore",
    "missing_scores": f"{R}\nMore reasoning.\n{V}",
    "tied_scores": f"{R}\nScores: A=5 B=5\n{V}",
    "score_out_of_range": f"{R}\nScores: A=11 B=3\n{V}",
    "three_digit_score": f"{R}\nScores: A=100 B=3\n{V}",
    "negative_score": f"{R}\nScores: A=8 B=-1\n{V}",
    "fractional_score": f"{R}\nScores: A=8.5 B=3\n{V}",
    "scores_disagree_with_verdict": f"{R}\nScores: A=2 B=9\n{V}",
    "two_verdict_lines": f"{R}\n{S}\n{V}\nVerdict: [[A]]",
    "two_conflicting_verdicts": f"{R}\n{S}\nVerdict: [[B]]\n{V}",
    "two_scores_lines": f"{R}\n{S}\n{S}\n{V}",
    "lowercase_verdict": f"{R}\n{S}\nverdict: [[a]]",
    "lowercase_label": f"{R}\n{S}\nVerdict: [[a]]",
    "missing_rationale": f"{S}\n{V}",
    "empty_string": "",
    "whitespace_only": " \n\t\n",
    "only_verdict": V,
    "verdict_without_brackets": f"{R}\n{S}\nVerdict: A",
    "single_brackets": f"{R}\n{S}\nVerdict: [A]",
    "scores_after_verdict": f"{R}\n{V}\n{S}",
    "junk_after_verdict_same_line": f"{R}\n{S}\nVerdict: [[A]]!",
    "scores_and_verdict_on_one_line": f"{R}\nScores: A=8 B=3 Verdict: [[A]]",
    "scores_reordered": f"{R}\nScores: B=3 A=8\n{V}",
    "markdown_bold_verdict": f"{R}\n{S}\n**Verdict: [[A]]**",
    "only_end_marker": "<|im_end|>",
}


def test_adversarial_table_has_at_least_fifteen_cases():
    assert len(ADVERSARIAL) >= 15


@pytest.mark.parametrize("case", sorted(ADVERSARIAL))
def test_parse_verdict_rejects_adversarial_output(case):
    v = parse_verdict(ADVERSARIAL[case])
    assert v.choice is None and not v.valid
    assert v.scores is None
    assert isinstance(v.error, str) and v.error


def test_parse_verdict_names_the_reason_for_tied_and_disagreeing_scores():
    assert parse_verdict(ADVERSARIAL["tied_scores"]).error == "tied scores"
    assert parse_verdict(ADVERSARIAL["scores_disagree_with_verdict"]).error == "scores disagree with the verdict"
    assert parse_verdict(ADVERSARIAL["score_out_of_range"]).error == "scores out of range 0-10"


def test_invalid_verdict_keeps_the_raw_text_as_rationale():
    v = parse_verdict("  some rambling  ")
    assert v.rationale == "some rambling"


@pytest.mark.parametrize("completion,expected", [
    ("plain text", "plain text"),
    ([{"role": "assistant", "content": "from messages"}], "from messages"),
    ([{"role": "user", "content": "q"}, {"role": "assistant", "content": "last"}], "last"),
    ({"role": "assistant", "content": "one message"}, "one message"),
    ([], ""),
    ({"role": "assistant"}, ""),
])
def test_completion_text_extracts_text_from_trl_completion_shapes(completion, expected):
    assert completion_text(completion) == expected


def test_user_message_cuts_exemplars_and_responses_to_limits():
    limits = RenderLimits(max_exemplars=2, max_exemplar_words=3, max_response_words=4)
    msg = user_message(["e1 a b c d", "e2", "e3"], "p q r s t u", "a1 a2 a3 a4 a5", "b1", limits)
    lines = msg.splitlines()
    assert lines[0] == "Exemplars by the author:"
    assert lines[1] == "[1] e1 a b ..."
    assert lines[2] == "[2] e2"
    assert "[3]" not in msg
    assert "Prompt: p q r s ..." in lines
    assert "Response A: a1 a2 a3 a4 ..." in lines
    assert "Response B: b1" in lines


def test_render_messages_drops_exemplars_until_the_token_budget_fits():
    count = lambda msgs: sum(len(m["content"].split()) for m in msgs)  # noqa: E731
    exemplars = [" ".join(["word"] * 50)] * 3
    limits = RenderLimits(max_prompt_tokens=140)
    msgs = render_messages(exemplars, "prompt", "resp a", "resp b", limits, count_tokens=count)
    assert [m["role"] for m in msgs] == ["system", "user"]
    assert count(msgs) <= 140
    assert "[1]" in msgs[1]["content"] and "[2]" not in msgs[1]["content"]


def test_render_messages_never_fails_when_budget_is_unreachable():
    count = lambda msgs: 10_000  # noqa: E731
    msgs = render_messages(["ex " * 200] * 4, "p " * 200, "a " * 200, "b " * 200,
                           RenderLimits(max_prompt_tokens=10), count_tokens=count)
    content = msgs[1]["content"]
    assert "[1]" in content and "[2]" not in content  # one exemplar is always kept
    assert content.count("...") == 4  # exemplar, prompt, both responses cut to the minimum
