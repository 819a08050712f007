"""The offline trace writer: a short rationale built from the measured style evidence of a pair.

It states two measured facts from `persrm_core.evidence` and then the verdict:

    Character 4-gram similarity: nearer B.
    Personal factors: mostly nearer B.
    Scores: A=2 B=8
    Verdict: [[B]]

The first line is the similarity reading (`nearer A`, `nearer B` or `a tie`); the second sums the
surface factors' readings (`mostly nearer A/B`, `evenly split`, or `no difference` when no factor
separates the responses). Both are true of the pair by construction (tested), whichever response
is labelled. Every token of the rationale other than these decisions is fixed, because a judge
small enough to train on two CPU cores learns decisions over its input within minutes but not
to copy arbitrary numbers out of it. Scores grow with the number of lines that agree with the
verdict: 6, 7 or 8 for the chosen response and 4, 3 or 2 for the other.
"""

from __future__ import annotations

from persrm_core.evidence import FactorReading, read_pair
from persrm_core.judge_format import format_completion


def factor_majority(readings: list[FactorReading]) -> str | None:
    """"A" or "B" when more surface factors favour it, "split" on a tie, None when none separates."""
    votes = [r.nearer for r in readings if r.name != "similarity" and r.nearer]
    if not votes:
        return None
    a, b = votes.count("A"), votes.count("B")
    return "split" if a == b else ("A" if a > b else "B")


def rationale_lines(readings: list[FactorReading]) -> list[str]:
    sim = next(r for r in readings if r.name == "similarity")
    majority = factor_majority(readings)
    factors = {None: "no difference", "split": "evenly split"}.get(majority, f"mostly nearer {majority}")
    return [f"Character 4-gram similarity: {'nearer ' + sim.nearer if sim.nearer else 'a tie'}.",
            f"Personal factors: {factors}."]


def consistent_with(readings: list[FactorReading], label: str) -> bool:
    """The rule teacher's rejection test (as in PersRM-R1's rejection sampling, with measured
    evidence in place of an LLM teacher): keep a trace only when neither stated fact favours the
    other response and at least one favours the labelled one, so its verdict follows from it."""
    sim = next(r for r in readings if r.name == "similarity").nearer
    majority = factor_majority(readings)
    other = "B" if label == "A" else "A"
    return other not in (sim, majority) and label in (sim, majority)


def write_trace(exemplars: list[str], response_a: str, response_b: str, label: str,
                readings: list[FactorReading] | None = None) -> str:
    """A full judge completion (rationale, scores, verdict) for the labelled pair."""
    readings = readings if readings is not None else read_pair(exemplars, response_a, response_b)
    sim = next(r for r in readings if r.name == "similarity")
    agree = int(sim.nearer == label) + int(factor_majority(readings) == label)
    hi, lo = 6 + agree, 4 - agree
    score_a, score_b = (hi, lo) if label == "A" else (lo, hi)
    return format_completion("\n".join(rationale_lines(readings)), score_a, score_b, label)
