"""Teacher distillation: reasoning traces for SFT written by a larger LLM through a generation
backend (`persrm_core.llm.generation`: vLLM, an OpenAI-compatible server, or transformers).

The teacher reads exactly the judge input the student will read (`templates.teacher_judge`),
analyses the exemplars' personal factors and ends in the project's judge format. **Rejection
sampling**: a pair's trace is kept only when the teacher names the labelled response in both
A/B orders (the pair as given and with A and B swapped), so the student never learns from a
verdict that a position bias or a guess produced. The keep rate is reported.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from persrm_core.judging.judge import _flip
from persrm_core.judging.judge_format import RenderLimits, parse_verdict
from persrm_core.llm.generation import Backend, GenRequest, SamplingParams, generate_cached
from persrm_core.synthesis.templates import TEACHER_JUDGE, render


@dataclass
class TeacherStats:
    pairs: int = 0
    kept: int = 0
    invalid: int = 0  # an order's output did not parse
    wrong: int = 0  # both parsed, at least one named the other response
    inconsistent: int = 0  # the two orders disagreed (a position bias)

    @property
    def keep_rate(self) -> float:
        return round(self.kept / self.pairs, 4) if self.pairs else 0.0

    def as_dict(self) -> dict:
        return {"teacher_pairs": self.pairs, "teacher_kept": self.kept, "teacher_keep_rate": self.keep_rate,
                "teacher_invalid": self.invalid, "teacher_wrong": self.wrong, "teacher_inconsistent": self.inconsistent}


def _request(pair: dict, limits: RenderLimits, swapped: bool) -> GenRequest:
    from persrm_core.evidence.readings import evidence_from_dict

    a, b = (pair["response_b"], pair["response_a"]) if swapped else (pair["response_a"], pair["response_b"])
    ev = None
    if limits.evidence and pair.get("evidence"):
        ev = evidence_from_dict(pair["evidence"])
        ev = ev.swapped() if swapped else ev
    messages = render(TEACHER_JUDGE.name, exemplars=list(pair["exemplars"]), prompt=pair["prompt"],
                      response_a=a, response_b=b, limits=limits, evidence=ev)
    return GenRequest(messages=tuple(messages), template=TEACHER_JUDGE.id)


def teacher_traces(pairs: Sequence[dict], backend: Backend, sampling: SamplingParams, cache_path: str | Path,
                   limits: RenderLimits, progress: bool = True) -> tuple[list[dict], TeacherStats]:
    """The pairs (dicts with the Pair fields) whose teacher verdicts match the label in both orders,
    each with a `trace` key: the teacher's output for the pair as given (rationale, scores,
    verdict), cleaned of anything after the verdict line. Requests are cached and resumable."""
    requests = [_request(p, limits, swapped) for p in pairs for swapped in (False, True)]
    outputs = generate_cached(backend, requests, sampling, cache_path, progress=progress)
    stats, kept = TeacherStats(pairs=len(pairs)), []
    for k, pair in enumerate(pairs):
        first, second = parse_verdict(outputs[2 * k]), parse_verdict(outputs[2 * k + 1])
        if not (first.valid and second.valid):
            stats.invalid += 1
        elif first.choice != _flip(second.choice):
            stats.inconsistent += 1
        elif first.choice != pair["label"]:  # (consistent, so the swapped order was wrong too)
            stats.wrong += 1
        else:
            stats.kept += 1
            text = f"{first.rationale}\nScores: A={int(first.scores[0])} B={int(first.scores[1])}\nVerdict: [[{first.choice}]]"
            kept.append({**pair, "trace": text})
    return kept, stats


def teacher_sample(pairs: Sequence[dict], n: int, seed: int) -> list[dict]:
    """At most `n` of the pairs (all when `n` <= 0), a seeded sample kept in their original order:
    which pairs the teacher is asked about when its requests are the cost (`sft.teacher_pairs`)."""
    if n <= 0 or n >= len(pairs):
        return list(pairs)
    chosen = set(random.Random(seed).sample(range(len(pairs)), n))
    return [p for k, p in enumerate(pairs) if k in chosen]


def with_offline_fallback(pairs: Sequence[dict], taught: Sequence[dict]) -> tuple[list[dict], int]:
    """Every pair in its original order: with the teacher's `trace` where the teacher was kept, as
    it is (so SFT writes the measured offline trace, rejection-sampled) where not; and how many
    fell back. For a weak teacher (a small model rarely right in both orders)."""
    traces = {p["pair_id"]: p["trace"] for p in taught}
    out = [{**p, "trace": traces[p["pair_id"]]} if p["pair_id"] in traces else dict(p) for p in pairs]
    return out, len(pairs) - len(traces)
