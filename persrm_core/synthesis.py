"""Synthetic preference pairs from exemplars (the PersRM-R1 data recipe, offline strategies).

Each exemplar text becomes a task: the prompt is its opening, the chosen response is the
author's own continuation. Each task gets negatives from named strategies:

* `cross_author`: another author's real continuation, length-matched and preferably on the
  nearest topic (TF-IDF cosine), so that topic and length do not give the answer away;
* `rule_perturbation`: the author's own continuation rewritten against their habit along named
  personal factors (see `persrm_core.perturb`).

Texts are assigned to splits before any pair is made (`plan_splits`), and every text a pair
uses (chosen, negative source, exemplars) comes from texts its split may see, so no eval text
leaks into train. A/B positions are shuffled and balanced within each split.
"""

from __future__ import annotations

import hashlib
import random
import re
from collections import defaultdict
from dataclasses import dataclass, field

from tqdm.auto import tqdm

from persrm_core.perturb import MEASURED_BY, perturb
from persrm_core.style import measure
from persrm_core.records import Exemplar

TRAIN, EVAL_SEEN, EVAL_UNSEEN = "train", "eval_seen", "eval_unseen"
SENTENCE_END_RE = re.compile(r"(?<=[.!?])\s+|\n+")


@dataclass
class SynthesisConfig:
    seed: int = 13
    num_exemplars: int = 3  # exemplars given with each pair (other texts of the same author)
    negatives: dict[str, int] = field(default_factory=lambda: {"cross_author": 1, "rule_perturbation": 2})
    perturb_factors: int = 2  # personal factors changed by one rule perturbation
    prompt_fraction: float = 0.3  # share of a text's words that form the prompt (opening)
    min_prompt_words: int = 8
    max_prompt_words: int = 45
    min_response_words: int = 25
    max_response_words: int = 120  # long texts (news articles) are cut at a sentence end
    length_tolerance: float = 0.25  # cross-author negative word count within +/- 25% of chosen
    unseen_authors: int = 2  # authors held out of training entirely (eval_unseen)
    eval_fraction: float = 0.2  # share of each seen author's texts held out (eval_seen)


@dataclass(frozen=True)
class Task:
    text_id: str
    author_id: str
    prompt: str
    continuation: str
    split: str


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
    bounds = [i for i, c in enumerate(long_) if c.isspace()] + [len(long_)]
    cut = min(bounds, key=lambda i: (abs(i - len(short)), -i))
    cut_text = long_[:cut].rstrip() or long_
    return (short, cut_text) if short is a else (cut_text, short)


def still_perturbed(chosen: str, rejected: str, factors: list[str]) -> list[str]:
    """The factors whose measure still differs between the two texts (register, which has no
    measure of its own, counts while the texts differ)."""
    mc, mr = measure(chosen), measure(rejected)
    return [f for f in factors if (mc[MEASURED_BY[f]] != mr[MEASURED_BY[f]] if f in MEASURED_BY
                                   else chosen != rejected)]


def plan_splits(exemplars: list[Exemplar], cfg: SynthesisConfig) -> dict[str, str]:
    """Map text_id -> split. Unseen authors go whole to eval_unseen; seen authors' texts are
    held out at `eval_fraction` (at least one per author)."""
    rng = random.Random(cfg.seed)
    by_author: dict[str, list[str]] = defaultdict(list)
    for ex in exemplars:
        by_author[ex.author_id].append(text_id(ex))
    authors = sorted(by_author)
    n_unseen = min(cfg.unseen_authors, max(len(authors) - 2, 0))
    unseen = set(rng.sample(authors, n_unseen))
    plan: dict[str, str] = {}
    for author in authors:
        ids = sorted(set(by_author[author]))
        if author in unseen:
            plan.update({i: EVAL_UNSEEN for i in ids})
            continue
        rng.shuffle(ids)
        n_eval = max(1, round(len(ids) * cfg.eval_fraction)) if len(ids) >= 3 else 0
        plan.update({i: (EVAL_SEEN if k < n_eval else TRAIN) for k, i in enumerate(ids)})
    return plan


def _topic_neighbours(tasks: list[Task]) -> list[list[int]]:
    """For each task, the other tasks ordered by topic similarity (TF-IDF cosine of content words)."""
    from sklearn.feature_extraction.text import TfidfVectorizer

    docs = [f"{t.prompt} {t.continuation}".lower() for t in tasks]
    matrix = TfidfVectorizer(stop_words="english", min_df=1, sublinear_tf=True).fit_transform(docs)
    sims = (matrix @ matrix.T).toarray()
    return [list(reversed(row.argsort())) for row in sims]


def build_pairs(exemplars: list[Exemplar], cfg: SynthesisConfig, progress: bool = True) -> list[dict]:
    """Make pair rows: the Pair record fields plus `split`, `perturbed_factors` and the text ids
    each pair uses (`chosen_source`, `negative_source`, `exemplar_sources`)."""
    rng = random.Random(cfg.seed)
    plan = plan_splits(exemplars, cfg)
    texts = {text_id(e): e for e in exemplars}
    tasks = []
    for tid, ex in sorted(texts.items()):
        cut = split_text(ex.text, cfg)
        if cut is not None:
            tasks.append(Task(tid, ex.author_id, cut[0], cut[1], plan[tid]))
    neighbours = _topic_neighbours(tasks) if len(tasks) > 1 else [[] for _ in tasks]
    # Which texts may serve as exemplars for a pair of each split: train pairs see train texts
    # only; eval_seen pairs may use the author's train texts (a seen author's profile); unseen
    # authors' pairs use their own other eval texts.
    exemplar_pool: dict[tuple[str, str], list[str]] = defaultdict(list)
    for tid, ex in sorted(texts.items()):
        split = plan[tid]
        if split == TRAIN:
            exemplar_pool[(ex.author_id, TRAIN)].append(tid)
            exemplar_pool[(ex.author_id, EVAL_SEEN)].append(tid)
        else:
            exemplar_pool[(ex.author_id, EVAL_UNSEEN)].append(tid)

    rows: list[dict] = []
    for i, task in enumerate(tqdm(tasks, desc="synthesising pairs", unit="text", disable=not progress)):
        pool = [t for t in exemplar_pool[(task.author_id, task.split)] if t != task.text_id]
        if not pool:
            continue
        ex_ids = rng.sample(pool, k=min(cfg.num_exemplars, len(pool)))
        exemplar_texts = [texts[t].text for t in ex_ids]
        for strategy, count in cfg.negatives.items():
            for k in range(count):
                made = _negative(strategy, task, tasks, neighbours[i], cfg, rng)
                if made is None:
                    continue
                rejected, factors, neg_src = made
                chosen = task.continuation
                if strategy == "rule_perturbation":
                    chosen, rejected = equalize_length(chosen, rejected)
                    factors = still_perturbed(chosen, rejected, factors)
                    if not factors:  # the cut removed every change (e.g. an emoji at the very end)
                        continue
                rows.append({
                    "pair_id": f"{task.author_id}-{task.text_id}-{strategy}-{k}",
                    "author_id": task.author_id,
                    "exemplars": exemplar_texts,
                    "prompt": task.prompt,
                    "chosen": chosen,
                    "rejected": rejected,
                    "negative_type": strategy,
                    "perturbed_factors": factors,
                    "split": task.split,
                    "chosen_source": task.text_id,
                    "negative_source": neg_src,
                    "exemplar_sources": ex_ids,
                })
    return _assign_positions(rows, rng)


def _negative(strategy: str, task: Task, tasks: list[Task], order: list[int], cfg: SynthesisConfig,
              rng: random.Random) -> tuple[str, list[str], str | None] | None:
    if strategy == "rule_perturbation":
        made = perturb(task.continuation, rng, n_factors=cfg.perturb_factors)
        return None if made is None else (made[0], made[1], None)
    if strategy == "cross_author":
        target = len(task.continuation.split())
        lo, hi = target * (1 - cfg.length_tolerance), target * (1 + cfg.length_tolerance)
        candidates = [j for j in order if tasks[j].author_id != task.author_id
                      and tasks[j].split == task.split]
        # Nearest topics first; skip one at random now and then so one neighbour is not reused.
        for j in candidates[: 3 * len(candidates) // 4 or len(candidates)]:
            other = _cap_words(tasks[j].continuation, int(hi))
            if lo <= len(other.split()) <= hi and rng.random() < 0.7:
                return other, [], tasks[j].text_id
        return None
    raise ValueError(f"unknown negative strategy {strategy!r} (known: cross_author, rule_perturbation)")


def _assign_positions(rows: list[dict], rng: random.Random) -> list[dict]:
    """Put the chosen response at A in exactly half of each split's pairs (+/- one), at random."""
    by_split: dict[str, list[int]] = defaultdict(list)
    for idx, row in enumerate(rows):
        by_split[row["split"]].append(idx)
    for idxs in by_split.values():
        labels = ["A"] * (len(idxs) // 2) + ["B"] * (len(idxs) - len(idxs) // 2)
        rng.shuffle(labels)
        for idx, label in zip(idxs, labels):
            row = rows[idx]
            chosen, rejected = row.pop("chosen"), row.pop("rejected")
            row["label"] = label
            row["response_a"], row["response_b"] = (chosen, rejected) if label == "A" else (rejected, chosen)
    return rows
