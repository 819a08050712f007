"""Pairs from real authors' writing: a directory-per-author corpus (e.g. Reuters C50) turned into
cross-author pairs, for measuring every judge on writers it was never trained on.

These authors are never in training: the judge trains only on the project's own sample
(`paths.raw`), and this corpus is read at evaluation time only, by `pipeline.eval_report`.
"""

from __future__ import annotations

import random
from collections import defaultdict
from pathlib import Path

from persrm_core.ingest import read_exemplars
from persrm_core.records import Pair
from persrm_core.synthesis import EVAL_SEEN, SynthesisConfig, build_pairs


def real_author_pairs(root: str | Path | None, max_pairs: int = 200, num_exemplars: int = 2,
                      seed: int = 13) -> list[Pair] | None:
    """Cross-author pairs from the directory-per-author corpus at `root` (author folders, possibly
    below `train/` and `test/`), or None when `root` is None or does not exist (the caller skips).

    Each pair is one of the author's held-out texts: the prompt is its opening, the chosen response
    its continuation, the rejected one a length-matched continuation by another author on the
    nearest topic (`synthesis.build_pairs`, `cross_author` negatives only); the exemplars are
    `num_exemplars` of the author's other texts. Only `eval_seen` rows are kept, so chosen and
    rejected texts are both held out and never serve as exemplars. `max_pairs` (0 = all) are
    sampled with `seed`, round-robin over authors so each is weighed alike, and A/B positions
    are re-balanced over the sample (half A, half B).

    The judges never train on these authors: training reads only the project's own sample, so
    every author here is unseen by the trained checkpoints. A folder that exists but holds no
    readable corpus raises `InputError` naming the file and the problem.
    """
    if root is None or not Path(root).is_dir():
        return None
    exemplars = read_exemplars(root, min_texts_per_author=1)
    cfg = SynthesisConfig(negatives={"cross_author": 1}, unseen_authors=0, num_exemplars=num_exemplars,
                          max_prompt_words=30, max_response_words=80, seed=seed)
    rows = [r for r in build_pairs(exemplars, cfg, progress=False) if r["split"] == EVAL_SEEN]
    rows.sort(key=lambda r: r["pair_id"])
    rng = random.Random(seed)
    if 0 < max_pairs < len(rows):
        rows = _round_robin(rows, max_pairs, rng)
    labels = ["A"] * (len(rows) // 2) + ["B"] * (len(rows) - len(rows) // 2)
    rng.shuffle(labels)
    pairs = []
    for row, label in zip(rows, labels):
        chosen = row["response_a"] if row["label"] == "A" else row["response_b"]
        rejected = row["response_b"] if row["label"] == "A" else row["response_a"]
        a, b = (chosen, rejected) if label == "A" else (rejected, chosen)
        pairs.append(Pair(row["pair_id"], row["author_id"], list(row["exemplars"]), row["prompt"], a, b, label,
                          "cross_author"))
    return pairs


def _round_robin(rows: list[dict], n: int, rng: random.Random) -> list[dict]:
    """`n` rows, taking one per author in turn (authors and their rows in seeded order)."""
    by_author: dict[str, list[dict]] = defaultdict(list)
    for r in rows:
        by_author[r["author_id"]].append(r)
    authors = sorted(by_author)
    rng.shuffle(authors)
    for a in authors:
        rng.shuffle(by_author[a])
    picked: list[dict] = []
    depth = 0
    while len(picked) < n:
        for a in authors:
            if depth < len(by_author[a]) and len(picked) < n:
                picked.append(by_author[a][depth])
        depth += 1
    return sorted(picked, key=lambda r: r["pair_id"])
