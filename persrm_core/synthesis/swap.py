"""A minimal word swap: the author's own text with a few words replaced by close synonyms.

This is the hardest negative the pipeline makes offline: every personal factor the other rules
move (casing, punctuation, emoji, sentence length, spacing) is left exactly as the author wrote
it, so a reward model can only tell it apart by word choice. The synonyms come from a small
hand-written lexicon bundled with the package (`resources/synonyms.tsv`), not from a model, so
the swap is reproducible and offline; a swap replaces whole words only, keeps each word's
capitalisation pattern and leaves every other character byte for byte as it was.
"""

from __future__ import annotations

import random
import re
from functools import lru_cache
from importlib import resources

LEXICON_FILE = "synonyms.tsv"
TOKEN_RE = re.compile(r"\S+")
# A swappable token is one run of ASCII letters with only punctuation (no letters, digits or
# underscores) around it: "rose," and "(huge)" qualify, "don't", "well-known" and "3rd" do not.
WORD_RE = re.compile(r"([^\w]*)([A-Za-z]+)([^\w]*)")
OPENERS = set("\"'“‘([{«")
SENTENCE_END_RE = re.compile(r"[.!?…][\"'”’)\]}»]*$")
VOWELS = set("aeiou")
# Word pairs in which one word is part of a fixed phrase, so swapping it changes the meaning
# ("declined to comment" is not "slid to comment", "fell asleep" is not "declined asleep").
BLOCKED_BIGRAMS = {
    ("declined", "to"), ("declining", "to"), ("declines", "to"), ("fell", "asleep"), ("fell", "in"),
    ("fell", "apart"), ("fell", "ill"), ("fell", "silent"), ("fell", "for"), ("fell", "short"),
    ("fell", "through"), ("fell", "behind"), ("fell", "victim"), ("fell", "pregnant"),
    ("fell", "sick"), ("fell", "over"), ("falling", "asleep"), ("falling", "apart"),
    ("falling", "in"), ("falling", "behind"), ("falling", "short"), ("falling", "for"),
    ("falls", "asleep"), ("falls", "apart"), ("falls", "short"), ("give", "rise"), ("gave", "rise"),
    ("giving", "rise"), ("stopped", "by"), ("backed", "out"), ("backed", "up"), ("backed", "down"),
    ("backed", "off"), ("backed", "away"), ("admitted", "to"), ("assumed", "office"),
    ("assumed", "control"), ("assumed", "command"), ("assumed", "responsibility"), ("rush", "hour"),
    ("gold", "rush"), ("subject", "to"), ("team", "up"), ("tune", "in"), ("slow", "down"),
    ("keen", "on"), ("sick", "of"), ("shy", "of"), ("shy", "away"), ("rich", "in"),
    ("out", "loud"), ("firm", "grip"), ("firm", "hand"), ("firm", "believer"),
    ("pulled", "over"), ("pulled", "off"), ("talked", "into"), ("tried", "on"),
}


def parse_lexicon(text: str) -> tuple[tuple[str, ...], ...]:
    """Synonym groups from the tsv format, checked: lowercase letters only, at least two distinct
    words per group, and no word in two groups (a word's synonyms must not depend on which line
    wins, so a second group is an error rather than a merge)."""
    groups, seen = [], {}
    for lineno, line in enumerate(text.splitlines(), 1):
        if not line.strip() or line.startswith("#"):
            continue
        words = tuple(w.strip() for w in line.split("\t") if w.strip())
        if len(set(words)) < 2 or len(set(words)) != len(words):
            raise ValueError(f"{LEXICON_FILE}:{lineno}: a group needs two or more distinct words")
        for w in words:
            if not (w.isascii() and w.isalpha() and w.islower()):
                raise ValueError(f"{LEXICON_FILE}:{lineno}: {w!r} is not a lowercase ASCII word")
            if w in seen:
                raise ValueError(f"{LEXICON_FILE}:{lineno}: {w!r} is already in the group on line {seen[w]}")
            seen[w] = lineno
        groups.append(words)
    return tuple(groups)


@lru_cache(maxsize=1)
def lexicon_groups() -> tuple[tuple[str, ...], ...]:
    """The bundled lexicon (`resources/synonyms.tsv`), parsed once."""
    path = resources.files("persrm_core").joinpath("resources", LEXICON_FILE)
    return parse_lexicon(path.read_text("utf-8"))


@lru_cache(maxsize=1)
def synonyms() -> dict[str, tuple[str, ...]]:
    """word -> the other words of its group, in file order."""
    return {w: tuple(o for o in g if o != w) for g in lexicon_groups() for w in g}


def _case_of(word: str) -> str | None:
    if word.islower():
        return "lower"
    if len(word) > 1 and word.isupper():
        return "upper"
    if word[0].isupper() and (len(word) == 1 or word[1:].islower()):
        return "title"
    return None  # mixed case ("iPhone", "McKinsey"): a name, never swapped


def _apply_case(word: str, case: str) -> str:
    return word.upper() if case == "upper" else word[0].upper() + word[1:] if case == "title" else word


def _candidates(text: str) -> list[tuple[int, str, str, tuple[str, ...]]]:
    """(offset of the word's first letter, the word, its case, the replacements allowed there)."""
    table = synonyms()
    tokens = [(m.start(), m.group(0)) for m in TOKEN_RE.finditer(text)]
    parsed = [WORD_RE.fullmatch(tok) for _, tok in tokens]
    out = []
    for i, ((start, tok), m) in enumerate(zip(tokens, parsed)):
        if m is None:
            continue
        prefix, word, suffix = m.groups()
        low, case = word.lower(), _case_of(word)
        if low not in table or case is None:
            continue
        prev = parsed[i - 1] if i else None
        nxt = parsed[i + 1] if i + 1 < len(parsed) else None
        # Neighbouring words count for fixed phrases and articles only when no punctuation
        # separates them.
        prev_word = prev.group(2).lower() if prev and not prev.group(3) and not prefix else None
        next_word = nxt.group(2).lower() if nxt and not suffix and not nxt.group(1) else None
        if (prev_word, low) in BLOCKED_BIGRAMS or (low, next_word) in BLOCKED_BIGRAMS:
            continue
        if case == "title":
            # A capital mid-sentence usually marks a name ("General Motors", "Rose"): only a
            # capital that starts a sentence, a line or a quotation is taken as an ordinary word.
            gap = text[tokens[i - 1][0] + len(tokens[i - 1][1]):start] if i else ""
            starts = (i == 0 or "\n" in gap or SENTENCE_END_RE.search(tokens[i - 1][1])
                      or any(c in OPENERS for c in prefix))
            if not starts:
                continue
        options = table[low]
        if prev_word in ("a", "an"):  # "an enormous" must not become "an huge"
            options = tuple(o for o in options if (o[0] in VOWELS) == (prev_word == "an"))
        if options:
            out.append((start + len(prefix), word, case, options))
    return out


def minimal_swap(text: str, rng: random.Random, n_min: int = 3,
                 n_max: int = 4) -> tuple[str, list[tuple[str, str]]] | None:
    """Replace k distinct words (k drawn from [n_min, n_max], fewer only if fewer can be swapped
    but never fewer than n_min) by synonyms from the bundled lexicon; None if fewer than n_min
    words can be swapped. Returns the new text and the (old, new) words in text order.

    The chosen words are spread through the text (one from each of k equal runs of the
    candidates) so the change is not all in one sentence. Only the letters of each word change,
    and each replacement keeps the original's pattern (lower, Title, UPPER)."""
    if not 1 <= n_min <= n_max:
        raise ValueError(f"need 1 <= n_min <= n_max, got {n_min}, {n_max}")
    k = rng.randint(n_min, n_max)  # drawn first so rng use does not depend on the text
    cands = _candidates(text)
    if len(cands) < n_min:
        return None
    k = min(k, len(cands))
    bounds = [round(c * len(cands) / k) for c in range(k + 1)]
    picks = [cands[rng.randrange(lo, hi)] for lo, hi in zip(bounds, bounds[1:])]
    pieces, swaps, pos = [], [], 0
    for start, word, case, options in picks:
        new = _apply_case(rng.choice(options), case)
        pieces += [text[pos:start], new]
        swaps.append((word, new))
        pos = start + len(word)
    pieces.append(text[pos:])
    return "".join(pieces), swaps


def changed_words(a: str, b: str) -> list[tuple[str, str]] | None:
    """The whitespace-separated tokens (punctuation included) that differ between two texts at
    the same position, in order; None if the texts differ in anything but such substitutions
    (a word added or removed, different spacing). Equal texts give []."""
    pa, pb = re.split(r"(\s+)", a), re.split(r"(\s+)", b)
    if len(pa) != len(pb) or pa[1::2] != pb[1::2]:
        return None
    diffs = [(x, y) for x, y in zip(pa[::2], pb[::2]) if x != y]
    return None if any(not x or not y for x, y in diffs) else diffs
