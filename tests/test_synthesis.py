"""persrm_core.synthesis.pairs: text splitting, split planning and pair building on a small synthetic
five-author corpus (tests/synthetic_corpus.py)."""

from __future__ import annotations

from collections import Counter, defaultdict

import pytest
from synthetic_corpus import make_corpus

from persrm_core.evidence.style import measure
from persrm_core.records import Exemplar
from persrm_core.synthesis.pairs import LLMSource, SynthesisConfig, build_pairs, synthesize
from persrm_core.synthesis.perturb import MEASURED_BY, RULES
from persrm_core.synthesis.splits import (
    EVAL_SEEN,
    EVAL_UNSEEN,
    TRAIN,
    equalize_length,
    plan_splits,
    split_text,
    still_perturbed,
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
        else:  # rule pairs are cut to equal length: the chosen is an opening of the continuation,
            # ending at a word boundary
            assert cont.startswith(chosen(r))
            assert chosen(r) == cont or cont[len(chosen(r))].isspace()
            assert len(chosen(r).split()) >= CFG.min_response_words * 0.75
        assert rejected(r) != chosen(r)


def test_build_pairs_rule_perturbation_responses_have_nearly_equal_character_lengths(pairs, texts):
    rule = [r for r in pairs if r["negative_type"] == "rule_perturbation"]
    assert len(rule) >= 10
    n_chosen_cut = n_rejected_cut = 0
    for r in rule:
        c, j = chosen(r), rejected(r)
        cont = split_text(texts[r["chosen_source"]].text, CFG)[1]
        # only the longer text is cut, at a word boundary: the gap is under one word's length
        longest_word = max(len(w) for w in (c + " " + j).split())
        assert abs(len(c) - len(j)) <= longest_word, r["pair_id"]
        assert abs(len(c) - len(j)) <= 0.05 * max(len(c), len(j)), r["pair_id"]
        if c != cont:  # the author's text was the longer one and was cut to the negative's length
            n_chosen_cut += 1
            assert len(c) < len(cont) and len(j) < len(cont)
        else:
            n_rejected_cut += 1
            assert len(j) <= len(c) + longest_word
    assert n_chosen_cut and n_rejected_cut  # both directions occur on this corpus


# --- equalize_length -----------------------------------------------------------------------------

def check_equalized(a: str, b: str) -> None:
    """Assert the documented contract of equalize_length on one pair."""
    out = equalize_length(a, b)
    if len(a) == len(b):
        assert out == (a, b)
        return
    short_first = len(a) < len(b)
    short, long_ = (a, b) if short_first else (b, a)
    kept, cut = out if short_first else out[::-1]
    assert kept == short  # the shorter text is untouched and keeps its position
    assert long_.startswith(cut) and cut.strip()  # a non-empty opening of the longer text...
    boundaries = [i for i, ch in enumerate(long_) if ch.isspace()] + [len(long_)]
    if cut == long_:  # kept whole: the end was nearest, or the nearest cut left only whitespace
        raw_cuts = [len(long_)] + [i for i in boundaries if not long_[:i].strip()]
    else:  # ...that ends where a word ends, without trailing whitespace
        assert cut == cut.rstrip() and long_[len(cut)].isspace()
        raw_cuts = [i for i in boundaries if long_[:i].rstrip() == cut]  # rstrip may have shortened it
    # the raw cut is the boundary (whitespace or the end) nearest the shorter text's length,
    # the later one on a tie
    best = min(abs(i - len(short)) for i in boundaries)
    chosen_cut = max(i for i in boundaries if abs(i - len(short)) == best)
    assert chosen_cut in raw_cuts, (chosen_cut, raw_cuts)
    pos = chosen_cut
    gap = abs(pos - len(short))
    # so the gap is at most half the word (or whitespace-free stretch) around the shorter length
    below = max([i for i in boundaries if i <= len(short)], default=None)
    above = min(i for i in boundaries if i >= len(short))
    assert gap == above - len(short) if below is None else gap <= (above - below) // 2


def test_equalize_length_cuts_the_longer_text_at_the_nearest_word_boundary():
    # "one two three four" has boundaries at 3, 7, 13 and its end 18; an 11-character text is nearest 13
    assert equalize_length("one two three four", "abcdefghijk") == ("one two three", "abcdefghijk")
    assert equalize_length("abcdefghijk", "one two three four") == ("abcdefghijk", "one two three")
    # a 9-character text is nearest 7
    assert equalize_length("one two three four", "abcdefghi") == ("one two", "abcdefghi")
    # any whitespace is a boundary, not only spaces
    assert equalize_length("one\ttwo three", "abcd") == ("one", "abcd")
    assert equalize_length("abcd", "one\ntwo three") == ("abcd", "one")


def test_equalize_length_counts_the_end_of_the_longer_text_as_a_boundary():
    # boundaries at 1 and the end (11): a 9-character text is nearer keeping the whole text
    assert equalize_length("abcdefghi", "a bcdefghij") == ("abcdefghi", "a bcdefghij")
    assert equalize_length("a bcdefghij", "abcdefghi") == ("a bcdefghij", "abcdefghi")
    # nearer the space at 1 than the end at 11: cut there
    assert equalize_length("ab", "a bcdefghij") == ("ab", "a")


def test_equalize_length_prefers_the_later_boundary_on_a_tie():
    # "abc def ghij": boundaries 3, 7 and 12; length 5 is 2 from both 3 and 7
    assert equalize_length("12345", "abc def ghij") == ("12345", "abc def")
    # "abc defghij": boundaries 3 and the end 11; length 7 is 4 from both: the whole text stays
    assert equalize_length("1234567", "abc defghij") == ("1234567", "abc defghij")
    # "x y z w": boundaries 1, 3, 5 and 7; length 4 is 1 from both 3 and 5
    assert equalize_length("a  b", "x y z w") == ("a  b", "x y z")


def test_equalize_length_strips_trailing_whitespace_and_keeps_the_text_whole_if_nothing_is_left():
    # boundaries 2, 3, 4 and 11: cut at 4 gives "ab  ", stripped to "ab"
    assert equalize_length("wxyz", "ab   cdefgh") == ("wxyz", "ab")
    # the nearest boundary (1) leaves only whitespace: the longer text is kept whole
    assert equalize_length("a", "   abcdef") == ("a", "   abcdef")
    assert equalize_length("   abcdef", "a") == ("   abcdef", "a")


def test_equalize_length_keeps_the_shorter_text_untouched_and_equal_lengths_unchanged():
    assert equalize_length("x y z w", "a\nb") == ("x y", "a\nb")
    assert equalize_length("a b", "x y") == ("a b", "x y")
    assert equalize_length("same text", "also nine") == ("same text", "also nine")
    assert equalize_length("a b ", "x y z w") == ("a b ", "x y z")  # whitespace of the shorter stays


def test_equalize_length_contract_holds_on_many_random_pairs():
    import random

    rng = random.Random(0)
    vocab = ["a", "an", "cat", "tree", "house", "running", "yesterday", "🎉", "it's", "extraordinary"]
    seps = [" "] * 6 + ["  ", "\n", "\t"]
    n_whole = n_cut = 0
    for _ in range(500):
        texts = []
        for _ in range(2):
            words = [rng.choice(vocab) for _ in range(rng.randint(1, 30))]
            texts.append("".join(w + rng.choice(seps) for w in words[:-1]) + words[-1])
        a, b = texts
        check_equalized(a, b)
        longer = max(a, b, key=len)
        n_whole += longer in equalize_length(a, b)
        n_cut += longer not in equalize_length(a, b)
    assert n_whole > 10 and n_cut > 100  # both outcomes are exercised


def test_equalize_length_on_a_rule_perturbation_cuts_only_at_a_boundary(corpus):
    import random

    from persrm_core.synthesis.perturb import perturb

    rng = random.Random(5)
    checked = 0
    for ex in corpus:
        cont = split_text(ex.text, CFG)[1]
        made = perturb(cont, rng, n_factors=2)
        if made is None:
            continue
        check_equalized(cont, made[0])
        c, j = equalize_length(cont, made[0])
        assert cont.startswith(c) and made[0].startswith(j)
        assert c == cont or j == made[0]  # only one of the two is cut
        checked += 1
    assert checked >= 20


# --- still_perturbed -----------------------------------------------------------------------------

def test_still_perturbed_keeps_only_factors_whose_measure_still_differs():
    plain = "we went home early. it was late and cold."
    loud = "WE WENT HOME EARLY!!! it was late and cold."
    mp, ml = measure(plain), measure(loud)
    assert mp["capitals"] != ml["capitals"] and mp["exclamations"] != ml["exclamations"]
    assert mp["emoji"] == ml["emoji"] and mp["hedges"] == ml["hedges"]
    factors = ["casing", "emoji", "exclamations", "hedging"]
    assert still_perturbed(plain, loud, factors) == ["casing", "exclamations"]  # order kept
    assert still_perturbed(plain, loud, ["exclamations", "casing"]) == ["exclamations", "casing"]
    assert still_perturbed(plain, loud, ["emoji"]) == []
    assert still_perturbed(plain, plain, factors) == []
    assert still_perturbed(plain, loud, []) == []


def test_still_perturbed_counts_register_while_the_texts_differ():
    assert "register" not in MEASURED_BY and "register" in RULES
    a = "we went home early. it was late."
    b = "we returned home early. it was late."
    assert still_perturbed(a, b, ["register"]) == ["register"]
    assert still_perturbed(a, a, ["register"]) == []
    assert still_perturbed(a, b, ["register", "emoji"]) == ["register"]


def test_still_perturbed_drops_a_change_that_equalize_length_cut_away():
    text = "we walked to the station and waited for the late train home tonight"
    with_emoji = text + " 🎉"
    assert still_perturbed(text, with_emoji, ["emoji"]) == ["emoji"]
    c, j = equalize_length(text, with_emoji)
    assert (c, j) == (text, text)  # the trailing emoji was the only change, and the cut removes it
    assert still_perturbed(c, j, ["emoji"]) == []


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


def check_rule_pairs_still_perturbed(pairs: list[dict]) -> None:
    """Every rule pair names at least one factor, and each named factor really differs between
    its (length-equalized) chosen and rejected responses."""
    rule = [r for r in pairs if r["negative_type"] == "rule_perturbation"]
    assert len(rule) >= 10
    n_measured = 0
    for r in rule:
        c, j = chosen(r), rejected(r)
        assert r["perturbed_factors"], r["pair_id"]
        mc, mj = measure(c), measure(j)
        for f in r["perturbed_factors"]:
            if f in MEASURED_BY:
                n_measured += 1
                assert mc[MEASURED_BY[f]] != mj[MEASURED_BY[f]], (r["pair_id"], f)
            else:  # register has no measure: the texts themselves differ
                assert c != j
        assert r["perturbed_factors"] == still_perturbed(c, j, r["perturbed_factors"])
    assert n_measured >= len(rule)  # most named factors are measured ones


def test_build_pairs_rule_pairs_still_differ_in_every_factor_they_name_after_equalizing(pairs):
    check_rule_pairs_still_perturbed(pairs)


@pytest.fixture(scope="module")
def pairs_seed11(corpus) -> list[dict]:
    # with this seed the length cut removes some perturbed factors' changes (so still_perturbed
    # acts: without it, a pair here would name "exclamations" with equal measures)
    return build_pairs(corpus, SynthesisConfig(seed=11), progress=False)


def test_build_pairs_rule_pairs_with_cut_changes_name_only_factors_that_still_differ(pairs_seed11):
    check_rule_pairs_still_perturbed(pairs_seed11)


def test_build_pairs_drops_factors_the_length_cut_removed_and_skips_pairs_left_with_none(corpus, monkeypatch):
    from persrm_core.synthesis import pairs as synthesis

    # A trailing emoji is cut away by equalize_length: the pair has no change left and is skipped.
    monkeypatch.setattr(synthesis, "perturb", lambda text, rng, n_factors: (text + " 🎉", ["emoji"]))
    rows = build_pairs(corpus, CFG, progress=False)
    assert rows and {r["negative_type"] for r in rows} == {"cross_author"}

    # Upper-casing survives the cut while the trailing emoji does not: only casing stays.
    monkeypatch.setattr(synthesis, "perturb", lambda text, rng, n_factors: (text.upper() + " 🎉", ["casing", "emoji"]))
    rule = [r for r in build_pairs(corpus, CFG, progress=False) if r["negative_type"] == "rule_perturbation"]
    assert len(rule) >= 10
    for r in rule:
        assert r["perturbed_factors"] == ["casing"], r["pair_id"]
        assert rejected(r) == chosen(r).upper() != chosen(r)


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


# --- LLM strategies through a generation backend ------------------------------------------------

class CannedBackend:
    """A backend that writes a fresh, generic continuation for every request (and counts them)."""

    name, model = "canned", "canned-1"

    def __init__(self):
        self.calls = 0

    def generate(self, requests, params):
        self.calls += len(requests)
        words = "the river kept moving past the old mill while evening settled over quiet fields".split()
        return [" ".join(words[(i + j) % len(words)] for j in range(40)) + "."
                for i, _ in enumerate(requests, start=self.calls)]


def test_llm_strategies_make_pairs_through_a_backend_and_are_cached(corpus, tmp_path):
    from persrm_core.llm.generation import SamplingParams

    cfg = SynthesisConfig(seed=7, negatives={"style_imitation": 1, "random_style": 1})
    backend = CannedBackend()
    llm = LLMSource(backend, SamplingParams(), tmp_path / "cache.jsonl")
    made = synthesize(corpus, cfg, llm=llm, progress=False)
    rows, refused = made.rows, made.refused
    assert {r["negative_type"] for r in rows} == {"style_imitation", "random_style"}
    for r in rows:
        assert abs(len(chosen(r)) - len(rejected(r))) <= max(len(w) for w in rejected(r).split()) + 1
    first_calls = backend.calls
    again = synthesize(corpus, cfg, llm=llm, progress=False).rows
    assert again == rows and backend.calls == first_calls  # every answer came from the cache
    assert set(refused) >= {"empty", "identical"}


def test_llm_strategies_without_a_backend_say_what_to_set(corpus):
    cfg = SynthesisConfig(seed=7, negatives={"minimal_word_swap": 1})
    with pytest.raises(ValueError, match="generation.backend"):
        build_pairs(corpus, cfg, progress=False)


def test_lexicon_swap_pairs_differ_from_the_chosen_text_by_three_or_four_words(corpus):
    from persrm_core.synthesis.swap import changed_words

    rows = build_pairs(corpus, SynthesisConfig(seed=7, negatives={"lexicon_swap": 1}), progress=False)
    assert rows
    for r in rows:
        assert 3 <= len(changed_words(chosen(r), rejected(r))) <= 4


def test_adding_an_author_leaves_everyone_elses_splits_and_own_pairs_alone(corpus):
    """Exemplars arrive per author over time: a newcomer must not reshuffle existing splits, and
    every existing text's rule and swap pairs stay byte-identical, even with cross-author negatives
    drawn first (each strategy has its own random stream, so the cross-author draws, which may now
    land on the newcomer, do not shift the others)."""
    cfg = SynthesisConfig(seed=7, unseen_authors=1,
                          negatives={"cross_author": 1, "rule_perturbation": 1, "lexicon_swap": 1})
    newcomer = [Exemplar(author_id="zed", text=e.text.upper()) for e in corpus if e.author_id == corpus[0].author_id]
    before, after = plan_splits(corpus, cfg), plan_splits(corpus + newcomer, cfg)
    assert {t: s for t, s in after.items() if t in before} == before
    own = lambda rows: {r["pair_id"]: (r["response_a"], r["response_b"], r["split"]) for r in rows  # noqa: E731
                        if r["author_id"] != "zed" and r["negative_type"] != "cross_author"}
    old, new = synthesize(corpus, cfg, progress=False), synthesize(corpus + newcomer, cfg, progress=False)
    old_rows, old_local, new_rows, new_local = old.rows, old.built_local, new.rows, new.built_local
    old_pairs, new_pairs = own(old_rows), own(new_rows)
    assert {r["negative_type"] for r in old_rows} == {"cross_author", "rule_perturbation", "lexicon_swap"}
    assert any(r["negative_source"] in {text_id(e) for e in newcomer} for r in new_rows if r["author_id"] != "zed")
    same = {k: v for k, v in new_pairs.items() if k in old_pairs}
    assert same.keys() == old_pairs.keys() and len(old_pairs) >= 40
    # A/B positions are re-balanced over the whole split, so compare the unordered responses
    assert {k: (frozenset(v[:2]), v[2]) for k, v in same.items()} == {
        k: (frozenset(v[:2]), v[2]) for k, v in old_pairs.items()}
    # and before positions are assigned, every existing author's author-local rows are equal field by field
    assert {a: rows for a, rows in new_local.items() if a != "zed"} == old_local


def test_an_author_whose_texts_are_too_short_is_named_with_the_reason():
    """A new author with 18-30-word texts was ingested, added no pairs, and nothing said so."""
    import polars as pl

    from persrm_core.pipeline import authors_without_pairs

    cfg = SynthesisConfig(unseen_authors=0)
    corpus = make_corpus(n_authors=3, n_texts=6, seed=2)
    short = [Exemplar("terse", " ".join(["word"] * n) + ".") for n in (18, 24, 30)]
    single = [Exemplar("once", " ".join(f"w{i}" for i in range(60)) + ".")]
    rows = build_pairs(corpus + short + single, cfg, progress=False)
    assert {r["author_id"] for r in rows} == {e.author_id for e in corpus}
    missing = authors_without_pairs(cfg, corpus + short + single, pl.DataFrame(rows))
    assert set(missing) == {"terse", "once"}
    assert "the longest has 30 words" in missing["terse"] and "= 33" in missing["terse"]
    assert "a single text" in missing["once"]


def test_a_one_text_author_has_no_own_pairs_but_serves_as_others_negative():
    import random

    from tests.synthetic_corpus import AUTHORS, author_text

    corpus = make_corpus(n_authors=1, n_texts=4, seed=3)  # one other author: the one-text author is its only negative
    once = Exemplar("once", author_text(AUTHORS[2], random.Random(7)))
    rows = build_pairs(corpus + [once], SynthesisConfig(unseen_authors=0, eval_fraction=0.0,
                                                        negatives={"cross_author": 1}), progress=False)
    assert "once" not in {r["author_id"] for r in rows}  # no other text of theirs to be an exemplar
    assert text_id(once) in {r["negative_source"] for r in rows if r["negative_type"] == "cross_author"}


def test_a_one_text_author_is_never_drawn_as_an_unseen_author():
    corpus = make_corpus(n_authors=4, n_texts=4, seed=1)
    ones = [Exemplar(f"solo{i}", f"solo {i} wrote one text only.") for i in range(6)]
    plan = plan_splits(corpus + ones, SynthesisConfig(unseen_authors=2))
    unseen = {e.author_id for e in corpus + ones if plan[text_id(e)] == EVAL_UNSEEN}
    assert len(unseen) == 2 and not any(a.startswith("solo") for a in unseen)


def test_pairs_are_the_same_in_processes_with_different_hash_seeds():
    """Sets and dicts of strings iterate in an order that depends on PYTHONHASHSEED: the pairs (what
    DVC caches and every later stage reads) must not, or `dvc repro` on another machine would differ.
    Built here and in a process whose string hashes differ from this one's."""
    import hashlib
    import json
    import os
    import subprocess
    import sys
    from pathlib import Path

    script = ("import hashlib, json\n"
              "from persrm_core.synthesis.pairs import SynthesisConfig, build_pairs\n"
              "from tests.synthetic_corpus import make_corpus\n"
              "rows = build_pairs(make_corpus(n_authors=4, n_texts=6), SynthesisConfig(seed=3), progress=False)\n"
              "print(hash('persrm'), hashlib.sha256(json.dumps(rows, sort_keys=True).encode()).hexdigest())\n")
    rows = build_pairs(make_corpus(n_authors=4, n_texts=6), SynthesisConfig(seed=3), progress=False)
    here = hashlib.sha256(json.dumps(rows, sort_keys=True).encode()).hexdigest()
    repo = Path(__file__).resolve().parent.parent
    env = {**os.environ, "PYTHONHASHSEED": "2" if os.environ.get("PYTHONHASHSEED") == "1" else "1",
           "PYTHONPATH": str(repo)}
    done = subprocess.run([sys.executable, "-c", script], cwd=repo, env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]
    their_hash, there = done.stdout.split()
    assert int(their_hash) != hash("persrm")  # the other process does order strings differently
    assert len(rows) > 0 and there == here
