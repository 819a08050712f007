"""Measured style evidence about a pair: what the judge is shown and what its rationale cites.

Each reading is one style signal (`persrm_core.evidence.signals`: the style encoder, the untuned
sentence embedding, character 4-grams and word n-grams with IDF fitted on the training corpus,
function words, personal factors),
measured for both responses against the exemplars, with its margin and the response it favours.
The last line weighs them (`persrm_core.evidence.combined`, fitted on the training split) into a
probability that A is the author's. For example:

    Measured style (similarity to the exemplars):
    style encoder: A 0.62, B 0.48; A by 0.14
    sentence embedding: A 0.55, B 0.41; A by 0.14
    character 4-grams: A 0.41, B 0.42; B by 0.01
    word n-grams: A 0.21, B 0.19; A by 0.02
    function words: A 0.93, B 0.93; a tie
    personal factors: A -1.20, B -2.85; A by 1.65
    weighed: A 0.81, B 0.19; A

Every number is printed with two decimals and a reading is a tie exactly when the printed values
are equal, so no line ever says "A 0.21; B 0.21; A by 0.00". The weighed line names the side its
unrounded probabilities favour (`weighed: A 0.50, B 0.50; A` where the fitted weights give A 0.503),
so it agrees with the `combined` judge on every pair, and the number the judge copies always has
the two decimals it saw in training. Measurements use the full exemplar
texts (all of them, though the judge may be shown fewer and shorter ones to fit its context).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache

from persrm_core.evidence.signals import SIGNAL_LABELS, SIGNALS, EvidenceModel


@dataclass(frozen=True)
class Reading:
    name: str  # a signal of persrm_core.evidence.signals.SIGNALS, or "weighed"
    a: float
    b: float

    @property
    def label(self) -> str:
        return SIGNAL_LABELS.get(self.name, self.name)

    def fmt(self, value: float) -> str:
        return f"{value:.2f}"

    @property
    def margin(self) -> float:
        """|A - B| as printed."""
        return round(abs(float(self.fmt(self.a)) - float(self.fmt(self.b))), 2)

    @property
    def nearer(self) -> str | None:
        """"A" or "B" when the printed values differ, None for a tie. The weighed line names the side
        its unrounded probabilities favour (`combined`'s choice), so 0.503 against 0.497 prints
        `A 0.50, B 0.50; A`, not a tie; it is a tie only when they are equal."""
        a, b = (self.a, self.b) if self.name == "weighed" else (float(self.fmt(self.a)), float(self.fmt(self.b)))
        if a == b:
            return None
        return "A" if a > b else "B"

    def line(self) -> str:
        side = f"{self.nearer} by {self.margin:.2f}" if self.nearer else "a tie"
        if self.name == "weighed":
            side = self.nearer or "a tie"
        return f"{self.label}: A {self.fmt(self.a)}, B {self.fmt(self.b)}; {side}"


@dataclass(frozen=True)
class Evidence:
    readings: tuple[Reading, ...]  # one per signal, in SIGNALS order
    weighed: Reading | None  # P(A), P(B) under the combined model (None when it is not fitted)

    @property
    def verdict(self) -> str | None:
        """The response the weighed evidence favours (None: no fitted weights, or a printed tie)."""
        return self.weighed.nearer if self.weighed is not None else None

    def swapped(self) -> Evidence:
        flip = lambda r: Reading(r.name, r.b, r.a)  # noqa: E731
        return Evidence(tuple(flip(r) for r in self.readings), None if self.weighed is None else flip(self.weighed))


def evidence_from_signals(row: dict[str, tuple[float, float]], combined: dict | None) -> Evidence:
    from persrm_core.evidence.combined import prob_a

    readings = tuple(Reading(s, *row[s]) for s in SIGNALS)
    weighed = None
    if combined is not None:
        p = prob_a(combined, row)
        weighed = Reading("weighed", p, 1.0 - p)
    return Evidence(readings, weighed)


def read_pairs(model: EvidenceModel, pairs: Sequence[tuple[Sequence[str], str, str]],
               progress: bool = False) -> list[Evidence]:
    """The evidence of each (exemplars, response_a, response_b), measured in one batch."""
    rows = model.signals(pairs, progress=progress)
    return [evidence_from_signals(r, model.combined) for r in rows]


def read_pair(exemplars: Sequence[str], response_a: str, response_b: str,
              model: EvidenceModel | None = None) -> Evidence:
    return read_pairs(model or untrained_model(), [(list(exemplars), response_a, response_b)])[0]


@lru_cache(maxsize=1)
def untrained_model() -> EvidenceModel:
    """Evidence with nothing fitted: flat IDF, the bundled MiniLM, no weights (no weighed line).
    What a judge uses when its checkpoint carries no fitted evidence."""
    import numpy as np

    from persrm_core.evidence.signals import ANALYZERS, N_BUCKETS, IdfTable

    return EvidenceModel({n: IdfTable(n, np.ones(N_BUCKETS, dtype=np.float32), 0) for n in ANALYZERS})


def evidence_block(ev: Evidence) -> str:
    """The lines shown to the judge."""
    lines = [r.line() for r in ev.readings]
    if ev.weighed is not None:
        lines.append(ev.weighed.line())
    return "Measured style (similarity to the exemplars):\n" + "\n".join(lines)


def evidence_to_dict(ev: Evidence) -> dict:
    """A JSON-able form (pair dicts carry it into the training process)."""
    return {"signals": {r.name: [r.a, r.b] for r in ev.readings},
            "p_a": None if ev.weighed is None else ev.weighed.a}


def evidence_from_dict(d: dict) -> Evidence:
    readings = tuple(Reading(s, float(d["signals"][s][0]), float(d["signals"][s][1])) for s in SIGNALS)
    p = d.get("p_a")
    return Evidence(readings, None if p is None else Reading("weighed", float(p), 1.0 - float(p)))


def attach_evidence(model: EvidenceModel, pairs: list[dict], progress: bool = False) -> list[dict]:
    """Pair dicts with `evidence` (`evidence_to_dict`) measured on all their exemplars, as the judge
    measures them; one batch for all pairs."""
    evs = read_pairs(model, [(list(p["exemplars"]), p["response_a"], p["response_b"])
                             for p in pairs], progress=progress)
    return [{**p, "evidence": evidence_to_dict(ev)} for p, ev in zip(pairs, evs)]


def evidence_of(pair: dict) -> Evidence:
    """A pair dict's attached evidence, or evidence measured now without fitted weights."""
    if pair.get("evidence"):
        return evidence_from_dict(pair["evidence"])
    return read_pair(list(pair["exemplars"]), pair["response_a"], pair["response_b"])
