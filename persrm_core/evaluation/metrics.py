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
    confidence: list[tuple[float, int]] = []  # (probability given to the chosen response, right?)
    true_lines: list[int] = []
    for pair, j in zip(pairs, judgments, strict=True):
        if pair.pair_id != j["pair_id"]:
            raise ValueError(f"judgment for {j['pair_id']!r} is not in the order of the pairs ({pair.pair_id!r})")
        hit = int(j["choice"] == pair.label)
        hits.append(hit)
        valid.append(int(j.get("format_valid", j["choice"] is not None)))  # the judge's own output parsed
        by_type[pair.negative_type or "unknown"].append(hit)
        if (p := _chosen_probability(j)) is not None:
            confidence.append((p, hit))
        if "rationale_true" in j:
            true_lines.append(int(j["rationale_true"]))
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
        "by_negative_type_ci95": {k: bootstrap_ci(v) for k, v in sorted(by_type.items())},
        **calibration(confidence),
        # valid verdicts whose every rationale line is true of the evidence shown (trained judges)
        **({"rationale_true_rate": _acc(true_lines)} if true_lines else {}),
        "by_split": {k: _acc(v) for k, v in sorted(by_split.items())},
    }


def _chosen_probability(j: dict) -> float | None:
    """The probability a judge gave its choice, where its scores are probabilities: two
    non-negative scores summing to 1 (the `combined` judge) or to 10 (the trained judge's
    `Scores: A=.. B=..`, which the traces keep summing to 10). None otherwise."""
    sc, choice = j.get("scores"), j.get("choice")
    if not sc or choice is None or min(sc) < 0:
        return None
    total = sc[0] + sc[1]
    if not (abs(total - 1.0) < 1e-6 or abs(total - 10.0) < 1e-6):
        return None
    return (sc[0] if choice == "A" else sc[1]) / total


MARGIN_BINS = ((0.5, 0.6), (0.6, 0.7), (0.7, 0.8), (0.8, 0.9), (0.9, 1.01))


def calibration(confidence: list[tuple[float, int]]) -> dict:
    """Brier score, expected calibration error (the bins below) and accuracy by the probability
    given to the choice, over the valid judgments whose scores are probabilities; {} when none."""
    if not confidence:
        return {}
    brier = sum((p - hit) ** 2 for p, hit in confidence) / len(confidence)
    by_bin, ece = {}, 0.0
    for lo, hi in MARGIN_BINS:
        inside = [(p, h) for p, h in confidence if lo <= p < hi]
        if inside:
            acc = sum(h for _, h in inside) / len(inside)
            conf = sum(p for p, _ in inside) / len(inside)
            ece += len(inside) / len(confidence) * abs(acc - conf)
            by_bin[f"{lo:.1f}-{min(hi, 1.0):.1f}"] = {"accuracy": round(acc, 4), "n": len(inside)}
    return {"brier": round(brier, 4), "ece": round(ece, 4), "accuracy_by_confidence": by_bin}
