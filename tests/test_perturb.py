"""persrm_core.synthesis.perturb: every rule moves a text the other way along its factor, as measured by
persrm_core.evidence.style.measure, and returns None when it cannot make a change."""

from __future__ import annotations

import random

import pytest

from persrm_core.evidence.style import HEDGE_RE, measure
from persrm_core.synthesis.perturb import RULES, perturb


def rng(seed: int = 0) -> random.Random:
    return random.Random(seed)


def apply(rule: str, text: str, seed: int = 0) -> str | None:
    return RULES[rule](text, rng(seed))


# (rule, input text, measured factor, +1 the rule must raise it / -1 lower it)
MOVES = [
    ("casing", "i went to the shop today. it was closed so i walked home. then i made tea.",
     "capitals", +1),
    ("casing", "The Shop On Main Street Was Closed. We Walked Home To London.", "capitals", -1),
    ("exclamations", "We won the match. The crowd sang. We went out to eat. It was late.",
     "exclamations", +1),
    ("exclamations", "We won the match! The crowd sang!! We went out. Great night!", "exclamations", -1),
    ("emoji", "We went to the beach. The water was warm. We ate ice cream.", "emoji", +1),
    ("emoji", "We went to the beach 🌊 The water was warm 😍 We ate ice cream 🍦🍦", "emoji", -1),
    ("contractions", "I do not know why it is not working. We are late and they are tired.",
     "contractions", +1),
    ("contractions", "I don't know why it isn't working. We're late and they're tired.",
     "contractions", -1),
    ("hedging", "The bridge is old. The river is high. The town is quiet.", "hedges", +1),
    ("hedging", "Perhaps the bridge might fall. It seems the river could arguably rise.", "hedges", -1),
    ("register", "However, we must obtain sufficient funds. Furthermore, numerous individuals "
                 "require assistance.", "word_length", -1),
    ("register", "But we need to get help so we can start. Then we will buy food.", "word_length", +1),
    ("sentence_length", "We ran. We ate. We slept. We woke up. We left.", "sentence_length", +1),
    ("sentence_length", "The long meeting went on for most of the afternoon, and nobody wanted to "
                        "speak first about the budget. The chair finally called on the treasurer, "
                        "but she had left the room to find the printed figures.", "sentence_length", -1),
]


@pytest.mark.parametrize("rule,text,factor,direction", MOVES,
                         ids=[f"{m[0]}-{'up' if m[3] > 0 else 'down'}" for m in MOVES])
def test_rule_moves_text_along_its_factor_in_the_opposite_direction(rule, text, factor, direction):
    out = apply(rule, text)
    assert out is not None and out != text
    before, after = measure(text)[factor], measure(out)[factor]
    assert (after - before) * direction > 0, (before, after, out)


def test_casing_rule_capitalises_sentence_starts_and_pronoun_i():
    out = apply("casing", "i went out. it rained, so i came back.")
    assert out == "I went out. It rained, so I came back."


def test_casing_rule_lowercases_sentence_case_text():
    out = apply("casing", "The Cat sat on the Mat. It was Happy.")
    assert out == "the cat sat on the mat. it was happy."
    assert measure(out)["capitals"] == 0.0


def test_exclamations_rule_removes_every_exclamation_mark():
    out = apply("exclamations", "Wow!!! That was great! Really.")
    assert "!" not in out
    assert out == "Wow. That was great. Really."


def test_exclamations_rule_turns_at_least_two_full_stops_into_exclamations():
    text = "One. Two. Three. Four. Five. Six."
    out = apply("exclamations", text)
    assert out.count("!") >= 2
    assert out.replace("!", ".") == text


def test_emoji_rule_removes_all_emoji_and_leaves_words_intact():
    out = apply("emoji", "Great day ✨ at the park 🎉🎉 with friends 😊")
    assert out == "Great day at the park with friends"
    assert measure(out)["emoji"] == 0.0


def test_emoji_rule_appends_an_emoji_to_a_single_sentence():
    out = apply("emoji", "Just one sentence here")
    assert out.startswith("Just one sentence here ")
    assert measure(out)["emoji"] > 0


def test_contractions_rule_expands_every_known_contraction():
    out = apply("contractions", "I can't go and I won't stay, it's late.")
    assert out == "I cannot go and I will not stay, it is late."


def test_contractions_rule_expands_apostrophe_less_forms_of_lowercase_writers():
    out = apply("contractions", "i dont know and im tired")
    assert out == "i do not know and i am tired"  # no capitals added to a lowercase writer


def test_contractions_rule_contracts_plain_forms():
    out = apply("contractions", "I do not know and it is not fine.")
    assert out == "I don't know and it's not fine."


def test_register_rule_swaps_formal_words_for_plain_ones():
    out = apply("register", "However, we must obtain sufficient funds.")
    assert out == "But, we must get enough funds."


def test_hedging_rule_adds_hedge_openers_to_plain_sentences():
    out = apply("hedging", "The bridge is old. The river is high. The town is quiet.")
    assert len(HEDGE_RE.findall(out)) == 3  # one opener per sentence, none before
    assert out.endswith("the town is quiet.")


def test_sentence_length_rule_splits_long_sentences_at_conjunctions():
    out = apply("sentence_length", "We walked along the wide river for many hours, and we talked "
                                   "about everything. Then it rained hard on the whole town; we ran "
                                   "home as fast as we could.")
    assert out == ("We walked along the wide river for many hours. We talked about everything. "
                   "Then it rained hard on the whole town. We ran home as fast as we could.")


def test_sentence_length_rule_merges_short_sentences_in_pairs():
    out = apply("sentence_length", "We ran. We ate. We slept.")
    assert out == "We ran, and we ate. We slept."


NO_CHANGE = [
    ("casing", "123 456 789."),
    ("exclamations", "Only one sentence here."),
    ("contractions", "The sky is blue and the grass is green."),
    ("contractions", "I do not like rain."),  # a single plain form is not a clear change
    ("sentence_length", "Just one sentence with no end"),
    ("sentence_length", "This very long sentence goes on and on without any comma or conjunction "
                        "to split. Another very long sentence also goes on and on without a "
                        "single place to split it."),
    ("hedging", "One plain sentence only."),
    ("register", "The cat sat on the mat."),
    ("register", "However the cat sat."),  # one formal word is not a clear change
]


@pytest.mark.parametrize("rule,text", NO_CHANGE, ids=[f"{r}-{i}" for i, (r, _) in enumerate(NO_CHANGE)])
def test_rule_returns_none_when_it_cannot_change_the_text(rule, text):
    assert apply(rule, text) is None


@pytest.mark.parametrize("rule", sorted(RULES))
def test_rule_is_deterministic_for_a_seed(rule):
    text = "We went to the beach. The water was warm. I do not know why. It is late. We are tired."
    assert apply(rule, text, seed=3) == apply(rule, text, seed=3)


def test_sentence_length_merge_keeps_pronoun_i_capitalised_in_contractions():
    out = apply("sentence_length", "We went home. I'm tired now.")
    assert out == "We went home, and I'm tired now."


def test_hedging_opener_keeps_pronoun_i_capitalised_in_contractions():
    out = apply("hedging", "We went home. I'm tired now.")
    assert "i'm" not in out and "I'm" in out


# --- perturb -------------------------------------------------------------------------------------

TEXT = ("I do not know why the bus is late. It is cold and we are tired. The driver is not here. "
        "We will wait a little longer.")


def test_perturb_returns_changed_text_and_sorted_applied_factor_names():
    out, applied = perturb(TEXT, rng(1), n_factors=2)
    assert out != TEXT
    assert len(applied) == 2
    assert applied == sorted(applied)
    assert set(applied) <= set(RULES)


def test_perturb_applies_only_the_requested_factor():
    out, applied = perturb(TEXT, rng(0), n_factors=2, factors=["casing"])
    assert applied == ["casing"]
    assert out == TEXT.lower()


def test_perturb_respects_n_factors():
    for n in (1, 3):
        _, applied = perturb(TEXT, rng(5), n_factors=n)
        assert len(applied) == n


def test_perturb_applied_factors_each_change_the_measured_style():
    out, applied = perturb(TEXT, rng(2), n_factors=1, factors=["contractions"])
    assert applied == ["contractions"]
    assert measure(out)["contractions"] > measure(TEXT)["contractions"]


def test_perturb_returns_none_when_no_rule_applies():
    assert perturb("The sky is blue.", rng(0), factors=["contractions", "register"]) is None


def test_perturb_is_deterministic_for_a_seed():
    assert perturb(TEXT, rng(9)) == perturb(TEXT, rng(9))


LOWER = ("we went to the old market early. the bread was still warm. my brother bought too "
         "much cheese again.")


def test_perturb_casing_moves_a_lowercase_text_towards_capitals_whatever_the_rule_order():
    for seed in range(8):
        out, applied = perturb(LOWER, rng(seed), n_factors=2, factors=["casing", "hedging"])
        assert applied == ["casing", "hedging"]
        assert measure(out)["capitals"] > measure(LOWER)["capitals"], (seed, out)


def test_contractions_rule_on_apostrophe_less_text_changes_measured_contractions():
    text = "i dont know why. im tired and i cant stay."
    out = apply("contractions", text)
    assert out == "i do not know why. i am tired and i cannot stay."
    assert measure(out)["contractions"] < measure(text)["contractions"]
