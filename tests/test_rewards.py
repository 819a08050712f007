"""persrm_core.rewards.verdict_reward (TRL-shaped) and persrm_core.rationale.write_trace: traces
always parse to the given label, and every number and comparison they state is measured truth."""

from __future__ import annotations

import re

import pytest
from synthetic_corpus import make_corpus

from persrm_core.judge_format import format_completion, parse_verdict
from persrm_core.rationale import factor_evidence, write_trace
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
# Line format (persrm_core/rationale.py docstring):  "Emoji: exemplars many; A none; B many. B matches."

LINE_RE = re.compile(r"^(?P<label>[A-Z][a-z ]+): exemplars (?P<ex>[a-z]+); A (?P<a>[a-z]+); "
                     r"B (?P<b>[a-z]+)\. (?P<closer>[AB]) matches\.$")
FACTOR_BY_LABEL = {f.label.capitalize(): f for f in FACTORS}
NO_FACTOR_PREFIX = "No measured factor separates them"


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


PAIRS = trace_pairs()


def check_trace(trace: str, exemplars: list[str], ra: str, rb: str, label: str) -> int:
    """Assert every stated level and comparison is true; return how many factor lines it cites."""
    verdict = parse_verdict(trace)
    assert verdict.choice == label, trace
    prof, ma, mb = profile(exemplars), measure(ra), measure(rb)
    lines = verdict.rationale.splitlines()
    favouring = [f for f in FACTORS
                 if abs(f.rank((ma if label == "A" else mb)[f.name]) - f.rank(prof[f.name]))
                 < abs(f.rank((mb if label == "A" else ma)[f.name]) - f.rank(prof[f.name]))]
    if lines[0].startswith(NO_FACTOR_PREFIX):
        assert lines == [f"No measured factor separates them; {label} is chosen on wording."]
        assert favouring == []
        return 0
    cited = []
    for line in lines:
        m = LINE_RE.match(line)
        assert m, line
        f = FACTOR_BY_LABEL[m["label"]]
        assert m["ex"] == f.level(prof[f.name])
        assert m["a"] == f.level(ma[f.name])
        assert m["b"] == f.level(mb[f.name])
        assert m["a"] != m["b"]
        assert m["closer"] == label
        cited.append(f)
    # exactly the factors that favour the label (in FACTORS order, at most three) are cited
    assert cited == favouring[:3]
    return len(cited)


def test_trace_pairs_cover_all_ordered_author_pairs():
    assert len(PAIRS) == 20


@pytest.mark.parametrize("label", ["A", "B"])
def test_write_trace_states_only_true_measurements_and_parses_to_its_label(label):
    for exemplars, own, other in PAIRS:
        ra, rb = (own, other) if label == "A" else (other, own)
        # the five styles differ clearly, so every pair cites at least one measured factor
        assert check_trace(write_trace(exemplars, ra, rb, label), exemplars, ra, rb, label) >= 1


@pytest.mark.parametrize("label", ["A", "B"])
def test_write_trace_for_the_wrong_label_still_states_only_true_claims(label):
    for exemplars, own, other in PAIRS:
        # the label names the *other* author's text: any cited factor must really favour it
        ra, rb = (other, own) if label == "A" else (own, other)
        check_trace(write_trace(exemplars, ra, rb, label), exemplars, ra, rb, label)


def test_write_trace_names_levels_of_a_clear_casing_difference():
    exemplars = ["i dont know. its fine. we left early."] * 2
    ra = "i cant say. its late. we went home."
    rb = "THE REPORT IS FINISHED AND FILED!!! WE WILL PRESENT IT TOMORROW MORNING!!!"
    lines = parse_verdict(write_trace(exemplars, ra, rb, "A")).rationale.splitlines()
    assert lines[0] == "Capital letters: exemplars none; A none; B many. A matches."
    assert lines[1] == "Exclamation marks: exemplars none; A none; B many. A matches."


def test_factor_evidence_nearer_follows_level_ranks():
    exemplars = ["i dont know. its fine. we left early."] * 2
    ev = {e["factor"].name: e for e in factor_evidence(exemplars, "i cant say. its late.", "WE WON!!! 🎉🎉")}
    assert ev["capitals"]["nearer"] == "A"
    assert ev["emoji"]["B"] == "many" and ev["emoji"]["nearer"] == "A"


def test_write_trace_without_separating_factor_says_so_and_still_parses():
    text = "We walked to the station and waited for the train."
    v = parse_verdict(write_trace([text, text], text, text, "B"))
    assert v.choice == "B" and v.scores[1] > v.scores[0]
    assert v.rationale == "No measured factor separates them; B is chosen on wording."


def test_write_trace_scores_grow_with_the_number_of_cited_factors():
    exemplars = ["i dont know. its fine. we left early."] * 2
    ra = "i cant say. its late. we went home."
    rb = "THE REPORT IS FINISHED AND FILED!!! WE WILL PRESENT IT TOMORROW MORNING!!! 🎉🎉"
    v3 = parse_verdict(write_trace(exemplars, ra, rb, "A"))
    v1 = parse_verdict(write_trace(exemplars, ra, rb, "A", max_factors=1))
    assert len(v3.rationale.splitlines()) == 3 and len(v1.rationale.splitlines()) == 1
    assert v3.scores[0] - v3.scores[1] > v1.scores[0] - v1.scores[1] > 0
    vb = parse_verdict(write_trace(exemplars, rb, ra, "B"))
    assert vb.scores == tuple(reversed(v3.scores))
