"""persrm_core.evidence.signals, evidence, combined and rationale: the fitted style signals, the readings and
evidence block the judge is shown, the `combined` weighing, and the trace writer whose every line
must be true of the pair it judges, in both A/B orders."""

from __future__ import annotations

import json
import random
from pathlib import Path

import numpy as np
import pytest
from synthetic_corpus import make_corpus

from persrm_core.errors import InputError
from persrm_core.evidence.combined import fit_combined, prob_a
from persrm_core.evidence.readings import (
    Evidence,
    Reading,
    evidence_block,
    evidence_from_dict,
    evidence_from_signals,
    evidence_to_dict,
    read_pairs,
)
from persrm_core.evidence.signals import SIGNALS, EvidenceModel, IdfTable, fit_idf
from persrm_core.judging.judge_format import RenderLimits, parse_verdict, render_messages
from persrm_core.judging.rationale import consistent_with, rationale_problems, winner_score, write_trace

REUTERS = Path(__file__).resolve().parents[2] / "shared" / "data" / "reuters_c50_dev"


def random_row(rng: random.Random) -> dict[str, tuple[float, float]]:
    """Signal values like the real ones: cosines in [0, 1], factors as minus a distance."""
    row = {s: (rng.random(), rng.random()) for s in SIGNALS}
    row["factors"] = (-3 * rng.random(), -3 * rng.random())
    if rng.random() < 0.2:  # printed ties
        s = rng.choice(SIGNALS)
        row[s] = (row[s][0], row[s][0] + 0.001)
    return row


MODEL = {"weights": {s: 1.0 for s in SIGNALS}, "scales": {s: 0.1 for s in SIGNALS}}


# --- signals ---------------------------------------------------------------------------------------

def test_idf_is_lower_for_common_terms_and_highest_for_unseen_ones():
    table = IdfTable.fit("words", ["the cat sat", "the dog ran", "the bird flew"])
    from persrm_core.evidence.signals import _bucket

    assert table.idf[_bucket("the")] < table.idf[_bucket("cat")] < table.idf[_bucket("zebra")] + 1e-6
    assert table.idf[_bucket("zebra")] == pytest.approx(np.log(4 / 1) + 1)


def test_evidence_model_round_trips_and_refuses_a_foreign_folder(tmp_path):
    texts = [e.text for e in make_corpus(n_authors=3, n_texts=3, seed=1)]
    model = EvidenceModel(fit_idf(texts), combined={**MODEL, "train_pairs": 3}, meta={"x": 1})
    model.save(tmp_path / "ev")
    back = EvidenceModel.load(tmp_path / "ev")
    assert back.combined["weights"] == MODEL["weights"] and back.meta == {"x": 1}
    assert np.array_equal(back.idf["char4"].idf, model.idf["char4"].idf)
    assert not any(p.suffix in (".pkl", ".pickle", ".bin") for p in (tmp_path / "ev").iterdir())
    with pytest.raises(InputError, match="no evidence.json"):
        EvidenceModel.load(tmp_path)
    (tmp_path / "ev" / "evidence.json").write_text(json.dumps({"version": 99}))
    with pytest.raises(InputError, match="re-materialize evidence_model"):
        EvidenceModel.load(tmp_path / "ev")


def test_signals_favour_the_authors_own_text_and_swap_with_the_responses():
    corpus = make_corpus(n_authors=4, n_texts=6, seed=5)
    by: dict[str, list[str]] = {}
    for e in corpus:
        by.setdefault(e.author_id, []).append(e.text)
    a, b = sorted(by)[:2]
    model = EvidenceModel(fit_idf([e.text for e in corpus]))
    ex, own, other = by[a][:3], by[a][3], by[b][0]
    ab, ba = model.signals([(ex, own, other), (ex, other, own)])
    for s in SIGNALS:
        assert ab[s] == pytest.approx(tuple(reversed(ba[s])))
    assert sum(ab[s][0] > ab[s][1] for s in SIGNALS) >= 3, ab
    # the `embedding` signal is the `embedding` baseline's score: the combined judge holds that baseline
    from persrm_core.judging.judge import baseline_judge
    from persrm_core.records import Pair

    pair = Pair(pair_id="p", author_id=a, prompt="", response_a=own, response_b=other, exemplars=ex, label="A")
    assert tuple(baseline_judge("embedding", [pair])[0]["scores"]) == pytest.approx(ab["embedding"], abs=1e-6)


# --- combined --------------------------------------------------------------------------------------

def test_combined_is_symmetric_non_negative_and_learns_a_separable_signal():
    rng = random.Random(0)
    rows, labels = [], []
    for _ in range(200):
        row = random_row(rng)
        label = "A" if row["style"][0] > row["style"][1] else "B"
        rows.append(row)
        labels.append(label)
    m = fit_combined(rows, labels)
    assert all(w >= 0 for w in m["weights"].values())
    assert m["weights"]["style"] == max(m["weights"].values())
    assert m["train_accuracy"] > 0.95
    for row in rows[:20]:
        swapped = {s: (v[1], v[0]) for s, v in row.items()}
        assert prob_a(m, row) == pytest.approx(1 - prob_a(m, swapped))


def test_a_signal_that_argues_against_the_label_gets_no_negative_weight():
    rng = random.Random(1)
    rows, labels = [], []
    for _ in range(200):
        row = random_row(rng)
        labels.append("A" if row["words"][0] < row["words"][1] else "B")  # anti-correlated
        rows.append(row)
    assert fit_combined(rows, labels)["weights"]["words"] == 0.0


def test_only_the_fit_signals_take_a_weight():
    """`evidence.fit_signals`: a signal left out weighs 0 even where it alone decides the training pairs
    (the bundled voices' casing and emoji, which real writers barely differ in)."""
    rng = random.Random(2)
    rows = [random_row(rng) for _ in range(200)]
    labels = ["A" if r["factors"][0] > r["factors"][1] else "B" for r in rows]
    assert fit_combined(rows, labels)["weights"]["factors"] > 1.0
    kept = fit_combined(rows, labels, signals=["style", "char4", "words", "function_words"])
    assert kept["weights"]["factors"] == 0.0 and set(kept["weights"]) == set(SIGNALS)
    with pytest.raises(ValueError, match="unknown signal"):
        fit_combined(rows, labels, signals=["factor"])


# --- readings and the evidence block ---------------------------------------------------------------

@pytest.mark.parametrize("a,b,nearer,margin", [(0.62, 0.48, "A", 0.14), (0.301, 0.304, None, 0.0),
                                               (0.2049, 0.2151, "B", 0.02), (-1.2, -2.85, "A", 1.65)])
def test_reading_is_a_tie_exactly_when_the_printed_values_are_equal(a, b, nearer, margin):
    r = Reading("style", a, b)
    assert r.nearer == nearer and r.margin == margin
    line = r.line()
    assert line.startswith(f"style encoder: A {a:.2f}, B {b:.2f}; ")
    assert line.endswith("a tie" if nearer is None else f"{nearer} by {margin:.2f}")


def test_evidence_block_lists_every_signal_then_the_weighed_line():
    ev = evidence_from_signals({s: (0.5, 0.4) for s in SIGNALS}, MODEL)
    lines = evidence_block(ev).splitlines()
    assert lines[0] == "Measured style (similarity to the exemplars):"
    assert len(lines) == len(SIGNALS) + 2
    assert lines[-1].startswith("weighed: A ") and lines[-1].endswith("; A")
    assert "weighed" not in evidence_block(evidence_from_signals({s: (0.5, 0.4) for s in SIGNALS}, None))


def test_evidence_round_trips_through_a_pair_dict_and_swaps():
    ev = evidence_from_signals(random_row(random.Random(2)), MODEL)
    assert evidence_from_dict(json.loads(json.dumps(evidence_to_dict(ev)))) == ev
    sw = ev.swapped()
    assert sw.weighed.a == pytest.approx(ev.weighed.b)
    assert [r.nearer for r in sw.readings] == [{"A": "B", "B": "A", None: None}[r.nearer] for r in ev.readings]


def test_render_messages_shows_the_given_evidence_and_none_when_off():
    ev = evidence_from_signals({s: (0.5, 0.4) for s in SIGNALS}, MODEL)
    on = render_messages(["ex one", "ex two"], "p", "resp a", "resp b", RenderLimits(evidence=True), evidence=ev)
    assert evidence_block(ev) in on[1]["content"]
    off = render_messages(["ex one"], "p", "resp a", "resp b", RenderLimits(evidence=False))
    assert "Measured style" not in off[1]["content"]


# --- the trace writer ------------------------------------------------------------------------------

def test_traces_parse_to_the_label_with_scores_that_grow_with_the_weighed_margin():
    assert [winner_score(p) for p in (0.5, 0.59, 0.6, 0.75, 0.85, 0.9, 1.0)] == [6, 6, 7, 8, 9, 10, 10]
    rng = random.Random(3)
    for _ in range(300):
        ev = evidence_from_signals(random_row(rng), MODEL)
        for label in ("A", "B"):
            v = parse_verdict(write_trace(ev, label))
            assert v.choice == label
            assert sum(v.scores) == 10
            if consistent_with(ev, label):
                p = ev.weighed.a if label == "A" else ev.weighed.b
                assert max(v.scores) == winner_score(p)


def test_every_rationale_line_is_true_of_its_pair_in_both_orders():
    rng = random.Random(4)
    for _ in range(300):
        ev = evidence_from_signals(random_row(rng), MODEL)
        for e in (ev, ev.swapped()):
            for label in ("A", "B"):
                rationale = parse_verdict(write_trace(e, label)).rationale
                assert rationale_problems(rationale, e, label) == [], (rationale, evidence_block(e))
                brief = parse_verdict(write_trace(e, label, "brief"))
                assert brief.choice == label and brief.rationale.startswith(f"Weighed: {label} ")
                assert "\n" not in brief.rationale and rationale_problems(brief.rationale, e, label) == []


def test_rationale_problems_catches_a_line_that_contradicts_the_evidence():
    ev = evidence_from_signals({**{s: (0.5, 0.4) for s in SIGNALS}, "words": (0.1, 0.3), "function_words": (0.5, 0.5)},
                               MODEL)
    good = parse_verdict(write_trace(ev, "A")).rationale
    assert good.splitlines()[0].startswith("Weighed: A ")
    assert ("\nFor: style encoder, sentence embedding, character 4-grams, personal factors.\nAgainst: word n-grams."
            in good)
    assert rationale_problems(good, ev) == [] and rationale_problems(good, ev, "A") == []
    left_out = good.replace("style encoder, ", "")
    assert rationale_problems(left_out, ev) == []  # leaving a reading out is not a false statement
    lies = [good.replace("Against: word n-grams.", "Against: none."),  # there is one against
            good.replace("For: style encoder,", "For: word n-grams, style encoder,"),  # wrong side
            good.replace("Against: word n-grams.", "Against: word n-grams, function words."),  # a tie
            good.replace("Against: word n-grams.", "Against: word counts."),  # no such reading
            good.replace("Weighed: A", "Weighed: B"),
            "Against: word n-grams.",  # against what?
            good + "\nPersonal factors: mostly nearer A."]
    for lie in lies:
        assert rationale_problems(lie, ev), lie
    assert rationale_problems(good, ev, "B")  # a verdict that contradicts its own Weighed line
    unweighed = evidence_from_signals({**{s: (0.5, 0.4) for s in SIGNALS}, "words": (0.1, 0.3)}, None)
    bare = parse_verdict(write_trace(unweighed, "A")).rationale
    assert bare.startswith("For: ") and rationale_problems(bare, unweighed, "A") == []
    assert rationale_problems(bare, unweighed, "B")


def test_rejection_keeps_a_trace_only_when_the_weighed_evidence_favours_the_label():
    ev = evidence_from_signals({s: (0.5, 0.4) for s in SIGNALS}, MODEL)
    assert consistent_with(ev, "A") and not consistent_with(ev, "B")
    tie = Evidence(tuple(Reading(s, 0.5, 0.5) for s in SIGNALS), Reading("weighed", 0.5, 0.5))
    assert not consistent_with(tie, "A") and not consistent_with(tie, "B")
    unweighed = evidence_from_signals({**{s: (0.5, 0.4) for s in SIGNALS}, "words": (0.1, 0.3)}, None)
    assert consistent_with(unweighed, "A") and not consistent_with(unweighed, "B")


@pytest.mark.skipif(not REUTERS.is_dir(), reason="the real-author development corpus is not beside the checkout")
def test_rationale_lines_are_true_on_real_author_pairs_in_both_orders():
    from persrm_core.data.real_authors import real_author_pairs

    pairs = real_author_pairs(REUTERS, max_pairs=6, num_exemplars=2, seed=7)
    texts = sorted({t for p in pairs for t in (*p.exemplars, p.response_a, p.response_b)})
    model = EvidenceModel(fit_idf(texts), combined=MODEL)
    evs = read_pairs(model, [(p.exemplars, p.response_a, p.response_b) for p in pairs]
                     + [(p.exemplars, p.response_b, p.response_a) for p in pairs])
    for ev, sw in zip(evs[: len(pairs)], evs[len(pairs):]):
        assert [r.nearer for r in sw.readings] == [r.nearer for r in ev.swapped().readings]
        for e in (ev, sw):
            for label in ("A", "B"):
                assert rationale_problems(parse_verdict(write_trace(e, label)).rationale, e, label) == []


# --- the style encoder's plumbing ------------------------------------------------------------------

def test_text_windows_read_up_to_three_windows_and_drop_a_short_tail():
    from persrm_core.evidence.signals import text_windows

    assert text_windows("one two") == ["one two"]
    long = " ".join(f"w{i}" for i in range(500))
    wins = text_windows(long)
    assert len(wins) == 3 and all(len(w.split()) == 90 for w in wins) and wins[0].startswith("w0 ")
    assert len(text_windows(" ".join(f"w{i}" for i in range(100)))) == 1  # a 10-word tail is left out
    assert len(text_windows(" ".join(f"w{i}" for i in range(130)))) == 2


def test_calibration_authors_are_seeded_and_leave_training_authors():
    from persrm_core.evidence.style_encoder import calibration_authors

    authors = [f"a{i}" for i in range(10)]
    picked = calibration_authors(authors, 0.3, seed=1)
    assert len(picked) == 3 and picked == calibration_authors(list(reversed(authors)), 0.3, seed=1)
    assert calibration_authors(authors, 0.0, seed=1) == [] and calibration_authors(authors[:3], 0.5, 1) == []
    assert len(calibration_authors(authors[:4], 0.9, seed=1)) == 2  # two always stay to train on


def test_only_the_top_layers_of_the_encoder_learn_when_asked():
    from sentence_transformers import SentenceTransformer

    from persrm_core.evidence.style_encoder import _trainable, bundled_minilm

    model = SentenceTransformer(str(bundled_minilm()), device="cpu")
    top = _trainable(model, 2)
    trainable = [p for p in model.parameters() if p.requires_grad]
    assert len(top) == len(trainable) and 0 < len(trainable) < len(list(model.parameters()))
    assert len(_trainable(model, 0)) == len(list(model.parameters()))


def test_embeddings_are_shared_between_processes_through_the_disk_cache(tmp_path, monkeypatch):
    from persrm_core.evidence import style_encoder as se

    monkeypatch.setenv(se.DISK_CACHE_ENV, str(tmp_path / "emb.sqlite"))
    texts = ["The council met on Monday.", "we went to the beach!!", "The council met on Monday."]
    first = se.encode(None, texts)
    se._CACHE.clear()  # as a fresh process would start

    def no_model(path, max_seq_length):
        raise AssertionError("encoded again instead of reading the cache")

    monkeypatch.setattr(se, "_load", no_model)
    again = se.encode(None, texts)
    assert np.array_equal(first, again) and again.dtype == np.float32
    with pytest.raises(AssertionError, match="encoded again"):
        se.encode(None, ["a text nobody encoded yet"])
    with pytest.raises(AssertionError, match="encoded again"):  # read to another length: another embedding
        se.encode(None, texts[:1], max_seq_length=256)
    monkeypatch.delenv(se.DISK_CACHE_ENV)
    se._CACHE.clear()
    with pytest.raises(AssertionError, match="encoded again"):  # no cache named: nothing is read from disk
        se.encode(None, texts[:1])


def test_the_weighed_line_names_the_side_the_weights_favour_even_near_a_tie():
    """Two decimals print 0.503 against 0.497 as 0.50 and 0.50, though `combined` chooses A: the
    weighed line names A (its unrounded side), and the trace follows it with two decimals, the
    only kind the judge is trained to copy."""
    from persrm_core.evidence.readings import Evidence, Reading
    from persrm_core.judging.rationale import rationale_problems, write_trace

    near = Reading("weighed", 0.50257, 0.49743)
    assert near.line() == "weighed: A 0.50, B 0.50; A" and near.nearer == "A"
    assert Reading("weighed", 0.5, 0.5).line() == "weighed: A 0.50, B 0.50; a tie"
    assert Reading("style", 0.50257, 0.49743).line() == "style encoder: A 0.50, B 0.50; a tie"  # readings: as printed
    ev = Evidence((Reading("style", 0.6, 0.4),), near)
    trace = write_trace(ev, "A", "brief")
    assert trace.startswith("Weighed: A 0.50.\n")
    assert rationale_problems("Weighed: A 0.50.", ev, "A") == []
    assert rationale_problems("Weighed: A 0.503.", ev, "A")  # the probability as printed
    swapped = ev.swapped()
    assert swapped.weighed.line() == "weighed: A 0.50, B 0.50; B" and write_trace(swapped, "B", "brief").startswith(
        "Weighed: B 0.50.\n")
