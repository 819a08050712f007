"""persrm_core.evidence: character n-gram similarity, per-factor readings of a pair, the evidence
block shown to the judge, and its place in persrm_core.judge_format.render_messages."""

from __future__ import annotations

import random
import re

import pytest
from synthetic_corpus import make_corpus

from persrm_core import evidence
from persrm_core.evidence import (
    SIMILARITY_MARGIN,
    FactorReading,
    char_ngram_similarity,
    evidence_block,
    read_pair,
)
from persrm_core.judge_format import QUESTION, RenderLimits, render_messages, user_message
from persrm_core.style import FACTORS, measure, profile

LOWER = ["i dont know. its fine. we left early.", "honestly im tired. the bus was late again."]
CALM = "i cant say. its late. we went home."
LOUD = "THE REPORT IS FINISHED AND FILED!!! WE WILL PRESENT IT TOMORROW MORNING!!! 🎉🎉"


@pytest.fixture(scope="module")
def by_author() -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for e in make_corpus(n_authors=5, n_texts=5, seed=3):
        out.setdefault(e.author_id, []).append(e.text)
    return out


# --- char_ngram_similarity -----------------------------------------------------------------------

def test_similarity_is_higher_for_a_copied_exemplar_than_for_unrelated_text(by_author):
    names = sorted(by_author)
    for a in names:
        exemplars = by_author[a][:3]
        for b in names:
            if b == a:
                continue
            copied, unrelated = exemplars[0], by_author[b][4]
            s_copy, s_other = char_ngram_similarity(exemplars, copied, unrelated)
            assert s_copy > s_other + SIMILARITY_MARGIN, (a, b, s_copy, s_other)


def test_similarity_of_the_only_exemplar_is_one_and_of_disjoint_text_is_zero():
    s_same, s_disjoint = char_ngram_similarity(["the cat sat on the mat"], "the cat sat on the mat", "QQQQ ZZZZ")
    assert s_same == pytest.approx(1.0)
    assert s_disjoint == pytest.approx(0.0)


def test_similarity_swaps_with_the_responses(by_author):
    names = sorted(by_author)
    exemplars, ra, rb = by_author[names[0]][:3], by_author[names[0]][3], by_author[names[1]][4]
    sa, sb = char_ngram_similarity(exemplars, ra, rb)
    sb2, sa2 = char_ngram_similarity(exemplars, rb, ra)
    assert (sa2, sb2) == pytest.approx((sa, sb), abs=1e-12)
    assert sa != pytest.approx(sb)  # a real swap, not two equal values


def test_similarity_values_lie_in_unit_interval(by_author):
    texts = [t for ts in by_author.values() for t in ts]
    for i in range(0, len(texts) - 4, 3):
        for s in char_ngram_similarity(texts[i:i + 3], texts[i + 3], texts[i + 4]):
            assert 0.0 <= s <= 1.0 + 1e-9


# --- read_pair -----------------------------------------------------------------------------------

def test_read_pair_levels_and_nearer_follow_style_measurements():
    readings = read_pair(LOWER, CALM, LOUD)
    assert [r.name for r in readings] == [f.name for f in FACTORS] + ["similarity"]
    prof, ma, mb = profile(LOWER), measure(CALM), measure(LOUD)
    for f, r in zip(FACTORS, readings):
        assert r.label == f.label.capitalize()
        assert (r.exemplars, r.a, r.b) == (f.level(prof[f.name]), f.level(ma[f.name]), f.level(mb[f.name]))
        da = abs(f.rank(ma[f.name]) - f.rank(prof[f.name]))
        db = abs(f.rank(mb[f.name]) - f.rank(prof[f.name]))
        assert r.nearer == (None if da == db else "A" if da < db else "B")
        verdict = f"; nearer {r.nearer}" if r.nearer else "; a tie"
        assert r.line() == f"{r.label}: exemplars {r.exemplars}; A {r.a}; B {r.b}{verdict}"
    by_name = {r.name: r for r in readings}
    assert (by_name["capitals"].b, by_name["capitals"].nearer) == ("many", "A")
    assert (by_name["emoji"].b, by_name["emoji"].nearer) == ("many", "A")


def test_read_pair_similarity_reading_states_two_decimals_and_the_more_similar_response():
    sa, sb = char_ngram_similarity(LOWER, CALM, LOUD)
    sim = read_pair(LOWER, CALM, LOUD)[-1]
    assert (sim.name, sim.exemplars, sim.a, sim.b) == ("similarity", "", f"{sa:.2f}", f"{sb:.2f}")
    assert sim.nearer == "A" and sa > sb + SIMILARITY_MARGIN
    assert sim.line() == f"Character {evidence.NGRAM}-gram similarity to exemplars: A {sa:.2f}; B {sb:.2f}; nearer A"
    assert read_pair(LOWER, LOUD, CALM)[-1].nearer == "B"


@pytest.mark.parametrize(("sims", "nearer"), [
    ((0.300, 0.300), None),
    ((0.300, 0.300 + SIMILARITY_MARGIN / 2), None),
    ((0.300 + SIMILARITY_MARGIN / 2, 0.300), None),
    ((0.300, 0.300 + 2 * SIMILARITY_MARGIN), "B"),
    ((0.300 + 2 * SIMILARITY_MARGIN, 0.300), "A"),
])
def test_read_pair_similarity_within_margin_is_a_tie(monkeypatch, sims, nearer):
    monkeypatch.setattr(evidence, "char_ngram_similarity", lambda ex, a, b: sims)
    sim = read_pair(LOWER, CALM, LOUD)[-1]
    assert sim.nearer == nearer
    assert (sim.a, sim.b) == (f"{sims[0]:.2f}", f"{sims[1]:.2f}")


@pytest.mark.parametrize(("sims", "shown", "nearer"), [
    ((0.214, 0.206), ("0.21", "0.21"), None),  # apart by more than the margin, equal as shown
    ((0.2149, 0.2051), ("0.21", "0.21"), None),
    ((0.2049, 0.2051), ("0.20", "0.21"), None),  # within the margin although shown apart
    ((0.2049, 0.2101), ("0.20", "0.21"), "B"),
    ((0.2151, 0.2099), ("0.22", "0.21"), "A"),
])
def test_read_pair_similarity_that_reads_the_same_at_two_decimals_is_a_tie(monkeypatch, sims, shown, nearer):
    monkeypatch.setattr(evidence, "char_ngram_similarity", lambda ex, a, b: sims)
    sim = read_pair(LOWER, CALM, LOUD)[-1]
    assert (sim.a, sim.b, sim.nearer) == (*shown, nearer)
    verdict = f"; nearer {nearer}" if nearer else "; a tie"
    assert sim.line() == f"Character {evidence.NGRAM}-gram similarity to exemplars: A {shown[0]}; B {shown[1]}{verdict}"


SIM_LINE_RE = re.compile(rf"^Character {evidence.NGRAM}-gram similarity to exemplars: "
                         r"A (?P<a>\d\.\d\d); B (?P<b>\d\.\d\d); (?:nearer (?P<nearer>[AB])|a tie)$")


def test_no_similarity_line_shows_equal_numbers_with_a_nearer_verdict(by_author, monkeypatch):
    """On every ordered pair of corpus texts (and on values crafted to round alike), a similarity
    line that names a nearer response shows that response's number strictly larger."""
    texts = [t for ts in by_author.values() for t in ts]
    exemplar_sets = [by_author[a][:3] for a in sorted(by_author)]
    lines = [read_pair(ex, ra, rb)[-1].line()
             for ex in exemplar_sets for ra in texts[::2] for rb in texts[1::2] if ra != rb]
    rng = random.Random(0)
    for _ in range(300):  # values drawn so that many round to the same two decimals
        base = rng.uniform(0.02, 0.97)
        sims = (base, base + rng.uniform(-0.012, 0.012))
        monkeypatch.setattr(evidence, "char_ngram_similarity", lambda ex, a, b, sims=sims: sims)
        lines.append(read_pair(LOWER, CALM, LOUD)[-1].line())
    n_tie = n_nearer = n_equal = 0
    for line in lines:
        m = SIM_LINE_RE.match(line)
        assert m, line
        n_equal += m["a"] == m["b"]
        if m["nearer"] is None:
            n_tie += 1
            continue
        n_nearer += 1
        assert m["a"] != m["b"], line
        assert (float(m["a"]) > float(m["b"])) == (m["nearer"] == "A"), line
    assert n_tie and n_nearer and n_equal  # both verdicts and equal-looking values occur


def test_read_pair_of_identical_responses_favours_neither():
    assert all(r.nearer is None for r in read_pair(LOWER, CALM, CALM))


# --- evidence_block ------------------------------------------------------------------------------

def test_evidence_block_omits_factors_where_all_three_levels_agree():
    readings = read_pair(LOWER, CALM, LOUD)
    block = evidence_block(readings).splitlines()
    assert block[0] == "Measured style:"
    prof, ma, mb = profile(LOWER), measure(CALM), measure(LOUD)
    shown = [f for f in FACTORS if len({f.level(prof[f.name]), f.level(ma[f.name]), f.level(mb[f.name])}) > 1]
    hidden = [f for f in FACTORS if f not in shown]
    assert shown and hidden  # both cases occur for this pair
    by_name = {r.name: r for r in readings}
    assert block[1:] == [by_name[f.name].line() for f in shown] + [by_name["similarity"].line()]
    for f in hidden:
        assert not any(line.startswith(f.label.capitalize() + ":") for line in block)


def test_evidence_block_always_includes_the_similarity_line():
    text = "We walked to the station and waited for the train."
    readings = read_pair([text], text, text)  # one text three times: every factor shares one level
    assert evidence_block(readings) == "Measured style:\n" + readings[-1].line()
    assert readings[-1].line().endswith("A 1.00; B 1.00; a tie")
    crafted = [FactorReading("emoji", "Emoji", "none", "none", "none", None),
               FactorReading("similarity", "Character 4-gram similarity to exemplars", "", "0.30", "0.30", None)]
    assert evidence_block(crafted) == "Measured style:\nCharacter 4-gram similarity to exemplars: A 0.30; B 0.30; a tie"
    crafted[0] = FactorReading("emoji", "Emoji", "many", "none", "none", None)  # A and B agree, exemplars differ
    assert evidence_block(crafted).splitlines()[1] == "Emoji: exemplars many; A none; B none; a tie"
    crafted[0] = FactorReading("emoji", "Emoji", "many", "none", "many", "B")
    assert evidence_block(crafted).splitlines()[1] == "Emoji: exemplars many; A none; B many; nearer B"


# --- render_messages with and without evidence ---------------------------------------------------

def test_render_messages_shows_the_measured_style_block_when_evidence_is_on():
    exemplars = LOWER + ["we went to the shop. it was shut.", "a fourth text that is not measured."]
    limits = RenderLimits(max_exemplars=3, evidence=True)
    content = render_messages(exemplars, "the prompt", CALM, LOUD, limits)[1]["content"]
    block = evidence_block(read_pair(exemplars[:3], CALM, LOUD))  # measured on the shown exemplars
    assert "Measured style:" in content
    assert block in content
    lines = content.splitlines()
    start = lines.index("Measured style:")
    assert lines[start - 1].startswith("Response B: ")
    assert lines[start + len(block.splitlines())] == QUESTION


def test_render_messages_uses_given_readings_for_the_block():
    readings = [FactorReading("similarity", "Character 4-gram similarity to exemplars", "", "0.11", "0.99", "B")]
    content = render_messages(LOWER, "p", CALM, LOUD, RenderLimits(evidence=True), readings=readings)[1]["content"]
    assert "Measured style:\nCharacter 4-gram similarity to exemplars: A 0.11; B 0.99; nearer B\n" + QUESTION in content


def test_render_messages_has_no_measured_style_block_when_evidence_is_off():
    limits = RenderLimits(evidence=False)
    msgs = render_messages(LOWER, "the prompt", CALM, LOUD, limits)
    content = msgs[1]["content"]
    assert "Measured style:" not in content
    assert "similarity" not in content
    assert content == user_message(LOWER, "the prompt", CALM, LOUD, limits)
    assert content.splitlines()[-2].startswith("Response B: ")
