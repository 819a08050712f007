"""persrm_core.synthesis: text splitting, split planning and pair building on a small synthetic
five-author corpus (tests/synthetic_corpus.py)."""

from __future__ import annotations

from collections import Counter, defaultdict

import pytest
from synthetic_corpus import make_corpus

from persrm_core.perturb import RULES
from persrm_core.records import Exemplar
from persrm_core.synthesis import (
    EVAL_SEEN,
    EVAL_UNSEEN,
    TRAIN,
    SynthesisConfig,
    build_pairs,
    equalize_length,
    plan_splits,
    split_text,
    text_id,
)

CFG = SynthesisConfig(seed=7)


@pytest.fixture(scope="module")
def corpus() -> list[Exemplar]:
    return make_corpus(n_authors=5, n_texts=8, seed=0)


@pytest.fixture(scope="module")
def texts(corpus) -> dict[str, Exemplar]:
    return {text_id(e): e for e in corpus}


@pytest.fixture(scope="module")
def pairs(corpus) -> list[dict]:
    return build_pairs(corpus, CFG, progress=False)


def chosen(row: dict) -> str:
    return row["response_a"] if row["label"] == "A" else row["response_b"]


def rejected(row: dict) -> str:
    return row["response_b"] if row["label"] == "A" else row["response_a"]


# --- split_text ----------------------------------------------------------------------------------

def numbered(n: int) -> str:
    return " ".join(f"w{i}" for i in range(n))


def test_split_text_prompt_is_the_opening_and_rest_is_the_continuation(corpus):
    for ex in corpus:
        prompt, cont = split_text(ex.text, CFG)
        words = ex.text.split()
        assert prompt.split() == words[: len(prompt.split())]
        assert prompt.split() + cont.split() == words  # ~60-word texts are never capped
        assert CFG.min_prompt_words <= len(prompt.split()) <= CFG.max_prompt_words
        assert len(cont.split()) >= CFG.min_response_words


def test_split_text_cuts_at_first_sentence_end_reaching_min_prompt_words():
    text = "This opening sentence has exactly nine words in it. " + numbered(40)
    prompt, cont = split_text(text, CFG)
    assert prompt == "This opening sentence has exactly nine words in it."
    assert cont == numbered(40)


def test_split_text_falls_back_to_word_fraction_without_sentence_ends():
    text = numbered(100)
    prompt, cont = split_text(text, CFG)
    assert prompt == numbered(30)  # prompt_fraction 0.3 of 100 words
    assert prompt.split() + cont.split() == text.split()


def test_split_text_caps_response_to_max_response_words():
    cfg = SynthesisConfig(max_response_words=30)
    text = numbered(200)
    prompt, cont = split_text(text, cfg)
    rest = text.split()[len(prompt.split()):]
    assert len(cont.split()) == 30
    assert cont.split() == rest[:30]


def test_split_text_capped_response_ends_at_a_sentence_end_when_one_is_late_enough():
    cfg = SynthesisConfig(max_response_words=30)
    sentences = " ".join(f"Sentence number {i} has six words." for i in range(40))
    prompt, cont = split_text(sentences, cfg)
    assert len(cont.split()) <= 30
    assert cont.endswith(".")
    rest = sentences.split()[len(prompt.split()):]
    assert cont.split() == rest[: len(cont.split())]


def test_split_text_returns_none_for_text_shorter_than_prompt_plus_response_minimum():
    assert split_text(numbered(CFG.min_prompt_words + CFG.min_response_words - 1), CFG) is None
    assert split_text(numbered(CFG.min_prompt_words + CFG.min_response_words), CFG) is not None


@pytest.mark.parametrize("n_words", [33, 34])
def test_split_text_response_never_below_min_response_words(n_words):
    prompt, cont = split_text(numbered(n_words), CFG)
    assert len(cont.split()) >= CFG.min_response_words


# --- plan_splits ---------------------------------------------------------------------------------

def test_plan_splits_covers_every_text_with_a_known_split(corpus):
    plan = plan_splits(corpus, CFG)
    assert set(plan) == {text_id(e) for e in corpus}
    assert set(plan.values()) == {TRAIN, EVAL_SEEN, EVAL_UNSEEN}


def test_plan_splits_unseen_authors_are_entirely_eval_unseen(corpus):
    plan = plan_splits(corpus, CFG)
    splits_by_author: dict[str, set[str]] = defaultdict(set)
    for e in corpus:
        splits_by_author[e.author_id].add(plan[text_id(e)])
    unseen = [a for a, s in splits_by_author.items() if EVAL_UNSEEN in s]
    assert len(unseen) == CFG.unseen_authors
    for a in unseen:
        assert splits_by_author[a] == {EVAL_UNSEEN}


def test_plan_splits_each_seen_author_has_eval_seen_and_train_texts(corpus):
    plan = plan_splits(corpus, CFG)
    counts: dict[str, Counter] = defaultdict(Counter)
    for e in corpus:
        counts[e.author_id][plan[text_id(e)]] += 1
    seen = [a for a, c in counts.items() if EVAL_UNSEEN not in c]
    assert len(seen) == 3
    for a in seen:
        assert counts[a][EVAL_SEEN] == round(8 * CFG.eval_fraction) == 2
        assert counts[a][TRAIN] == 6


def test_plan_splits_is_deterministic_for_a_seed_and_varies_with_it(corpus):
    assert plan_splits(corpus, CFG) == plan_splits(list(corpus), SynthesisConfig(seed=7))
    plans = {tuple(sorted(plan_splits(corpus, SynthesisConfig(seed=s)).items())) for s in range(6)}
    assert len(plans) > 1


def test_plan_splits_keeps_two_authors_seen_when_there_are_few_authors():
    plan = plan_splits(make_corpus(n_authors=3, n_texts=4), CFG)
    assert Counter(plan.values())[EVAL_UNSEEN] == 4  # one author of three held out, not two


# --- build_pairs ---------------------------------------------------------------------------------

def test_build_pairs_makes_pairs_in_every_split_with_both_negative_types(pairs):
    assert {r["split"] for r in pairs} == {TRAIN, EVAL_SEEN, EVAL_UNSEEN}
    assert {r["negative_type"] for r in pairs} == {"cross_author", "rule_perturbation"}
    assert len({r["pair_id"] for r in pairs}) == len(pairs)


def test_build_pairs_chosen_response_is_the_authors_own_continuation(pairs, texts):
    for r in pairs:
        src = texts[r["chosen_source"]]
        assert src.author_id == r["author_id"]
        prompt, cont = split_text(src.text, CFG)
        assert r["prompt"] == prompt
        if r["negative_type"] == "cross_author":
            assert chosen(r) == cont
        else:  # rule pairs are cut to equal length: the chosen is the continuation's opening words
            n = len(chosen(r).split())
            assert chosen(r).split() == cont.split()[:n]
            assert n >= CFG.min_response_words * 0.75
        assert rejected(r) != chosen(r)


def test_build_pairs_rule_perturbation_responses_have_equal_word_counts(pairs):
    rule = [r for r in pairs if r["negative_type"] == "rule_perturbation"]
    for r in rule:
        assert len(r["response_a"].split()) == len(r["response_b"].split()), r["pair_id"]


def test_equalize_length_cuts_the_longer_text_to_the_shorter_word_count():
    assert equalize_length("a b c d", "x y") == ("a b", "x y")
    assert equalize_length("a  b", "x y z") == ("a  b", "x y")  # the shorter text is untouched
    assert equalize_length("a b", "x y") == ("a b", "x y")


def test_build_pairs_label_a_share_is_half_within_one_pair_per_split(pairs):
    by_split: dict[str, list[str]] = defaultdict(list)
    for r in pairs:
        assert r["label"] in ("A", "B")
        by_split[r["split"]].append(r["label"])
    for labels in by_split.values():
        assert abs(labels.count("A") - len(labels) / 2) <= 1


def test_build_pairs_cross_author_negative_is_another_authors_length_matched_text(pairs, texts):
    cross = [r for r in pairs if r["negative_type"] == "cross_author"]
    assert len(cross) >= 10
    for r in cross:
        other = texts[r["negative_source"]]
        assert other.author_id != r["author_id"]
        assert rejected(r) in other.text
        n_chosen, n_neg = len(chosen(r).split()), len(rejected(r).split())
        assert n_chosen * (1 - CFG.length_tolerance) <= n_neg <= n_chosen * (1 + CFG.length_tolerance)
        assert r["perturbed_factors"] == []


def test_build_pairs_rule_perturbation_names_the_factors_it_changed(pairs):
    rule = [r for r in pairs if r["negative_type"] == "rule_perturbation"]
    assert rule
    for r in rule:
        assert r["negative_source"] is None
        assert 1 <= len(r["perturbed_factors"]) <= CFG.perturb_factors
        assert set(r["perturbed_factors"]) <= set(RULES)
        assert r["perturbed_factors"] == sorted(r["perturbed_factors"])


def test_build_pairs_exemplars_are_other_texts_of_the_same_author(pairs, texts):
    for r in pairs:
        assert r["chosen_source"] not in r["exemplar_sources"]
        assert texts[r["chosen_source"]].text not in r["exemplars"]
        assert 1 <= len(r["exemplars"]) <= CFG.num_exemplars
        assert r["exemplars"] == [texts[t].text for t in r["exemplar_sources"]]
        assert {texts[t].author_id for t in r["exemplar_sources"]} == {r["author_id"]}


def test_build_pairs_train_pairs_use_no_text_that_an_eval_pair_answers_with(pairs):
    eval_texts = {r["chosen_source"] for r in pairs if r["split"] != TRAIN}
    eval_texts |= {r["negative_source"] for r in pairs if r["split"] != TRAIN and r["negative_source"]}
    for r in pairs:
        if r["split"] == TRAIN:
            used = {r["chosen_source"], *r["exemplar_sources"]} | ({r["negative_source"]} - {None})
            assert not used & eval_texts, r["pair_id"]


def test_build_pairs_every_text_a_pair_uses_belongs_to_a_split_it_may_see(corpus, pairs):
    plan = plan_splits(corpus, CFG)
    for r in pairs:
        assert plan[r["chosen_source"]] == r["split"]
        if r["negative_source"]:
            assert plan[r["negative_source"]] == r["split"]
        if r["split"] in (TRAIN, EVAL_SEEN):
            assert {plan[t] for t in r["exemplar_sources"]} == {TRAIN}


def test_build_pairs_unseen_authors_have_no_train_pairs(corpus, pairs):
    plan = plan_splits(corpus, CFG)
    unseen = {e.author_id for e in corpus if plan[text_id(e)] == EVAL_UNSEEN}
    assert unseen
    assert not unseen & {r["author_id"] for r in pairs if r["split"] == TRAIN}


def test_build_pairs_same_seed_gives_identical_output_and_other_seed_differs(corpus, pairs):
    assert build_pairs(list(corpus), SynthesisConfig(seed=7), progress=False) == pairs
    assert build_pairs(corpus, SynthesisConfig(seed=8), progress=False) != pairs


def test_build_pairs_rejects_unknown_negative_strategy(corpus):
    with pytest.raises(ValueError, match="unknown negative strategy"):
        build_pairs(corpus, SynthesisConfig(negatives={"paraphrase": 1}), progress=False)
