"""Synthetic preference pairs from exemplars (the PersRM-R1 data recipe, offline strategies).

Each exemplar text becomes a task: the prompt is its opening, the chosen response is the
author's own continuation. Each task gets negatives from named strategies:

* `cross_author`: another author's real continuation, length-matched and preferably on the
  nearest topic (TF-IDF cosine), so that topic and length do not give the answer away;
* `rule_perturbation`: the author's own continuation rewritten against their habit along named
  personal factors (see `persrm_core.synthesis.perturb`).

Texts are assigned to splits before any pair is made (`plan_splits`), and every text a pair
uses (chosen, negative source, exemplars) comes from texts its split may see, so no eval text
leaks into train. A/B positions are shuffled and balanced within each split.

Every strategy except `cross_author` is author-local: a text's rule, swap and LLM negatives depend
only on the text, the seed and the exemplars shown (the same author's texts), each drawn from its
own random stream (`task_rng`). So an author's author-local rows can be kept and reused while the
author's texts, split plan and the settings are unchanged (`author_local_keys`, the `reuse` of
`synthesize`); cross-author negatives draw on the whole split and are always rebuilt.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import random
from collections import defaultdict
from dataclasses import dataclass, field

from tqdm.auto import tqdm

from persrm_core.records import Exemplar
from persrm_core.synthesis.perturb import perturb
from persrm_core.synthesis.splits import (
    EVAL_SEEN,
    EVAL_UNSEEN,
    TRAIN,
    _cap_words,
    equalize_length,
    plan_splits,
    split_text,
    still_perturbed,
    text_id,
    topic_neighbours,
)
from persrm_core.synthesis.strategies import CROSS_AUTHOR, REGISTRY, check_known, enabled
from persrm_core.synthesis.strategies import strategy as registered


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
    workers: int = 1  # processes that build pairs (forked; the output does not depend on it)


@dataclass(frozen=True)
class Task:
    text_id: str
    author_id: str
    prompt: str
    continuation: str
    split: str


@dataclass
class _World:
    """What building any text's pairs reads (inherited by forked worker processes)."""

    cfg: SynthesisConfig
    tasks: list[Task]
    neighbours: list[list[int]]
    by_split: dict[str, list[int]]
    exemplar_pool: dict[tuple[str, str], list[str]]
    llm: dict[tuple[int, str], list[str]] = field(default_factory=dict)  # (task, strategy) -> outputs
    reused: set[str] = field(default_factory=set)  # authors whose author-local rows are given
    stored: dict[str, dict[str, list[dict]]] = field(default_factory=dict)  # text_id -> strategy -> rows


_WORKER_WORLD: _World | None = None  # set in each forked worker by the pool's initializer, never in the parent


def task_rng(seed: int, tid: str) -> random.Random:
    """A text's own random stream: a text's pairs do not depend on which other texts exist or on
    the order (or the process) they are built in.

    `task_rng(seed, text_id)` draws the text's exemplars (its first and only draw, which
    `_llm_outputs` repeats to know what each pair will show); each negative strategy then draws
    from its own stream `task_rng(seed, f"{text_id}:{strategy}")` (`strategy_rng`), so no strategy's
    pairs depend on how many draws another one made (cross-author draws depend on the whole pool)."""
    return random.Random(f"{seed}:{tid}")


def strategy_rng(seed: int, tid: str, strategy: str) -> random.Random:
    """The random stream of one negative strategy of one text (see `task_rng`)."""
    return task_rng(seed, f"{tid}:{strategy}")


# The fields of a pair row before A/B positions are assigned and exemplar texts attached, in order:
# what `synthesize` takes in `reuse` and gives back in `PairBuild.built_local`.
LOCAL_ROW_FIELDS = ("pair_id", "author_id", "prompt", "chosen", "rejected", "negative_type", "perturbed_factors",
                    "split", "chosen_source", "negative_source", "exemplar_sources")
# Bump when code changes what the author-local strategies make for the same inputs (kept rows go stale).
AUTHOR_LOCAL_VERSION = 1
PARALLEL_MIN_TASKS = 1000  # below this many texts, workers > 1 still builds in-process
CHUNK_TASKS = 500  # texts per work item of the worker pool


def author_local_keys(exemplars: list[Exemplar], cfg: SynthesisConfig, extra: dict | None = None) -> dict[str, str]:
    """Per author, a hash of everything the author's author-local rows (every strategy except
    `cross_author`) depend on: the synthesis settings (all but `workers`, which does not change the
    output), the author-local strategies' bundled data (swap lexicon, LLM prompt templates), the
    code version `AUTHOR_LOCAL_VERSION`, the JSON-able `extra` (the caller adds what it knows matters,
    e.g. the LLM generation settings), and the author's own texts with their planned split. Rows
    kept under an unchanged key are what `synthesize` would build again."""
    settings = {k: v for k, v in dataclasses.asdict(cfg).items() if k != "workers"}
    local = enabled(cfg.negatives, author_local=True)
    common: dict = {"version": AUTHOR_LOCAL_VERSION, "synthesis": settings, "local_counts": local,
                    "extra": extra or {}}
    if "lexicon_swap" in local:
        from persrm_core.synthesis.swap import lexicon_groups

        common["lexicon"] = hashlib.sha1(repr(lexicon_groups()).encode()).hexdigest()
    if llm := sorted(enabled(local, needs_llm=True)):
        from persrm_core.synthesis.templates import STYLE_HINTS, TEMPLATES

        common["templates"] = hashlib.sha1(repr(([TEMPLATES[s] for s in llm], STYLE_HINTS)).encode()).hexdigest()
    common_hash = _digest(common)
    plan = plan_splits(exemplars, cfg)
    texts: dict[str, set[tuple[str, str, str]]] = defaultdict(set)
    for ex in exemplars:
        tid = text_id(ex)
        texts[ex.author_id].add((tid, plan[tid], hashlib.sha1(ex.text.encode()).hexdigest()))
    return {a: _digest({"common": common_hash, "author": a, "texts": sorted(t)}) for a, t in sorted(texts.items())}


def _digest(obj) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, ensure_ascii=False).encode()).hexdigest()


@dataclass
class LLMSource:
    """Where the LLM strategies' outputs come from: a generation backend (`persrm_core.llm.generation`),
    its sampling params, and the request cache (a repeated request is answered from it)."""

    backend: object
    sampling: object = None
    cache_path: object = None


@dataclass
class PairBuild:
    """What `synthesize` made: the pair `rows` (the Pair record fields plus `split`,
    `perturbed_factors` and the text ids each pair uses: `chosen_source`, `negative_source`,
    `exemplar_sources`); `refused`, the LLM outputs the validation refused, per reason (of the texts
    whose LLM negatives were made now); and `built_local`, for every author not reused, the
    author-local rows built now (dicts of `LOCAL_ROW_FIELDS`, before A/B positions and exemplar
    texts are added), which a later build may pass back as `reuse`."""

    rows: list[dict]
    refused: dict[str, int] = field(default_factory=dict)
    built_local: dict[str, list[dict]] = field(default_factory=dict)


def build_pairs(exemplars: list[Exemplar], cfg: SynthesisConfig, progress: bool = True,
                workers: int | None = None) -> list[dict]:
    """The pair rows of `synthesize` for the offline strategies, built from scratch."""
    return synthesize(exemplars, cfg, progress=progress, workers=workers).rows


def synthesize(exemplars: list[Exemplar], cfg: SynthesisConfig, *, llm: LLMSource | None = None,
               reuse: dict[str, list[dict]] | None = None, progress: bool = True,
               workers: int | None = None) -> PairBuild:
    """Make the synthetic pairs of `exemplars`. With `workers` > 1 the texts' pairs are built in
    that many forked processes; the output is the same.

    The LLM strategies (`needs_llm` in `persrm_core.synthesis.strategies`) need `llm`; their outputs are
    generated for all texts first (batched, cached, validated by `persrm_core.synthesis.llm_negatives`).

    Incremental builds: `reuse` maps an author to the author's author-local rows (every strategy
    but `cross_author`) as an earlier build gave them in `built_local`, valid while the author's
    `author_local_keys` key is unchanged. Those rows are taken as they are (no perturbation, swap
    or LLM request for the author's texts) and only the author's cross-author pairs are made; the
    rows are the same as without `reuse`."""
    workers = cfg.workers if workers is None else workers
    check_known(cfg.negatives)
    plan = plan_splits(exemplars, cfg)
    texts = {text_id(e): e for e in exemplars}
    authors = {e.author_id for e in exemplars}
    reused = set(reuse or {}) & authors
    stored: dict[str, dict[str, list[dict]]] = defaultdict(lambda: defaultdict(list))
    for author in reused:
        for row in (reuse or {})[author]:
            stored[row["chosen_source"]][row["negative_type"]].append(row)
    tasks = []
    for tid, ex in sorted(texts.items()):
        cut = split_text(ex.text, cfg)
        if cut is not None:
            tasks.append(Task(tid, ex.author_id, cut[0], cut[1], plan[tid]))
    # Cross-author negatives come from the same split, so neighbours are searched per split.
    by_split: dict[str, list[int]] = defaultdict(list)
    for i, t in enumerate(tasks):
        by_split[t.split].append(i)
    neighbours: list[list[int]] = [[] for _ in tasks]
    if cfg.negatives.get(CROSS_AUTHOR, 0) > 0:
        for idxs in by_split.values():
            local = topic_neighbours([f"{tasks[i].prompt} {tasks[i].continuation}" for i in idxs], seed=cfg.seed)
            for i, near in zip(idxs, local):
                neighbours[i] = [idxs[j] for j in near]
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
    world = _World(cfg, tasks, neighbours, by_split, exemplar_pool, reused=reused,
                   stored={tid: dict(by_type) for tid, by_type in stored.items()})
    llm_counts = enabled(cfg.negatives, needs_llm=True)
    todo = [i for i, t in enumerate(tasks) if t.author_id not in reused]
    refused: dict[str, int] = {}
    if llm_counts and todo:
        world.llm, refused = _llm_outputs(tasks, todo, texts, exemplar_pool, cfg, llm_counts, llm, progress)
    rows: list[dict] = []
    with tqdm(total=len(tasks), desc="synthesising pairs", unit="text", disable=not progress) as bar:
        if workers > 1 and len(tasks) > PARALLEL_MIN_TASKS:
            import multiprocessing as mp

            chunks = [range(lo, min(lo + CHUNK_TASKS, len(tasks))) for lo in range(0, len(tasks), CHUNK_TASKS)]
            # forked workers inherit `world` (no copy is pickled); each keeps it as its own process state
            with mp.get_context("fork").Pool(workers, initializer=_init_worker, initargs=(world,)) as pool:
                for chunk, chunk_rows in zip(chunks, pool.imap(_chunk_pairs, chunks)):
                    rows.extend(chunk_rows)
                    bar.update(len(chunk))
        else:
            for i in range(len(tasks)):
                rows.extend(_task_pairs(world, i))
                bar.update(1)
    fresh: dict[str, list[dict]] = {a: [] for a in sorted(authors - reused)}
    for row in rows:  # before positions and exemplar texts are added to the rows
        if REGISTRY[row["negative_type"]].author_local and row["author_id"] in fresh:
            fresh[row["author_id"]].append(dict(row))
    for row in rows:  # exemplar texts by id: workers send ids, not copies of the texts
        row["exemplars"] = [texts[t].text for t in row["exemplar_sources"]]
    return PairBuild(_assign_positions(rows, random.Random(cfg.seed)), refused, fresh)


def _exemplar_ids(task: Task, pool_of: dict, cfg: SynthesisConfig, rng: random.Random) -> list[str]:
    pool = [t for t in pool_of[(task.author_id, task.split)] if t != task.text_id]
    return rng.sample(pool, k=min(cfg.num_exemplars, len(pool))) if pool else []


def _llm_outputs(tasks, todo, texts, exemplar_pool, cfg, counts, llm: LLMSource | None,
                 progress) -> tuple[dict[tuple[int, str], list[str]], dict[str, int]]:
    """LLM negatives of the tasks at indices `todo` (the others' rows are reused), keyed by (task
    index, strategy), and the count of outputs refused per reason."""
    from persrm_core.synthesis.llm_negatives import llm_negatives

    if llm is None or llm.backend is None:
        raise ValueError(f"synthesis.negatives asks for {', '.join(counts)}, which need an LLM, but the "
                         "generation backend is `rules` (offline only); set generation.backend in params.yaml")
    subset = [tasks[i] for i in todo]
    # The exemplars each text's pairs will show: the first draw of its own random stream, as in _task_pairs.
    shown = [[texts[t].text for t in _exemplar_ids(t, exemplar_pool, cfg, task_rng(cfg.seed, t.text_id))]
             for t in subset]
    kept, refused = llm_negatives(subset, shown, counts, llm.backend, llm.sampling, llm.cache_path,
                                  progress=progress)
    out: dict[tuple[int, str], list[str]] = defaultdict(list)
    for j, strategy, text in kept:
        out[(todo[j], strategy)].append(text)
    return dict(out), dict(refused)


def _init_worker(world: _World) -> None:
    global _WORKER_WORLD
    _WORKER_WORLD = world


def _chunk_pairs(chunk: range) -> list[dict]:
    """A worker's share: the pairs of the texts at `chunk` in the world its initializer set."""
    return [row for i in chunk for row in _task_pairs(_WORKER_WORLD, i)]


def _task_pairs(w: _World, i: int) -> list[dict]:
    cfg, task = w.cfg, w.tasks[i]
    ex_ids = _exemplar_ids(task, w.exemplar_pool, cfg, task_rng(cfg.seed, task.text_id))
    if not ex_ids:
        return []
    # An author whose author-local rows are given: those are taken as they are, only cross-author ones are made.
    stored = w.stored.get(task.text_id, {}) if task.author_id in w.reused else None
    rows = []
    for name, count in cfg.negatives.items():
        if count <= 0:
            continue
        if stored is not None and REGISTRY[name].author_local:
            rows.extend(dict(row) for row in stored.get(name, ()))
            continue
        rng = strategy_rng(cfg.seed, task.text_id, name)
        for k in range(count):
            made = _negative(name, task, w, i, rng, k)
            if made is None:
                continue
            rejected, factors, neg_src = made
            chosen = task.continuation
            if REGISTRY[name].length_matched:
                # Cut to equal length so "pick the longer/shorter" says nothing (rules add emoji or
                # hedges; an LLM continues for as long as it likes).
                chosen, rejected = equalize_length(chosen, rejected)
            if name == "rule_perturbation":
                factors = still_perturbed(chosen, rejected, factors)
                if not factors:  # the cut removed every change (e.g. an emoji at the very end)
                    continue
            rows.append({
                "pair_id": f"{task.author_id}-{task.text_id}-{name}-{k}",
                "author_id": task.author_id,
                "prompt": task.prompt,
                "chosen": chosen,
                "rejected": rejected,
                "negative_type": name,
                "perturbed_factors": factors,
                "split": task.split,
                "chosen_source": task.text_id,
                "negative_source": neg_src,
                "exemplar_sources": ex_ids,
            })
    return rows


def _negative(strategy: str, task: Task, w: _World, i: int, rng: random.Random,
              k: int = 0) -> tuple[str, list[str], str | None] | None:
    cfg = w.cfg
    if registered(strategy).needs_llm:  # an unknown name is a ValueError naming the known ones
        outputs = w.llm.get((i, strategy), [])
        return (outputs[k], [], None) if k < len(outputs) else None
    if strategy == "rule_perturbation":
        made = perturb(task.continuation, rng, n_factors=cfg.perturb_factors)
        return None if made is None else (made[0], made[1], None)
    if strategy == CROSS_AUTHOR:
        target = len(task.continuation.split())
        lo, hi = target * (1 - cfg.length_tolerance), target * (1 + cfg.length_tolerance)
        near = [j for j in w.neighbours[i] if w.tasks[j].author_id != task.author_id]
        # Nearest topics first, skipping one at random now and then so one neighbour is not
        # reused; if no near topic fits the length, any other author's text of the split that does.
        same_split = w.by_split[task.split]
        anywhere = [same_split[rng.randrange(len(same_split))] for _ in range(32)]
        for j in near[: 3 * len(near) // 4 or len(near)] + anywhere:
            other = w.tasks[j]
            if other.author_id == task.author_id:
                continue
            cut = _cap_words(other.continuation, int(hi))
            if lo <= len(cut.split()) <= hi and rng.random() < 0.7:
                return cut, [], other.text_id
        return None
    if strategy == "lexicon_swap":
        from persrm_core.synthesis.swap import minimal_swap

        made = minimal_swap(task.continuation, rng)
        return None if made is None else (made[0], [], None)
    raise ValueError(f"negative strategy {strategy!r} is registered but synthesis has no implementation of it")


def _assign_positions(rows: list[dict], rng: random.Random) -> list[dict]:
    """Put the chosen response at A in exactly half (+/- one) of each split's pairs of each negative
    type, at random, so position is no cue for any split or kind of negative."""
    by_split: dict[tuple[str, str], list[int]] = defaultdict(list)
    for idx, row in enumerate(rows):
        by_split[(row["split"], row["negative_type"])].append(idx)
    for idxs in by_split.values():
        labels = ["A"] * (len(idxs) // 2) + ["B"] * (len(idxs) - len(idxs) // 2)
        rng.shuffle(labels)
        for idx, label in zip(idxs, labels):
            row = rows[idx]
            chosen, rejected = row.pop("chosen"), row.pop("rejected")
            row["label"] = label
            row["response_a"], row["response_b"] = (chosen, rejected) if label == "A" else (rejected, chosen)
    return rows
