"""Metrics of a judge on labelled pairs: accuracy (invalid counts as wrong) with a bootstrap
interval, format-valid rate, position consistency, and breakdowns by negative type and split."""

from __future__ import annotations

import random
from collections import defaultdict
from collections.abc import Sequence

from persrm_core.records import Pair


def bootstrap_ci(hits: Sequence[int], n_boot: int = 1000, seed: int = 0, level: float = 0.95) -> list[float]:
    if not hits:
        return [0.0, 0.0]
    rng = random.Random(seed)
    n = len(hits)
    means = sorted(sum(hits[rng.randrange(n)] for _ in range(n)) / n for _ in range(n_boot))
    lo = means[int((1 - level) / 2 * n_boot)]
    hi = means[min(int((1 + level) / 2 * n_boot), n_boot - 1)]
    return [round(lo, 4), round(hi, 4)]


def _acc(hits: list[int]) -> float:
    return round(sum(hits) / len(hits), 4) if hits else 0.0


def judge_metrics(pairs: Sequence[Pair], judgments: Sequence[dict],
                  splits: dict[str, str] | None = None) -> dict:
    if len(pairs) != len(judgments):
        raise ValueError(f"{len(pairs)} pairs but {len(judgments)} judgments")
    hits, valid = [], []
    by_type: dict[str, list[int]] = defaultdict(list)
    by_split: dict[str, list[int]] = defaultdict(list)
    consistent, debiased = [], []
    for pair, j in zip(pairs, judgments, strict=True):
        if pair.pair_id != j["pair_id"]:
            raise ValueError(f"judgment for {j['pair_id']!r} is not in the order of the pairs ({pair.pair_id!r})")
        hit = int(j["choice"] == pair.label)
        hits.append(hit)
        valid.append(int(j["choice"] is not None))
        by_type[pair.negative_type or "unknown"].append(hit)
        if splits:
            by_split[splits.get(pair.pair_id, "unknown")].append(hit)
        if "choice_swapped" in j:
            consistent.append(int(j["choice"] is not None and j["choice"] == j["choice_swapped"]))
            debiased.append(int(j.get("debiased_choice") == pair.label))
    return {
        "accuracy": _acc(hits),
        "accuracy_ci95": bootstrap_ci(hits),
        "n": len(hits),
        "format_valid_rate": _acc(valid),
        "position_consistency": _acc(consistent) if consistent else None,
        "debiased_accuracy": _acc(debiased) if debiased else None,
        "by_negative_type": {k: _acc(v) for k, v in sorted(by_type.items())},
        "by_split": {k: _acc(v) for k, v in sorted(by_split.items())},
    }
