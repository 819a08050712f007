"""The offline trace writer: a rationale built from the measured style evidence of a pair.

Each line cites one reading from `persrm_core.evidence` that favours the labelled response,
exactly as measured, for example

    Character 4-gram similarity to exemplars: A 0.21; B 0.34; nearer B. B matches.
    Emoji: exemplars many; A none; B many; nearer B. B matches.

so every claim is true of the pair by construction (tested), and short enough for a small model
to learn to write. When no reading favours the labelled response, the rationale says so instead
of inventing a reason. Scores grow with the evidence cited.
"""

from __future__ import annotations

from persrm_core.evidence import FactorReading, read_pair
from persrm_core.judge_format import format_completion


def write_trace(exemplars: list[str], response_a: str, response_b: str, label: str, max_factors: int = 3,
                readings: list[FactorReading] | None = None) -> str:
    """A full judge completion (rationale, scores, verdict) for the labelled pair."""
    readings = readings if readings is not None else read_pair(exemplars, response_a, response_b)
    support = [r for r in readings if r.nearer == label]
    # Similarity first when it agrees: it is the signal that carries to unseen writers.
    support.sort(key=lambda r: r.name != "similarity")
    support = support[:max_factors]
    lines = [f"{r.line()}. {label} matches." for r in support]
    if not lines:
        lines.append(f"No measured factor favours {label}; it is chosen on wording.")
    strength = max(min(len(support), 3), 1)
    hi, lo = 6 + strength, 4 - strength
    score_a, score_b = (hi, lo) if label == "A" else (lo, hi)
    return format_completion("\n".join(lines), score_a, score_b, label)
