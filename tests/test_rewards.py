"""persrm_core.rewards.verdict_reward (TRL-shaped) and persrm_core.rationale.write_trace: traces
always parse to the given label, and every level, similarity and comparison they state is
measured truth (checked against persrm_core.style and persrm_core.evidence directly)."""

from __future__ import annotations

import re

import pytest
from synthetic_corpus import make_corpus

from persrm_core import evidence
from persrm_core.evidence import SIMILARITY_MARGIN, FactorReading, read_pair
from persrm_core.judge_format import format_completion, parse_verdict
from persrm_core.rationale import write_trace
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
# Line formats (persrm_core/rationale.py docstring, persrm_core/evidence.py FactorReading.line):
#   "Emoji: exemplars many; A none; B many; nearer B. B matches."
#   "Character 4-gram similarity to exemplars: A 0.21; B 0.34; nearer B. B matches."
# A cited line always carries a "nearer" verdict (ties favour neither response, so are never cited).

FACTOR_LINE_RE = re.compile(r"^(?P<label>[A-Z][a-z ]+): exemplars (?P<ex>[a-z]+); A (?P<a>[a-z]+); "
                            r"B (?P<b>[a-z]+); nearer (?P<nearer>[AB])\. (?P<closer>[AB]) matches\.$")
SIM_LINE_RE = re.compile(rf"^Character {evidence.NGRAM}-gram similarity to exemplars: "
                         r"A (?P<a>\d\.\d\d); B (?P<b>\d\.\d\d); nearer (?P<nearer>[AB])\. (?P<closer>[AB]) matches\.$")
FACTOR_BY_LABEL = {f.label.capitalize(): f for f in FACTORS}


def no_factor_line(label: str) -> str:
    return f"No measured factor favours {label}; it is chosen on wording."


def expected_scores(label: str, n_cited: int) -> tuple[float, float]:
    s = max(min(n_cited, 3), 1)
    return (6.0 + s, 4.0 - s) if label == "A" else (4.0 - s, 6.0 + s)


def favouring(exemplars: list[str], ra: str, rb: str, label: str) -> list[str]:
    """Names of the readings that favour `label`, computed from style/evidence measurements
    directly (not through read_pair), in the order the rationale must cite them."""
    prof, ma, mb = profile(exemplars), measure(ra), measure(rb)
    own, other = (ma, mb) if label == "A" else (mb, ma)
    factors = [f.name for f in FACTORS
               if abs(f.rank(own[f.name]) - f.rank(prof[f.name])) < abs(f.rank(other[f.name]) - f.rank(prof[f.name]))]
    sa, sb = evidence.char_ngram_similarity(exemplars, ra, rb)
    s_own, s_other = (sa, sb) if label == "A" else (sb, sa)
    # a tie within the margin, or when the two values read the same at two decimals
    tie = abs(sa - sb) < SIMILARITY_MARGIN or f"{sa:.2f}" == f"{sb:.2f}"
    sim = ["similarity"] if not tie and s_own > s_other else []
    return sim + factors


def check_trace(trace: str, exemplars: list[str], ra: str, rb: str, label: str, max_factors: int = 3) -> int:
    """Assert the trace parses to `label` with the documented scores, and every line states a
    measured truth that favours `label`; return how many readings it cites."""
    verdict = parse_verdict(trace)
    assert verdict.valid, (verdict.error, trace)
    assert verdict.choice == label, trace
    lines = verdict.rationale.splitlines()
    expected = favouring(exemplars, ra, rb, label)
    if not expected:  # the "no factor" line appears exactly when nothing favours the label
        assert lines == [no_factor_line(label)], trace
        assert verdict.scores == expected_scores(label, 0)
        return 0
    assert no_factor_line(label) not in lines and not any(ln.startswith("No measured factor") for ln in lines)

    prof, ma, mb = profile(exemplars), measure(ra), measure(rb)
    sa, sb = evidence.char_ngram_similarity(exemplars, ra, rb)
    readings = {r.line(): r for r in read_pair(exemplars, ra, rb)}
    cited = []
    for line in lines:
        assert line.endswith(f". {label} matches."), line
        # the line is exactly a reading's line(), and that reading favours the label
        reading = readings.get(line.removesuffix(f". {label} matches."))
        assert reading is not None, line
        assert reading.nearer == label, line
        if (m := SIM_LINE_RE.match(line)) is not None:
            assert (m["a"], m["b"]) == (f"{sa:.2f}", f"{sb:.2f}")
            assert abs(float(m["a"]) - sa) <= 0.005 and abs(float(m["b"]) - sb) <= 0.005
            assert m["nearer"] == m["closer"] == label
            own, other = (m["a"], m["b"]) if label == "A" else (m["b"], m["a"])
            assert float(own) > float(other)  # the stated numbers show the label as more similar
            cited.append("similarity")
            continue
        m = FACTOR_LINE_RE.match(line)
        assert m, line
        f = FACTOR_BY_LABEL[m["label"]]
        assert m["ex"] == f.level(prof[f.name])
        assert m["a"] == f.level(ma[f.name])
        assert m["b"] == f.level(mb[f.name])
        assert m["a"] != m["b"]
        assert m["nearer"] == m["closer"] == label
        cited.append(f.name)
    # exactly the readings that favour the label, similarity first, then FACTORS order, capped
    assert cited == expected[:max_factors]
    assert verdict.scores == expected_scores(label, len(cited))
    return len(cited)


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


@pytest.mark.parametrize("label", ["A", "B"])
def test_write_trace_states_only_true_measurements_and_parses_to_its_label(label):
    for exemplars, own, other in PAIRS:
        ra, rb = (own, other) if label == "A" else (other, own)
        trace = write_trace(exemplars, ra, rb, label)
        # the five styles differ clearly, so every pair cites the similarity and more
        assert check_trace(trace, exemplars, ra, rb, label) >= 2
        first = parse_verdict(trace).rationale.splitlines()[0]
        assert SIM_LINE_RE.match(first), first  # the author's own text is nearer in n-grams


@pytest.mark.parametrize("label", ["A", "B"])
def test_write_trace_for_the_wrong_label_still_states_only_true_claims(label):
    n_no_factor = 0
    for exemplars, own, other in PAIRS:
        # the label names the *other* author's text: any cited reading must really favour it
        ra, rb = (other, own) if label == "A" else (own, other)
        n_no_factor += check_trace(write_trace(exemplars, ra, rb, label), exemplars, ra, rb, label) == 0
    assert n_no_factor > 0  # the "No measured factor" branch is exercised


@pytest.mark.parametrize("label", ["A", "B"])
def test_write_trace_on_mixed_evidence_cites_only_readings_favouring_the_label(label):
    cited_counts = set()
    for exemplars, ra, rb in MIXED:
        cited_counts.add(check_trace(write_trace(exemplars, ra, rb, label), exemplars, ra, rb, label))
        check_trace(write_trace(exemplars, ra, rb, label, max_factors=1), exemplars, ra, rb, label, 1)
    assert len(cited_counts) >= 3  # the pairs cover several amounts of evidence, including none


def test_write_trace_names_levels_of_a_clear_casing_difference():
    exemplars = ["i dont know. its fine. we left early."] * 2
    ra = "i cant say. its late. we went home."
    rb = "THE REPORT IS FINISHED AND FILED!!! WE WILL PRESENT IT TOMORROW MORNING!!!"
    lines = parse_verdict(write_trace(exemplars, ra, rb, "A")).rationale.splitlines()
    sa, sb = evidence.char_ngram_similarity(exemplars, ra, rb)
    assert sa > sb + SIMILARITY_MARGIN
    assert lines == [
        f"Character 4-gram similarity to exemplars: A {sa:.2f}; B {sb:.2f}; nearer A. A matches.",
        "Capital letters: exemplars none; A none; B many; nearer A. A matches.",
        "Exclamation marks: exemplars none; A none; B many; nearer A. A matches.",
    ]


def test_write_trace_puts_favouring_similarity_first_then_factors_in_order_and_caps_them():
    readings = [
        FactorReading("capitals", "Capital letters", "none", "none", "many", "A"),
        FactorReading("emoji", "Emoji", "many", "none", "many", "B"),
        FactorReading("hedges", "Hedging words", "few", "few", "none", "A"),
        FactorReading("questions", "Question marks", "none", "none", "few", "A"),
        FactorReading("similarity", "Character 4-gram similarity to exemplars", "", "0.40", "0.20", "A"),
    ]
    # the given readings are used as they are (the texts are not measured)
    va = parse_verdict(write_trace(["x"], "y", "z", "A", readings=readings))
    assert va.rationale.splitlines() == [
        "Character 4-gram similarity to exemplars: A 0.40; B 0.20; nearer A. A matches.",
        "Capital letters: exemplars none; A none; B many; nearer A. A matches.",
        "Hedging words: exemplars few; A few; B none; nearer A. A matches.",
    ]
    assert va.scores == (9.0, 1.0)
    vb = parse_verdict(write_trace(["x"], "y", "z", "B", readings=readings))
    assert vb.rationale == "Emoji: exemplars many; A none; B many; nearer B. B matches."
    assert vb.scores == (3.0, 7.0)
    no_sim = [r for r in readings if r.name != "similarity"]
    v2 = parse_verdict(write_trace(["x"], "y", "z", "A", max_factors=2, readings=no_sim))
    assert v2.rationale.splitlines() == [
        "Capital letters: exemplars none; A none; B many; nearer A. A matches.",
        "Hedging words: exemplars few; A few; B none; nearer A. A matches.",
    ]
    assert v2.scores == (8.0, 2.0)


def test_write_trace_without_separating_factor_says_so_and_still_parses():
    text = "We walked to the station and waited for the train."
    assert all(r.nearer is None for r in read_pair([text, text], text, text))
    for label, scores in (("A", (7.0, 3.0)), ("B", (3.0, 7.0))):
        v = parse_verdict(write_trace([text, text], text, text, label))
        assert v.choice == label and v.scores == scores
        assert v.rationale == no_factor_line(label)


def test_write_trace_scores_grow_with_the_number_of_cited_readings():
    exemplars = ["i dont know. its fine. we left early."] * 2
    ra = "i cant say. its late. we went home."
    rb = "THE REPORT IS FINISHED AND FILED!!! WE WILL PRESENT IT TOMORROW MORNING!!! 🎉🎉"
    assert len(favouring(exemplars, ra, rb, "A")) > 3  # more evidence than is cited
    v3 = parse_verdict(write_trace(exemplars, ra, rb, "A"))
    v2 = parse_verdict(write_trace(exemplars, ra, rb, "A", max_factors=2))
    v1 = parse_verdict(write_trace(exemplars, ra, rb, "A", max_factors=1))
    assert [len(v.rationale.splitlines()) for v in (v3, v2, v1)] == [3, 2, 1]
    assert (v3.scores, v2.scores, v1.scores) == ((9.0, 1.0), (8.0, 2.0), (7.0, 3.0))
    vb = parse_verdict(write_trace(exemplars, rb, ra, "B"))
    assert vb.scores == tuple(reversed(v3.scores))
