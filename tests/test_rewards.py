"""persrm_core.rewards.verdict_reward (TRL-shaped) and persrm_core.rationale (write_trace,
rationale_lines, factor_majority): traces always parse to the given label with the documented
scores, and the two facts they state (the similarity reading and the factor majority) are measured
truth, checked against persrm_core.style and persrm_core.evidence directly, whatever the label."""

from __future__ import annotations

from collections import Counter

import pytest
from synthetic_corpus import make_corpus

from persrm_core import evidence
from persrm_core.evidence import SIMILARITY_MARGIN, FactorReading, read_pair
from persrm_core.judge_format import format_completion, parse_verdict
from persrm_core.rationale import factor_majority, rationale_lines, write_trace
from persrm_core.rewards import CORRECT, INVALID, WRONG, verdict_reward
from persrm_core.style import FACTORS, measure, profile

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


# --- rationale.write_trace -----------------------------------------------------------------------
# The trace is exactly four lines (persrm_core/rationale.py docstring):
#   Character 4-gram similarity: nearer B.      ("nearer A." / "nearer B." / "a tie.")
#   Personal factors: mostly nearer B.         ("mostly nearer A/B" / "evenly split" / "no difference")
#   Scores: A=2 B=8
#   Verdict: [[B]]
# agree = (similarity nearer == label) + (factor majority == label); the labelled response scores
# 6 + agree, the other 4 - agree.

SIM_TEXT = {"A": "Character 4-gram similarity: nearer A.",
            "B": "Character 4-gram similarity: nearer B.",
            None: "Character 4-gram similarity: a tie."}
MAJORITY_TEXT = {"A": "Personal factors: mostly nearer A.",
                 "B": "Personal factors: mostly nearer B.",
                 "split": "Personal factors: evenly split.",
                 None: "Personal factors: no difference."}


def expected_similarity(exemplars: list[str], ra: str, rb: str) -> str | None:
    """Which response is nearer in char-4-gram similarity, computed here, not through read_pair:
    a tie within the margin or when the two values read the same at two decimals."""
    sa, sb = evidence.char_ngram_similarity(exemplars, ra, rb)
    if abs(sa - sb) < SIMILARITY_MARGIN or f"{sa:.2f}" == f"{sb:.2f}":
        return None
    return "A" if sa > sb else "B"


def expected_majority(exemplars: list[str], ra: str, rb: str) -> str | None:
    """The factor vote computed from style.FACTORS directly: each factor votes for the response
    whose level rank is nearer the exemplars' rank; None when no factor votes."""
    prof, ma, mb = profile(exemplars), measure(ra), measure(rb)
    votes = Counter()
    for f in FACTORS:
        ex = f.rank(prof[f.name])
        da, db = abs(f.rank(ma[f.name]) - ex), abs(f.rank(mb[f.name]) - ex)
        if da != db:
            votes["A" if da < db else "B"] += 1
    if not votes:
        return None
    if votes["A"] == votes["B"]:
        return "split"
    return "A" if votes["A"] > votes["B"] else "B"


def expected_scores(label: str, sim: str | None, majority: str | None) -> tuple[float, float]:
    agree = int(sim == label) + int(majority == label)
    own, other = 6.0 + agree, 4.0 - agree
    return (own, other) if label == "A" else (other, own)


def check_trace(trace: str, label: str, sim: str | None, majority: str | None) -> list[str]:
    """Assert the trace is exactly the two fact lines, the scores and the verdict for `label`;
    return its rationale lines."""
    assert trace.splitlines()[-2:] == [
        "Scores: A={:d} B={:d}".format(*map(int, expected_scores(label, sim, majority))),
        f"Verdict: [[{label}]]"], trace
    verdict = parse_verdict(trace)
    assert verdict.valid, (verdict.error, trace)
    assert verdict.choice == label, trace
    assert verdict.scores == expected_scores(label, sim, majority), trace
    lines = verdict.rationale.splitlines()
    assert lines == [SIM_TEXT[sim], MAJORITY_TEXT[majority]], trace
    assert len(trace.splitlines()) == 4
    return lines


def check_pair(exemplars: list[str], ra: str, rb: str) -> tuple[str | None, str | None]:
    """Traces for both labels state the same independently computed facts; only scores and
    verdict differ. Returns (similarity nearer, factor majority)."""
    sim, majority = expected_similarity(exemplars, ra, rb), expected_majority(exemplars, ra, rb)
    ta, tb = write_trace(exemplars, ra, rb, "A"), write_trace(exemplars, ra, rb, "B")
    la, lb = check_trace(ta, "A", sim, majority), check_trace(tb, "B", sim, majority)
    assert la == lb  # the facts do not depend on the label
    assert ta.splitlines()[2:] != tb.splitlines()[2:]
    assert rationale_lines(read_pair(exemplars, ra, rb)) == la
    return sim, majority


def trace_pairs() -> list[tuple[list[str], str, str]]:
    """(exemplars, own text, other author's text) for every ordered pair of the five authors."""
    corpus = make_corpus(n_authors=5, n_texts=5, seed=3)
    by_author: dict[str, list[str]] = {}
    for e in corpus:
        by_author.setdefault(e.author_id, []).append(e.text)
    out = []
    for a, texts in by_author.items():
        for b, others in by_author.items():
            if a != b:
                out.append((texts[:3], texts[3], others[4]))
    return out


def third_party_pairs() -> list[tuple[list[str], str, str]]:
    """(exemplars of one author, text of a second, text of a third): neither response is the
    author's, so the evidence is mixed, some readings favouring A and some B."""
    corpus = make_corpus(n_authors=5, n_texts=5, seed=3)
    by_author: dict[str, list[str]] = {}
    for e in corpus:
        by_author.setdefault(e.author_id, []).append(e.text)
    names = sorted(by_author)
    return [(by_author[a][:3], by_author[b][4], by_author[c][4])
            for a in names for b in names for c in names if len({a, b, c}) == 3]


PAIRS = trace_pairs()
MIXED = third_party_pairs()


def test_trace_pairs_cover_all_ordered_author_pairs():
    assert len(PAIRS) == 20
    assert len(MIXED) == 60


@pytest.mark.parametrize("own_first", [True, False])
def test_write_trace_states_the_measured_facts_for_both_labels_on_author_pairs(own_first):
    sims, majorities = Counter(), Counter()
    for exemplars, own, other in PAIRS:
        ra, rb = (own, other) if own_first else (other, own)
        sim, majority = check_pair(exemplars, ra, rb)
        sims[sim] += 1
        majorities[majority] += 1
    own_letter = "A" if own_first else "B"
    # the five styles differ clearly: the author's own text is mostly the nearer one
    assert sims[own_letter] > len(PAIRS) // 2, sims
    assert majorities[own_letter] > len(PAIRS) // 2, majorities


def test_write_trace_states_the_measured_facts_on_mixed_evidence():
    sims, majorities, scores = Counter(), Counter(), set()
    for exemplars, ra, rb in MIXED:
        sim, majority = check_pair(exemplars, ra, rb)
        sims[sim] += 1
        majorities[majority] += 1
        for label in "AB":
            scores.add(parse_verdict(write_trace(exemplars, ra, rb, label)).scores)
    # the pairs exercise every similarity reading, both majorities and the split
    assert set(sims) == {"A", "B", None}, sims
    assert {"A", "B", "split"} <= set(majorities), majorities
    # and every number of agreeing lines (0, 1, 2) for both labels
    assert scores == {(8.0, 2.0), (7.0, 3.0), (6.0, 4.0), (2.0, 8.0), (3.0, 7.0), (4.0, 6.0)}, scores


def test_write_trace_on_a_clear_casing_difference():
    exemplars = ["i dont know. its fine. we left early."] * 2
    ra = "i cant say. its late. we went home."
    rb = "THE REPORT IS FINISHED AND FILED!!! WE WILL PRESENT IT TOMORROW MORNING!!!"
    sa, sb = evidence.char_ngram_similarity(exemplars, ra, rb)
    assert sa > sb + SIMILARITY_MARGIN
    assert write_trace(exemplars, ra, rb, "A") == (
        "Character 4-gram similarity: nearer A.\nPersonal factors: mostly nearer A.\n"
        "Scores: A=8 B=2\nVerdict: [[A]]")
    assert write_trace(exemplars, ra, rb, "B") == (
        "Character 4-gram similarity: nearer A.\nPersonal factors: mostly nearer A.\n"
        "Scores: A=4 B=6\nVerdict: [[B]]")
    # swapping the responses swaps every letter
    assert write_trace(exemplars, rb, ra, "B") == (
        "Character 4-gram similarity: nearer B.\nPersonal factors: mostly nearer B.\n"
        "Scores: A=2 B=8\nVerdict: [[B]]")


def test_write_trace_without_any_difference_says_so_and_still_parses():
    text = "We walked to the station and waited for the train."
    assert all(r.nearer is None for r in read_pair([text, text], text, text))
    assert check_pair([text, text], text, text) == (None, None)
    for label, scores in (("A", (6.0, 4.0)), ("B", (4.0, 6.0))):
        v = parse_verdict(write_trace([text, text], text, text, label))
        assert v.choice == label and v.scores == scores
        assert v.rationale == "Character 4-gram similarity: a tie.\nPersonal factors: no difference."


def reading(name: str, nearer: str | None) -> FactorReading:
    if name == "similarity":
        return FactorReading("similarity", "Character 4-gram similarity to exemplars", "", "0.40", "0.20", nearer)
    return FactorReading(name, name.capitalize(), "few", "few", "none", nearer)


def test_write_trace_uses_given_readings_without_measuring_the_texts():
    readings = [reading("capitals", "A"), reading("emoji", "B"), reading("hedges", "A"),
                reading("questions", None), reading("similarity", "B")]
    # the texts are identical (their own readings would be all ties), so only the given ones count
    assert write_trace(["x"], "y", "y", "A", readings=readings) == (
        "Character 4-gram similarity: nearer B.\nPersonal factors: mostly nearer A.\n"
        "Scores: A=7 B=3\nVerdict: [[A]]")
    assert write_trace(["x"], "y", "y", "B", readings=readings) == (
        "Character 4-gram similarity: nearer B.\nPersonal factors: mostly nearer A.\n"
        "Scores: A=3 B=7\nVerdict: [[B]]")
    assert rationale_lines(readings) == ["Character 4-gram similarity: nearer B.",
                                         "Personal factors: mostly nearer A."]
    split = [reading("capitals", "A"), reading("emoji", "B"), reading("similarity", None)]
    assert rationale_lines(split) == ["Character 4-gram similarity: a tie.", "Personal factors: evenly split."]
    for label in "AB":
        assert parse_verdict(write_trace(["x"], "y", "y", label, readings=split)).scores == \
            expected_scores(label, None, "split") == ((6.0, 4.0) if label == "A" else (4.0, 6.0))


# --- rationale.factor_majority -------------------------------------------------------------------

def test_factor_majority_is_none_when_no_factor_separates():
    assert factor_majority([]) is None
    assert factor_majority([reading("capitals", None), reading("emoji", None)]) is None
    assert factor_majority([reading("capitals", None), reading("similarity", None)]) is None


def test_factor_majority_is_split_on_equal_votes():
    assert factor_majority([reading("capitals", "A"), reading("emoji", "B")]) == "split"
    assert factor_majority([reading("capitals", "A"), reading("emoji", "B"), reading("hedges", None),
                            reading("questions", "B"), reading("word_length", "A")]) == "split"


def test_factor_majority_picks_the_letter_with_more_votes():
    assert factor_majority([reading("capitals", "A")]) == "A"
    assert factor_majority([reading("capitals", "A"), reading("emoji", "B"), reading("hedges", "A")]) == "A"
    assert factor_majority([reading("capitals", "B")]) == "B"
    assert factor_majority([reading("capitals", "B"), reading("emoji", None), reading("hedges", "B"),
                            reading("questions", "A")]) == "B"


def test_factor_majority_ignores_the_similarity_reading():
    # similarity alone is not a factor vote
    assert factor_majority([reading("similarity", "A")]) is None
    # it cannot break a split
    assert factor_majority([reading("capitals", "A"), reading("emoji", "B"), reading("similarity", "A")]) == "split"
    # nor outvote the factors
    assert factor_majority([reading("capitals", "B"), reading("similarity", "A")]) == "B"
    assert factor_majority([reading("similarity", "B"), reading("capitals", "A"), reading("emoji", "A"),
                            reading("hedges", "B")]) == "A"


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
    from persrm_core.rewards import verdict_correct, verdict_invalid

    outs = [A_OK, B_OK, "", "Reason.\nScores: A=5 B=5\nVerdict: [[A]]"]
    assert verdict_correct(outs, label=["A"] * 4) == [1.0, 0.0, 0.0, 0.0]
    assert verdict_invalid(outs, label=["A"] * 4) == [0.0, 0.0, 1.0, 1.0]
