"""The offline trace writer: a rationale built from measured personal factors.

Each factor is measured (`persrm_core.style.measure`) and put into one of three named levels by
the factor's fixed bins (e.g. emoji per 100 words: none / few / many). A rationale line names a
factor on which the two responses fall into different levels, the level of the exemplars'
mean, and the response whose level is nearer to it:

    Emoji: exemplars many; A none; B many. B matches.

so every claim is true of the pair by construction (tested), and short enough for a small model
to learn to write. Lines cite only factors that favour the labelled response; when none does,
the rationale says so instead of inventing a reason. Scores grow with the evidence cited.
"""

from __future__ import annotations

from persrm_core.judge_format import format_completion
from persrm_core.style import FACTORS, measure, profile


def factor_evidence(exemplars: list[str], response_a: str, response_b: str) -> list[dict]:
    """Per factor: levels of the exemplars' mean and of each response, and which is nearer."""
    prof, ma, mb = profile(exemplars), measure(response_a), measure(response_b)
    rows = []
    for f in FACTORS:
        ex_rank = f.rank(prof[f.name])
        ra, rb = f.rank(ma[f.name]), f.rank(mb[f.name])
        da, db = abs(ra - ex_rank), abs(rb - ex_rank)
        nearer = None if da == db else ("A" if da < db else "B")
        rows.append({"factor": f, "exemplars": f.level(prof[f.name]), "A": f.level(ma[f.name]),
                     "B": f.level(mb[f.name]), "nearer": nearer})
    return rows


def write_trace(exemplars: list[str], response_a: str, response_b: str, label: str,
                max_factors: int = 3) -> str:
    """A full judge completion (rationale, scores, verdict) for the labelled pair."""
    evidence = factor_evidence(exemplars, response_a, response_b)
    support = [e for e in evidence if e["nearer"] == label][:max_factors]
    lines = [f"{e['factor'].label.capitalize()}: exemplars {e['exemplars']}; A {e['A']}; B {e['B']}. "
             f"{label} matches." for e in support]
    if not lines:
        lines.append(f"No measured factor separates them; {label} is chosen on wording.")
    strength = min(len(support), 3)
    hi, lo = 6 + max(strength, 1), 4 - max(strength, 1)
    score_a, score_b = (hi, lo) if label == "A" else (lo, hi)
    return format_completion("\n".join(lines), score_a, score_b, label)
