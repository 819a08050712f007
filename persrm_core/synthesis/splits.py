"""Which texts a pair may use: the seeded train / eval / unseen-author split of each author's texts,
the topic-nearest texts of other authors (the topic-matched cross-author negatives), and how a
text is cut into a prompt and a response of matched length.
"""

from __future__ import annotations

import bisect
import hashlib
import random
import re
from collections import defaultdict
from typing import TYPE_CHECKING

from persrm_core.evidence.style import measure
from persrm_core.records import Exemplar
from persrm_core.synthesis.perturb import MEASURED_BY

if TYPE_CHECKING:
    from persrm_core.synthesis.pairs import SynthesisConfig

TRAIN, EVAL_SEEN, EVAL_UNSEEN = "train", "eval_seen", "eval_unseen"
SENTENCE_END_RE = re.compile(r"(?<=[.!?])\s+|\n+")
SPACE_RE = re.compile(r"\s")


def text_id(ex: Exemplar) -> str:
    return hashlib.sha1(f"{ex.author_id}\x00{ex.text}".encode()).hexdigest()[:12]


def split_text(text: str, cfg: SynthesisConfig) -> tuple[str, str] | None:
    """Cut a text into (opening, continuation) at a sentence end, else at a word boundary."""
    words = text.split()
    if len(words) < cfg.min_prompt_words + cfg.min_response_words:
        return None
    target = min(max(int(len(words) * cfg.prompt_fraction), cfg.min_prompt_words), cfg.max_prompt_words)
    target = min(target, len(words) - cfg.min_response_words)
    cut, count = None, 0
    for piece in SENTENCE_END_RE.split(text.strip()):
        count += len(piece.split())
        if count >= cfg.min_prompt_words:
            cut = count
            break
    if cut is None or cut > cfg.max_prompt_words or len(words) - cut < cfg.min_response_words:
        cut = target
    prompt, rest = " ".join(words[:cut]), words[cut:]
    return prompt, _cap_words(" ".join(rest), cfg.max_response_words)


def _cap_words(text: str, max_words: int) -> str:
    words = text.split()
    if len(words) <= max_words:
        return text
    clipped = " ".join(words[:max_words])
    end = max(clipped.rfind(". "), clipped.rfind("! "), clipped.rfind("? "))
    return clipped[: end + 1] if end > len(clipped) // 2 else clipped


def equalize_length(a: str, b: str) -> tuple[str, str]:
    """Cut the longer text (in characters) at the word boundary nearest the shorter one's length
    (its own end counts as a boundary), so length says nothing about which one a rule rewrote
    (rules that add emoji or hedges would otherwise make the negative longer)."""
    if len(a) == len(b):
        return a, b
    short, long_ = (a, b) if len(a) < len(b) else (b, a)
    bounds = [m.start() for m in SPACE_RE.finditer(long_)] + [len(long_)]
    at = bisect.bisect_left(bounds, len(short))  # the two boundaries around the short length
    cut = min(bounds[max(at - 1, 0):at + 1], key=lambda i: (abs(i - len(short)), -i))
    cut_text = long_[:cut].rstrip() or long_
    return (short, cut_text) if short is a else (cut_text, short)


def still_perturbed(chosen: str, rejected: str, factors: list[str]) -> list[str]:
    """The factors whose measure still differs between the two texts (register, which has no
    measure of its own, counts while the texts differ)."""
    mc, mr = measure(chosen), measure(rejected)
    return [f for f in factors if (mc[MEASURED_BY[f]] != mr[MEASURED_BY[f]] if f in MEASURED_BY
                                   else chosen != rejected)]


def _rank(seed: int, key: str) -> str:
    return hashlib.sha1(f"{seed}\x00{key}".encode()).hexdigest()


def plan_splits(exemplars: list[Exemplar], cfg: SynthesisConfig) -> dict[str, str]:
    """Map text_id -> split. Unseen authors go whole to eval_unseen; seen authors' texts are
    held out at `eval_fraction` (at least one per author).

    Each decision depends only on the author (and the seed), not on who else is in the corpus: the
    unseen authors are those with the smallest seeded hash of their id, and an author's held-out
    texts come from the author's own random stream. So adding an author's texts later does not
    reshuffle anyone else's split (only if the newcomer's hash ranks among the unseen does one
    unseen author move to the seen ones)."""
    by_author: dict[str, list[str]] = defaultdict(list)
    for ex in exemplars:
        by_author[ex.author_id].append(text_id(ex))
    authors = sorted(by_author)
    n_unseen = min(cfg.unseen_authors, max(len(authors) - 2, 0))
    # A one-text author cannot be an unseen author: with no second text there is no exemplar, so no pair.
    candidates = [a for a in authors if len(set(by_author[a])) >= 2]
    unseen = set(sorted(candidates, key=lambda a: _rank(cfg.seed, a))[:n_unseen])
    plan: dict[str, str] = {}
    for author in authors:
        ids = sorted(set(by_author[author]))
        if author in unseen:
            plan.update({i: EVAL_UNSEEN for i in ids})
            continue
        random.Random(f"{cfg.seed}:{author}").shuffle(ids)
        n_eval = max(1, round(len(ids) * cfg.eval_fraction)) if len(ids) >= 3 else 0
        plan.update({i: (EVAL_SEEN if k < n_eval else TRAIN) for k, i in enumerate(ids)})
    return plan


EXACT_NEIGHBOUR_LIMIT = 4000  # up to this many texts in a split, topic neighbours are exact


NEIGHBOURS = 64  # nearest-topic candidates kept per text


def topic_neighbours(docs: list[str], k: int = NEIGHBOURS, seed: int = 0,
                     exact_limit: int = EXACT_NEIGHBOUR_LIMIT) -> list[list[int]]:
    """For each document, up to `k` other documents ordered by topic similarity (TF-IDF cosine of
    content words). Exact for up to `exact_limit` documents; above it, blocked so that cost grows
    about linearly: a 64-d LSA projection (fitted on a sample) clusters the documents with k-means
    into blocks of about `exact_limit / 2`, and neighbours are searched exactly within each block."""
    import numpy as np
    from sklearn.feature_extraction.text import TfidfVectorizer

    n = len(docs)
    if n < 2:
        return [[] for _ in docs]
    matrix = TfidfVectorizer(stop_words="english", min_df=1, sublinear_tf=True, dtype=np.float32).fit_transform(
        [d.lower() for d in docs])
    blocks = [np.arange(n)] if n <= exact_limit else _topic_blocks(matrix, max(2, 2 * n // exact_limit), seed)
    out: list[list[int]] = [[] for _ in docs]
    for block in blocks:
        kk = min(k, len(block) - 1)
        if kk <= 0:
            continue
        for lo in range(0, len(block), 2048):  # bounded memory: a 2048 x block similarity slab
            rows = block[lo:lo + 2048]
            sims = (matrix[rows] @ matrix[block].T).toarray()
            sims[np.arange(len(rows)), np.arange(lo, lo + len(rows))] = -np.inf  # not oneself
            top = np.argpartition(-sims, kk - 1, axis=1)[:, :kk]
            rank = np.argsort(-np.take_along_axis(sims, top, axis=1), axis=1, kind="stable")
            for r, idx in zip(rows, np.take_along_axis(top, rank, axis=1)):
                out[int(r)] = block[idx].tolist()
    return out


def _topic_blocks(matrix, n_blocks: int, seed: int) -> list:
    import numpy as np
    from sklearn.cluster import MiniBatchKMeans
    from sklearn.decomposition import TruncatedSVD
    from sklearn.preprocessing import normalize

    rng = np.random.default_rng(seed)
    n = matrix.shape[0]
    sample = rng.choice(n, size=min(n, 20000), replace=False)
    svd = TruncatedSVD(n_components=64, random_state=seed).fit(matrix[sample])
    dense = normalize(svd.transform(matrix)).astype(np.float32)
    labels = MiniBatchKMeans(n_clusters=n_blocks, random_state=seed, n_init=1, batch_size=4096).fit_predict(dense)
    cap = 2 * n // n_blocks + 1  # an oversized cluster is cut into chunks so no block explodes
    blocks = []
    for c in range(n_blocks):
        members = np.flatnonzero(labels == c)
        blocks += [members[i:i + cap] for i in range(0, len(members), cap)]
    return [b for b in blocks if len(b)]
