"""The offline trace writer: a rationale built from measured personal factors.

Every sentence it writes is a measurement of the pair (tested): the exemplars' mean on a
factor, each response's value, and which response is nearer. It cites the factors that
separate the responses most in favour of the labelled one; when no measured factor does, it
says so rather than invent a reason.
"""

from __future__ import annotations

from persrm_core.judge_format import format_completion
from persrm_core.style import FACTORS, measure, profile

MIN_GAP = 0.25  # in units of a factor's scale: smaller differences are not worth citing


def _fmt(x: float) -> str:
    return f"{x:.1f}"


def factor_evidence(exemplars: list[str], response_a: str, response_b: str) -> list[dict]:
    """Per factor: exemplar mean, both values, and the signed advantage of A (in factor scales)."""
    prof, ma, mb = profile(exemplars), measure(response_a), measure(response_b)
    rows = []
    for f in FACTORS:
        da, db = abs(ma[f.name] - prof[f.name]) / f.scale, abs(mb[f.name] - prof[f.name]) / f.scale
        rows.append({"factor": f, "exemplars": prof[f.name], "A": ma[f.name], "B": mb[f.name],
                     "advantage_a": db - da})
    return rows


def write_trace(exemplars: list[str], response_a: str, response_b: str, label: str,
                max_factors: int = 3) -> str:
    """A full judge completion (rationale, scores, verdict) for the labelled pair."""
    sign = 1.0 if label == "A" else -1.0
    evidence = factor_evidence(exemplars, response_a, response_b)
    support = sorted((e for e in evidence if sign * e["advantage_a"] >= MIN_GAP),
                     key=lambda e: -sign * e["advantage_a"])[:max_factors]
    lines = []
    for e in support:
        f = e["factor"]
        lines.append(f"{f.label.capitalize()} ({f.unit}): exemplars {_fmt(e['exemplars'])}, "
                     f"A {_fmt(e['A'])}, B {_fmt(e['B'])}; {label} is closer.")
    if not lines:
        lines.append("No measured personal factor separates the responses clearly; "
                     f"the choice rests on wording, and {label} reads closer to the exemplars.")
    strength = min(len(support), 3)
    hi, lo = 6 + strength, 4 - strength
    score_a, score_b = (hi, lo) if label == "A" else (lo, hi)
    return format_completion("\n".join(lines), score_a, score_b, label)
