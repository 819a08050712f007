"""The offline trace writer: a rationale that weighs the measured evidence of a pair.

It names the readings that favour the verdict and those that disagree, each with its margin as
the evidence block prints it, then the weighed probability, the scores and the verdict:

    For A: style encoder 0.14, word n-grams 0.02, personal factors 1.65.
    Against: character 4-grams 0.01.
    Weighed: A 0.81.
    Scores: A=9 B=1
    Verdict: [[A]]

Every line is true of the pair by construction (tested), in either A/B order. The winner's score
grows with the weighed margin: 6 at P < 0.6, 7, 8, 9, and 10 at P >= 0.9; the loser gets 10 minus
it. Readings that tie are left out of both lists ("Against: none." when none disagrees).
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
    agree = [r for r in ev.readings if r.nearer == verdict]
    against = [r for r in ev.readings if r.nearer not in (None, verdict)]
    lines = [f"For {verdict}: " + (", ".join(f"{r.label} {r.margin:.2f}" for r in agree) or "none") + ".",
             "Against: " + (", ".join(f"{r.label} {r.margin:.2f}" for r in against) or "none") + "."]
    if ev.weighed is not None:
        p = ev.weighed.a if verdict == "A" else ev.weighed.b
        lines.append(f"Weighed: {verdict} {p:.2f}.")
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


ITEM_RE = re.compile(r"^(.+) (\d+\.\d\d)$")


def rationale_problems(rationale: str, ev: Evidence) -> list[str]:
    """The lines of `rationale` that are not true of `ev` (empty = every line is true): each named
    reading must exist, favour the side the line says, by the margin it says; the weighed line must
    state the weighed probability of the side it names."""
    by_label = {r.label: r for r in ev.readings}
    problems = []
    lines = [ln.strip() for ln in rationale.strip().splitlines() if ln.strip()]
    verdict = None
    for ln in lines:
        if m := re.match(r"^For (A|B): (.*)\.$", ln):
            verdict = m.group(1)
            side, items = verdict, m.group(2)
        elif m := re.match(r"^Against: (.*)\.$", ln):
            if verdict is None:
                problems.append(f"{ln!r}: no 'For' line before it")
                continue
            side, items = ("B" if verdict == "A" else "A"), m.group(1)
        elif m := re.match(r"^Weighed: (A|B) (\d\.\d\d)\.$", ln):
            if ev.weighed is None:
                problems.append(f"{ln!r}: no weighed evidence was shown")
            else:
                p = ev.weighed.a if m.group(1) == "A" else ev.weighed.b
                if f"{p:.2f}" != m.group(2):
                    problems.append(f"{ln!r}: the weighed evidence is A {ev.weighed.a:.2f}, B {ev.weighed.b:.2f}")
            continue
        else:
            problems.append(f"{ln!r}: not a rationale line")
            continue
        if items == "none":
            continue
        for item in items.split(", "):
            im = ITEM_RE.match(item)
            r = by_label.get(im.group(1)) if im else None
            if r is None:
                problems.append(f"{ln!r}: {item!r} names no reading")
            elif r.nearer != side or f"{r.margin:.2f}" != im.group(2):
                problems.append(f"{ln!r}: {r.line()}")
    return problems
