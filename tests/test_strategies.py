"""The registry of negative strategies is the one place that says what each strategy is: which
are author-local, which need an LLM, which are cut to equal length, which gate validates them."""

from __future__ import annotations

import pytest

from persrm_core.data import corpus
from persrm_core.synthesis import strategies
from persrm_core.synthesis.strategies import CROSS_AUTHOR, EDIT, FREE, REGISTRY, SWAP, check_known, enabled, uses_llm


def test_the_registry_holds_the_recipe_s_six_strategies():
    assert set(REGISTRY) == {"cross_author", "rule_perturbation", "lexicon_swap", "style_imitation", "random_style",
                             "minimal_word_swap"}
    assert [n for n, s in REGISTRY.items() if not s.author_local] == [CROSS_AUTHOR]
    assert set(strategies.LLM_STRATEGIES) == {"style_imitation", "random_style", "minimal_word_swap"}
    assert set(strategies.OFFLINE_STRATEGIES) | set(strategies.LLM_STRATEGIES) == set(REGISTRY)
    assert all(s.gate in (EDIT, SWAP, FREE) and s.summary for s in REGISTRY.values())


def test_the_corpus_gates_come_from_the_registry():
    assert corpus.EDITS == ("rule_perturbation",)
    assert set(corpus.SWAPS) == {"lexicon_swap", "minimal_word_swap"}


def test_enabled_filters_by_count_and_by_what_a_strategy_is():
    negatives = {"cross_author": 1, "rule_perturbation": 2, "lexicon_swap": 0, "style_imitation": 1}
    assert enabled(negatives) == {"cross_author": 1, "rule_perturbation": 2, "style_imitation": 1}
    assert enabled(negatives, author_local=True) == {"rule_perturbation": 2, "style_imitation": 1}
    assert enabled(negatives, needs_llm=True) == {"style_imitation": 1}
    assert enabled(negatives, author_local=False) == {"cross_author": 1}
    assert uses_llm(negatives) and not uses_llm({"cross_author": 1, "style_imitation": 0})


def test_an_unknown_strategy_is_named_with_the_known_ones():
    check_known({"cross_author": 1, "typo_strategy": 0})  # not asked for: no error
    with pytest.raises(ValueError, match=r"unknown negative strategy 'cross_autor' \(known: cross_author, "):
        check_known({"cross_autor": 1})


def test_every_offline_strategy_makes_pairs_of_its_type():
    """Each registered offline strategy has an implementation in synthesis and yields pairs."""
    from persrm_core.synthesis.pairs import SynthesisConfig, build_pairs
    from tests.synthetic_corpus import make_corpus

    exemplars = make_corpus(n_authors=4, n_texts=6)
    for name in strategies.OFFLINE_STRATEGIES:
        rows = build_pairs(exemplars, SynthesisConfig(negatives={name: 1}), progress=False, workers=1)
        assert rows and {r["negative_type"] for r in rows} == {name}, name
