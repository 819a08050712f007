"""Measured style evidence about a pair: what the judge is shown and what its rationale cites.

For each personal factor (`persrm_core.style.FACTORS`) the exemplars' mean and each response are
put into one of the factor's three named levels; and the character 4-gram TF-IDF similarity of
each response to the exemplars is measured (a classical authorship signal that carries over to
unseen writers, where surface factors often agree). Each reading states which response is nearer
the exemplars. Measurements use the full exemplar texts, before any cut to fit a model's context.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from persrm_core.style import FACTORS, measure, profile

NGRAM = 4
SIMILARITY_MARGIN = 0.005  # similarities closer than this are reported as a tie


@dataclass(frozen=True)
class FactorReading:
    name: str
    label: str  # how the rationale names the factor
    exemplars: str  # level (or "" for similarity)
    a: str
    b: str
    nearer: str | None  # "A", "B" or None

    def line(self) -> str:
        nearer = f"; nearer {self.nearer}" if self.nearer else "; a tie"
        if self.name == "similarity":
            return f"{self.label}: A {self.a}; B {self.b}{nearer}"
        return f"{self.label}: exemplars {self.exemplars}; A {self.a}; B {self.b}{nearer}"


def char_ngram_similarity(exemplars: Sequence[str], response_a: str, response_b: str) -> tuple[float, float]:
    """Cosine of each response to the exemplars' centroid in char-4-gram TF-IDF space (fit on the pair)."""
    import numpy as np
    from sklearn.feature_extraction.text import TfidfVectorizer

    vec = TfidfVectorizer(analyzer="char", ngram_range=(NGRAM, NGRAM), sublinear_tf=True, lowercase=False)
    m = vec.fit_transform([*exemplars, response_a, response_b])
    centre = np.asarray(m[: len(exemplars)].mean(axis=0)).ravel()
    centre /= np.linalg.norm(centre) + 1e-12
    sims = m[len(exemplars):] @ centre
    return float(sims[0]), float(sims[1])


def read_pair(exemplars: Sequence[str], response_a: str, response_b: str) -> list[FactorReading]:
    """Every factor reading, surface factors first, similarity last."""
    prof, ma, mb = profile(list(exemplars)), measure(response_a), measure(response_b)
    out = []
    for f in FACTORS:
        ex_rank = f.rank(prof[f.name])
        da, db = abs(f.rank(ma[f.name]) - ex_rank), abs(f.rank(mb[f.name]) - ex_rank)
        out.append(FactorReading(f.name, f.label.capitalize(), f.level(prof[f.name]), f.level(ma[f.name]),
                                 f.level(mb[f.name]), None if da == db else ("A" if da < db else "B")))
    sa, sb = char_ngram_similarity(exemplars, response_a, response_b)
    # Decided on the values as shown, so a line never says "A 0.21; B 0.21; nearer B".
    tie = abs(sa - sb) < SIMILARITY_MARGIN or f"{sa:.2f}" == f"{sb:.2f}"
    nearer = None if tie else ("A" if sa > sb else "B")
    out.append(FactorReading("similarity", f"Character {NGRAM}-gram similarity to exemplars",
                             "", f"{sa:.2f}", f"{sb:.2f}", nearer))
    return out


def evidence_block(readings: list[FactorReading]) -> str:
    """The lines shown to the judge: factors where the three levels are not all equal, and similarity."""
    lines = [r.line() for r in readings if r.name == "similarity" or len({r.exemplars, r.a, r.b}) > 1]
    return "Measured style:\n" + "\n".join(lines)
