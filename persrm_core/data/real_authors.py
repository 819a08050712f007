"""Pairs from real authors' writing: a directory-per-author corpus (e.g. Reuters C50) turned into
cross-author pairs, for measuring every judge on writers it was never trained on.

In the default profile these authors are never in training (the judge trains on the project's own
sample, `paths.raw`); this corpus is read at evaluation time only, by `pipeline.eval_report`.
"""

from __future__ import annotations

import random
from collections import defaultdict
from pathlib import Path

from persrm_core.data.ingest import read_exemplars
from persrm_core.records import Pair

NEUTRAL_PROMPT = "Write a short piece in your own words."
RANDOM_OTHER = "cross_author_random"  # the rejected text is by a random other author
TOPIC_MATCHED = "cross_author_topic"  # ... by the other author whose text is nearest in topic
RESPONSE_WORDS = 100


def _cut(text: str, n: int) -> str:
    words = text.split()
    return " ".join(words[:n])


def real_author_pairs(root: str | Path | None, max_pairs: int = 200, num_exemplars: int = 2,
                      seed: int = 13, authors: list[str] | None = None,
                      response_words: int = RESPONSE_WORDS) -> list[Pair] | None:
    """Cross-author pairs from the directory-per-author corpus at `root` (author folders, possibly
    below `train/` and `test/`), or None when `root` is None or does not exist (the caller skips).

    Each pair answers a neutral prompt: the chosen response is the first `response_words` words of
    one of the author's texts, the rejected one the first words of another author's text, cut to
    the same length; the exemplars are `num_exemplars` of the author's other texts, never a
    response. Pairs alternate between two kinds of negative, recorded in `negative_type`:
    `cross_author_random` (a random other author) and `cross_author_topic` (the other author's
    text nearest in topic, word TF-IDF cosine), so topic alone cannot decide the harder half.
    `max_pairs` (0 = one per text) are taken round-robin over authors in seeded order, so each
    author is weighed alike; A/B positions are half A, half B. `authors` limits the authors whose
    texts are the chosen responses (all others may still serve as negatives).

    A folder that exists but holds no readable corpus raises `InputError` naming the file.
    """
    if root is None or not Path(root).is_dir():
        return None
    exemplars = read_exemplars(root, min_texts_per_author=1)
    by_author: dict[str, list[str]] = defaultdict(list)
    for e in exemplars:
        if len(e.text.split()) >= response_words // 2:
            by_author[e.author_id].append(e.text)
    usable = sorted(a for a, ts in by_author.items() if len(ts) >= 2)
    if len(usable) < 2:
        return []
    rng = random.Random(seed)
    texts = [(a, t) for a in usable for t in sorted(by_author[a])]
    near = _topic_nearest(texts)
    targets = sorted(set(usable) & set(authors)) if authors is not None else usable
    order = list(targets)
    rng.shuffle(order)
    per_author = {a: [i for i, (b, _) in enumerate(texts) if b == a] for a in usable}
    for a in order:
        rng.shuffle(per_author[a])
    limit = max_pairs if max_pairs > 0 else sum(len(per_author[a]) for a in order)
    rows, depth = [], 0
    while len(rows) < limit and depth < max(len(per_author[a]) for a in order):
        for a in order:
            if depth >= len(per_author[a]) or len(rows) >= limit:
                continue
            i = per_author[a][depth]
            kind = TOPIC_MATCHED if len(rows) % 2 else RANDOM_OTHER
            if kind == TOPIC_MATCHED:
                j = near[i]
            else:
                other = rng.choice([b for b in usable if b != a])
                j = rng.choice(per_author[other])
            n = min(response_words, len(texts[i][1].split()), len(texts[j][1].split()))
            chosen, rejected = _cut(texts[i][1], n), _cut(texts[j][1], n)  # same length: length decides nothing
            pool = [k for k in per_author[a] if k != i]
            ex = [texts[k][1] for k in rng.sample(pool, k=min(num_exemplars, len(pool)))]
            rows.append((f"real-{a}-{depth}", a, ex, chosen, rejected, kind))
        depth += 1
    labels = ["A"] * (len(rows) // 2) + ["B"] * (len(rows) - len(rows) // 2)
    rng.shuffle(labels)
    pairs = []
    for (pid, a, ex, chosen, rejected, kind), label in zip(rows, labels):
        ra, rb = (chosen, rejected) if label == "A" else (rejected, chosen)
        pairs.append(Pair(pid, a, ex, NEUTRAL_PROMPT, ra, rb, label, kind))
    return sorted(pairs, key=lambda p: p.pair_id)


def _topic_nearest(texts: list[tuple[str, str]]) -> list[int]:
    """For each text, the index of the most similar text (word TF-IDF cosine) by another author."""
    import numpy as np
    from sklearn.feature_extraction.text import TfidfVectorizer

    m = TfidfVectorizer(stop_words="english", sublinear_tf=True, min_df=2).fit_transform(t for _, t in texts)
    sims = (m @ m.T).toarray()
    authors = np.array([a for a, _ in texts])
    sims[authors[:, None] == authors[None, :]] = -1.0
    return [int(j) for j in sims.argmax(axis=1)]
