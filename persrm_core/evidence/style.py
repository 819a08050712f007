"""Stylometric measurements of a text along named personal factors.

The same measurements drive the rule perturbations (which push a text away from its author's
habit along one factor), the offline rationale writer (which states measured differences) and
the stylometric baseline judge, so every claim about a factor means one thing everywhere.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from functools import lru_cache

WORD_RE = re.compile(r"[A-Za-z][A-Za-z'’]*")
TOKEN_RE = re.compile(r"\S+")
SENTENCE_RE = re.compile(r"[^.!?\n]+(?:[.!?]+|\n|$)")
EMOJI_RE = re.compile(
    "[\U0001F300-\U0001FAFF\U00002600-\U000027BF\U0001F000-\U0001F02F\U0001F0A0-\U0001F0FF"
    "\U0001F100-\U0001F1FF\U00002B00-\U00002BFF\U0000FE0F]"
)
# With an apostrophe, or the apostrophe-less forms informal writers use ("dont", "im").
CONTRACTION_RE = re.compile(r"\b(?:[A-Za-z]+['’](?:t|s|re|ve|ll|d|m)|dont|cant|wont|didnt|isnt|doesnt|im|ive)\b",
                            re.IGNORECASE)
HEDGES = (
    "perhaps", "arguably", "possibly", "somewhat", "might", "may", "could", "seemingly",
    "apparently", "likely", "probably", "presumably", "to some extent", "it seems", "it may be",
    "one might", "in some ways", "relatively", "fairly", "rather",
)
HEDGE_RE = re.compile(r"\b(?:" + "|".join(re.escape(h) for h in HEDGES) + r")\b", re.IGNORECASE)


@dataclass(frozen=True)
class Factor:
    name: str
    label: str  # how the rationale names it
    unit: str  # what the measured value counts
    scale: float  # a difference of one `scale` is a clear, noticeable difference
    bins: tuple[float, float]  # level boundaries: below bins[0], below bins[1], above
    levels: tuple[str, str, str]  # the words for those three levels

    def level(self, value: float) -> str:
        return self.levels[0] if value < self.bins[0] else self.levels[1] if value < self.bins[1] else self.levels[2]

    def rank(self, value: float) -> int:
        return self.levels.index(self.level(value))


RATE_LEVELS = ("none", "few", "many")
# Order matters only for ties in the rationale.
FACTORS: tuple[Factor, ...] = (
    Factor("capitals", "capital letters", "% of letters", 3.0, (0.5, 5.0), ("none", "normal", "many")),
    Factor("exclamations", "exclamation marks", "per 100 words", 1.5, (0.01, 2.0), RATE_LEVELS),
    Factor("emoji", "emoji", "per 100 words", 1.0, (0.01, 2.0), RATE_LEVELS),
    Factor("contractions", "contractions", "per 100 words", 1.5, (0.01, 2.0), RATE_LEVELS),
    Factor("sentence_length", "sentence length", "words per sentence", 5.0, (10.0, 20.0),
           ("short", "medium", "long")),
    Factor("word_length", "word length", "letters per word", 0.5, (4.3, 5.0), ("short", "medium", "long")),
    Factor("hedges", "hedging words", "per 100 words", 1.5, (0.01, 1.5), RATE_LEVELS),
    Factor("questions", "question marks", "per 100 words", 1.0, (0.01, 1.5), RATE_LEVELS),
    Factor("semicolons_dashes", "semicolons and dashes", "per 100 words", 1.0, (0.01, 1.5), RATE_LEVELS),
)
FACTOR_BY_NAME = {f.name: f for f in FACTORS}


def words(text: str) -> list[str]:
    return WORD_RE.findall(text)


def sentences(text: str) -> list[str]:
    return [s.strip() for s in SENTENCE_RE.findall(text) if s.strip()]


def measure(text: str) -> dict[str, float]:
    """Measure every factor of `text`; rates are per 100 whitespace tokens. (A fresh dict each
    call; the work behind it is cached, since synthesis measures each chosen text many times.)"""
    return dict(zip(FACTOR_NAMES, _measure(text)))


FACTOR_NAMES = tuple(f.name for f in FACTORS)
NON_LETTERS_RE = re.compile(r"[\W\d_]+")


@lru_cache(maxsize=1 << 16)
def _measure(text: str) -> tuple[float, ...]:
    tokens = TOKEN_RE.findall(text)
    n = max(len(tokens), 1)
    per100 = 100.0 / n
    letters = NON_LETTERS_RE.sub("", text)  # str.isalpha() letters, found at C speed
    ws = words(text)
    sents = sentences(text)
    values = {
        "capitals": 100.0 * sum(map(str.isupper, letters)) / max(len(letters), 1),
        "exclamations": text.count("!") * per100,
        "emoji": len(EMOJI_RE.findall(text.replace("\uFE0F", ""))) * per100,
        "contractions": len(CONTRACTION_RE.findall(text)) * per100,
        "sentence_length": len(tokens) / max(len(sents), 1),
        "word_length": sum(map(len, ws)) / max(len(ws), 1),
        "hedges": len(HEDGE_RE.findall(text)) * per100,
        "questions": text.count("?") * per100,
        "semicolons_dashes": (text.count(";") + text.count("—") + text.count(" - ")) * per100,
    }
    return tuple(values[name] for name in FACTOR_NAMES)


def profile(texts: list[str]) -> dict[str, float]:
    """The author's profile: the mean of each factor over their texts."""
    ms = [measure(t) for t in texts]
    return {f.name: sum(m[f.name] for m in ms) / len(ms) for f in FACTORS}


def distance(a: dict[str, float], b: dict[str, float]) -> float:
    """Scaled L1 distance between two measurements, damped so no factor dominates."""
    return sum(math.log1p(abs(a[f.name] - b[f.name]) / f.scale) for f in FACTORS)
