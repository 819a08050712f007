"""The offline trace writer: a rationale that weighs the measured evidence of a pair.

It opens with the weighed probability of the verdict, then goes through the readings in the order
the evidence block shows them, saying of each whether it is for the verdict or against it, and by
how much (as the block prints it), then the scores and the verdict:

    Weighed: A 0.81.
    style encoder: for, A by 0.14.
    character 4-grams: against, B by 0.01.
    word n-grams: for, A by 0.02.
    function words: a tie.
    personal factors: for, A by 1.65.
    Scores: A=9 B=1
    Verdict: [[A]]

So it names the readings that decide the pair and those that disagree, with their numbers. The
order follows the block line by line, and the weighed line comes first, because a judge small
enough to train on two CPU cores learns to copy what sits at a fixed place in its input long before
it learns to search it. Every line is true of the pair by construction (tested), in either A/B
order. The winner's score grows with the weighed probability: 6 at P < 0.6, 7, 8, 9, and 10 at
P >= 0.9; the loser gets 10 minus it.
"""

from __future__ import annotations

import re

from persrm_core.evidence import Evidence
from persrm_core.judge_format import format_completion


def winner_score(p_winner: float) -> int:
    """6 + tenths of the printed probability above 0.5, at most 10."""
    hundredths = round(float(f"{p_winner:.2f}") * 100)
    return 6 + min(4, max(0, (hundredths - 50) // 10))


def rationale_lines(ev: Evidence, verdict: str) -> list[str]:
    lines = []
    if ev.weighed is not None:
        p = ev.weighed.a if verdict == "A" else ev.weighed.b
        lines.append(f"Weighed: {verdict} {p:.2f}.")
    for r in ev.readings:
        if r.nearer is None:
            lines.append(f"{r.label}: a tie.")
        else:
            stance = "for" if r.nearer == verdict else "against"
            lines.append(f"{r.label}: {stance}, {r.nearer} by {r.margin:.2f}.")
    return lines


def consistent_with(ev: Evidence, label: str) -> bool:
    """The rejection test (PersRM-R1's rejection sampling, with measured evidence in place of an LLM
    teacher): keep a trace only when the weighed evidence favours the labelled response (without
    fitted weights: when more readings favour it than the other), so its verdict follows from it."""
    if ev.weighed is not None:
        return ev.verdict == label
    votes = [r.nearer for r in ev.readings if r.nearer]
    other = "B" if label == "A" else "A"
    return votes.count(label) > votes.count(other)


def write_trace(ev: Evidence, label: str) -> str:
    """A full judge completion (rationale, scores, verdict) for the labelled pair."""
    if ev.weighed is not None:
        p = ev.weighed.a if label == "A" else ev.weighed.b
    else:
        votes = [r.nearer for r in ev.readings if r.nearer]
        p = 0.5 + 0.5 * (votes.count(label) - (len(votes) - votes.count(label))) / max(len(votes), 1)
    hi = winner_score(p)
    score_a, score_b = (hi, 10 - hi) if label == "A" else (10 - hi, hi)
    return format_completion("\n".join(rationale_lines(ev, label)), score_a, score_b, label)


def rationale_problems(rationale: str, ev: Evidence) -> list[str]:
    """The lines of `rationale` that are not true of `ev` (empty = every line is true): each named
    reading must exist and favour the side it says, by the margin it says, and be for or against
    the verdict of the Weighed line as it says; the Weighed line must state the weighed probability
    of the side it names. A reading may be left out; a line of any other shape is a problem."""
    by_label = {r.label: r for r in ev.readings}
    problems, verdict = [], None
    for ln in (x.strip() for x in rationale.strip().splitlines() if x.strip()):
        if m := re.match(r"^Weighed: (A|B) (\d\.\d\d)\.$", ln):
            verdict = m.group(1)
            if ev.weighed is None:
                problems.append(f"{ln!r}: no weighed evidence was shown")
            elif f"{ev.weighed.a if verdict == 'A' else ev.weighed.b:.2f}" != m.group(2):
                problems.append(f"{ln!r}: the weighed evidence is A {ev.weighed.a:.2f}, B {ev.weighed.b:.2f}")
        elif m := re.match(r"^(.+): a tie\.$", ln):
            r = by_label.get(m.group(1))
            if r is None or r.nearer is not None:
                problems.append(f"{ln!r}: " + (r.line() if r else "names no reading"))
        elif m := re.match(r"^(.+): (for|against), (A|B) by (\d+\.\d\d)\.$", ln):
            r = by_label.get(m.group(1))
            if r is None:
                problems.append(f"{ln!r}: names no reading")
            elif r.nearer != m.group(3) or f"{r.margin:.2f}" != m.group(4):
                problems.append(f"{ln!r}: {r.line()}")
            elif verdict is not None and (m.group(2) == "for") != (m.group(3) == verdict):
                problems.append(f"{ln!r}: the weighed verdict is {verdict}")
        else:
            problems.append(f"{ln!r}: not a rationale line")
    return problems
