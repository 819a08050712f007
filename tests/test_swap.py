"""persrm_core.synthesis.swap: a minimal swap changes exactly k words, each to a synonym with the same
capitalisation and the same punctuation around it, and nothing else; the lexicon is clean."""

from __future__ import annotations

import random
import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from persrm_core.synthesis.swap import (
    BLOCKED_BIGRAMS,
    WORD_RE,
    changed_words,
    lexicon_groups,
    minimal_swap,
    parse_lexicon,
    synonyms,
)

BLOCKED_WORDS = {w for pair in BLOCKED_BIGRAMS for w in pair}
# Lexicon words that are swappable wherever they stand (no fixed phrase involves them).
FREE_WORDS = sorted(w for w in synonyms() if w not in BLOCKED_WORDS)
# Words that are never swappable: not in the lexicon, not "a"/"an", not in a fixed phrase.
FILLERS = ["the", "of", "and", "it", "was", "we", "xylo", "3.5", "don't", "well-known", "42%",
           "zorbs", "q", "i", "on", "with", "—", "...", "iPhone", "McKinsey", "emoji🎉"]
PREFIXES = ["", "", "", "(", '"', "“", "'"]
SUFFIXES = ["", "", "", ",", ".", "!", "?", ";", ":", ")", '"', "”", "...", "'", ",\"", "!!"]
SEPARATORS = [" ", " ", " ", "  ", "\n", "\t", " \n\n", "\u00a0"]


def styled(word: str, case: str) -> str:
    return word.upper() if case == "upper" else word.capitalize() if case == "title" else word


def case_of(word: str) -> str:
    return "lower" if word.islower() else "upper" if word.isupper() else "title"


@st.composite
def texts(draw) -> tuple[str, int, set[int]]:
    """(text, how many words are swappable, token indices that must never change).

    Title-case lexicon words count as swappable only at a sentence start (the first token, a
    new line, after a token ending in . ! ?, or after an opening quote or bracket); elsewhere
    they read as names and must be left alone."""
    n = draw(st.integers(0, 30))
    seps = [draw(st.sampled_from(SEPARATORS)) for _ in range(max(n - 1, 0))]
    tokens: list[str] = []
    swappable, frozen = 0, set()
    for i in range(n):
        kind = draw(st.sampled_from(["lex", "lex", "filler", "filler"]))
        prefix, suffix = draw(st.sampled_from(PREFIXES)), draw(st.sampled_from(SUFFIXES))
        if kind == "filler":
            tokens.append(prefix + draw(st.sampled_from(FILLERS)) + suffix)
            continue
        word = draw(st.sampled_from(FREE_WORDS))
        case = draw(st.sampled_from(["lower", "lower", "title", "upper"]))
        tokens.append(prefix + styled(word, case) + suffix)
        at_start = i == 0 or "\n" in seps[i - 1] or bool(re.search(r"[.!?][\"'”’)]*$", tokens[i - 1]))
        if case != "title" or at_start or prefix in ("(", '"', "“", "'"):
            swappable += 1
        else:
            frozen.add(i)
    text = tokens[0] if tokens else ""
    for sep, tok in zip(seps, tokens[1:]):
        text += sep + tok
    lead, trail = draw(st.sampled_from(["", " ", "\n"])), draw(st.sampled_from(["", " ", "\n"]))
    return lead + text + trail, swappable, frozen


@settings(max_examples=400, deadline=None)
@given(texts(), st.integers(0, 2**32 - 1), st.sampled_from([(3, 4), (1, 1), (2, 5), (4, 4)]))
def test_swap_changes_exactly_k_words_and_nothing_else(case, seed, bounds):
    text, swappable, frozen = case
    n_min, n_max = bounds
    made = minimal_swap(text, random.Random(seed), n_min=n_min, n_max=n_max)
    if swappable < n_min:
        assert made is None
        return
    assert made is not None
    new, swaps = made
    diffs = changed_words(text, new)
    assert diffs is not None, "spacing or word count changed"
    assert n_min <= len(diffs) <= min(n_max, swappable) and len(swaps) == len(diffs)
    old_tokens = re.split(r"\s+", text.strip())
    for (old_tok, new_tok), (old_word, new_word) in zip(diffs, swaps):
        mo, mn = WORD_RE.fullmatch(old_tok), WORD_RE.fullmatch(new_tok)
        assert mo and mn
        assert (mo.group(1), mo.group(3)) == (mn.group(1), mn.group(3))  # punctuation kept
        assert (mo.group(2), mn.group(2)) == (old_word, new_word)
        assert new_word.lower() in synonyms()[old_word.lower()]
        assert case_of(new_word) == case_of(old_word)
    new_tokens = re.split(r"\s+", new.strip())
    assert all(old_tokens[i] == new_tokens[i] for i in frozen)
    # Determinism: the same rng state gives the same swap.
    assert minimal_swap(text, random.Random(seed), n_min=n_min, n_max=n_max) == made


def test_changed_words():
    assert changed_words("Shares rose, analysts said.", "Shares climbed, analysts stated.") == [
        ("rose,", "climbed,"), ("said.", "stated.")]
    assert changed_words("a  b", "a  b") == []
    assert changed_words("a  b", "a b") is None  # spacing
    assert changed_words("a b", "a b c") is None  # a word added
    assert changed_words(" a", "x a") is None
    assert changed_words("a\nb", "a b") is None


def test_punctuation_and_capitals_are_kept():
    text = 'Huge crowds gathered. "Huge," she said; prices ROSE (sharply).'
    for seed in range(30):
        new, swaps = minimal_swap(text, random.Random(seed), n_min=5, n_max=5)
        diffs = changed_words(text, new)
        assert len(diffs) == 5
        assert new.count('"') == 2 and new.endswith(").") and "; " in new
        assert re.fullmatch(r'[A-Z][a-z]+ [a-z]+ [a-z]+\. "[A-Z][a-z]+," she [a-z]+; prices [A-Z]+ '
                            r'\([a-z]+\)\.', new)


def test_names_articles_and_fixed_phrases_are_left_alone():
    name = "We walked past Rose and she smiled at the big dog."
    for seed in range(20):
        made = minimal_swap(name, random.Random(seed), n_min=2, n_max=2)
        assert made is not None and "Rose" in made[0]  # a capital mid-sentence is a name
    assert minimal_swap("He declined to comment and fell asleep.", random.Random(0), n_min=1) is None
    assert minimal_swap("an honest man", random.Random(0), n_min=1) is None  # no vowel synonym
    for seed in range(40):
        new, _ = minimal_swap("It was an enormous loss and a huge one.", random.Random(seed), 2, 2)
        assert not re.search(r"\ban (huge|massive)\b", new)
        assert not re.search(r"\ba (enormous|immense)\b", new)


def test_positions_are_spread():
    words = sorted(w for w in FREE_WORDS if w[0] not in "aeiou")[:40]
    text = " ".join(f"{w} of" for w in words)
    for seed in range(20):
        _, swaps = minimal_swap(text, random.Random(seed), n_min=4, n_max=4)
        positions = [words.index(old) for old, _ in swaps]
        assert [p // 10 for p in positions] == [0, 1, 2, 3]


def test_too_few_candidates_and_bad_bounds():
    assert minimal_swap("", random.Random(0)) is None
    assert minimal_swap("the cat sat on the mat", random.Random(0)) is None
    assert minimal_swap("big and quick", random.Random(0), n_min=3) is None
    assert minimal_swap("big and quick but sad", random.Random(0), n_min=3, n_max=4) is not None
    with pytest.raises(ValueError):
        minimal_swap("big and quick", random.Random(0), n_min=0)
    with pytest.raises(ValueError):
        minimal_swap("big and quick", random.Random(0), n_min=3, n_max=2)


def test_lexicon_is_clean():
    from sklearn.feature_extraction.text import ENGLISH_STOP_WORDS

    groups = lexicon_groups()
    assert len(groups) >= 250
    words = [w for g in groups for w in g]
    assert len(words) == len(set(words)), "a word is in two groups"
    assert all(len(set(g)) >= 2 and all(w.isalpha() and w.islower() for w in g) for g in groups)
    function_words = set(ENGLISH_STOP_WORDS) | {"a", "an", "the", "is", "are", "was", "be", "do",
                                                 "did", "does", "has", "have", "had", "can",
                                                 "will", "would", "shall", "just", "like"}
    assert not function_words & set(words)
    assert all(w in synonyms() and w not in synonyms()[w] for w in words)


def test_parse_lexicon_rejects_bad_groups():
    assert parse_lexicon("# comment\n\nbig\tlarge\n") == (("big", "large"),)
    for bad in ["big\n", "big\tbig\n", "big\tLarge\n", "big\tlarge\nlarge\thuge\n", "big\tla-rge\n"]:
        with pytest.raises(ValueError):
            parse_lexicon(bad)
