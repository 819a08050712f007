"""The offline trace writer: a rationale that weighs the measured evidence of a pair.

It opens with the weighed probability of the verdict, names the readings for the verdict and those
against it (in the order the evidence block shows them; ties are in neither), then the scores and
the verdict:

    Weighed: A 0.81.
    For: style encoder, word n-grams, personal factors.
    Against: character 4-grams.
    Scores: A=9 B=1
    Verdict: [[A]]

So it names the readings that decide the pair and those that disagree; their margins are in the
evidence block it answers, right above. The `brief` trace (`render.rationale: brief`, the default
in params.yaml) keeps only the Weighed line before the scores. The weighed line comes first and
the trace is short because a judge small enough to train on two CPU cores (~150 steps from random
weights) copies a letter ~10 tokens back but not ~35: across the For and Against lines its verdict
drifts from its own Weighed line (BENCHMARKS.md). Every line is true of the pair by construction
(tested), in either A/B order. The winner's score grows with the weighed probability: 6 at
P < 0.6, 7, 8, 9, and 10 at P >= 0.9; the loser gets 10 minus it.
"""

from __future__ import annotations

import re

from persrm_core.evidence.readings import Evidence
from persrm_core.judging.judge_format import format_completion


def winner_score(p_winner: float) -> int:
    """6 + tenths of the printed probability above 0.5, at most 10."""
    hundredths = round(float(f"{p_winner:.2f}") * 100)
    return 6 + min(4, max(0, (hundredths - 50) // 10))


# The Weighed line, as `rationale_lines` writes it (strict: the truth check) and as a judge may
# state its side with a malformed number (loose: what a constrained closing must agree with).
WEIGHED_LINE = re.compile(r"^Weighed: (A|B) (\d\.\d{2})\.$")
WEIGHED_SIDE = re.compile(r"^Weighed: (A|B)\b", re.MULTILINE)


def stated_verdict(rationale: str) -> str | None:
    """The verdict a rationale states on its Weighed line (the traces' first line), if it has one."""
    m = WEIGHED_SIDE.search(rationale)
    return m.group(1) if m else None


def rationale_lines(ev: Evidence, verdict: str, style: str = "full") -> list[str]:
    lines = []
    if ev.weighed is not None:
        p = ev.weighed.a if verdict == "A" else ev.weighed.b
        lines.append(f"Weighed: {verdict} {ev.weighed.fmt(p)}.")
        if style == "brief":
            return lines
    pro = [r.label for r in ev.readings if r.nearer == verdict]
    con = [r.label for r in ev.readings if r.nearer is not None and r.nearer != verdict]
    lines.append(f"For: {', '.join(pro) or 'none'}.")
    lines.append(f"Against: {', '.join(con) or 'none'}.")
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


def write_trace(ev: Evidence, label: str, style: str = "full") -> str:
    """A full judge completion (rationale, scores, verdict) for the labelled pair."""
    if ev.weighed is not None:
        p = ev.weighed.a if label == "A" else ev.weighed.b
    else:
        votes = [r.nearer for r in ev.readings if r.nearer]
        p = 0.5 + 0.5 * (votes.count(label) - (len(votes) - votes.count(label))) / max(len(votes), 1)
    hi = winner_score(p)
    score_a, score_b = (hi, 10 - hi) if label == "A" else (10 - hi, hi)
    return format_completion("\n".join(rationale_lines(ev, label, style)), score_a, score_b, label)


def rationale_problems(rationale: str, ev: Evidence, verdict: str | None = None) -> list[str]:
    """The lines of `rationale` that are not true of `ev` (empty = every line is true): the Weighed
    line must state the weighed probability of the side it names; each reading named on the For
    (Against) line must exist and favour the Weighed line's side (the other side); a tie is in
    neither; "none" must be true. `verdict`, the judge's choice, when given, is what the Weighed
    line must name, and what For and Against are read against where there is no Weighed line
    (evidence with no fitted weights). A reading may be left out; a line of any other shape is a
    problem."""
    by_label = {r.label: r for r in ev.readings}
    problems, choice = [], verdict
    for ln in (x.strip() for x in rationale.strip().splitlines() if x.strip()):
        if m := WEIGHED_LINE.match(ln):
            verdict = m.group(1)
            if choice is not None and verdict != choice:
                problems.append(f"{ln!r}: the verdict is {choice}")
            if ev.weighed is None:
                problems.append(f"{ln!r}: no weighed evidence was shown")
            elif ev.weighed.fmt(ev.weighed.a if verdict == "A" else ev.weighed.b) != m.group(2):
                problems.append(f"{ln!r}: the weighed evidence is A {ev.weighed.fmt(ev.weighed.a)}, "
                                f"B {ev.weighed.fmt(ev.weighed.b)}")
        elif m := re.match(r"^(For|Against): (.+)\.$", ln):
            if verdict is None:
                problems.append(f"{ln!r}: for or against what? (no Weighed line before it)")
                continue
            other = "B" if verdict == "A" else "A"
            side = verdict if m.group(1) == "For" else other
            if m.group(2) == "none":
                if any(r.nearer == side for r in ev.readings):
                    problems.append(f"{ln!r}: " + "; ".join(r.line() for r in ev.readings if r.nearer == side))
                continue
            names = [n.strip() for n in m.group(2).split(",")]
            for name in names:
                r = by_label.get(name)
                if r is None:
                    problems.append(f"{ln!r}: {name!r} names no reading")
                elif r.nearer != side:
                    problems.append(f"{ln!r}: {r.line()}")
        else:
            problems.append(f"{ln!r}: not a rationale line")
    return problems
