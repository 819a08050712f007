"""Data stages: raw exemplars (ingest, author partitions), synthetic pairs (sharded per author,
reused when unchanged) and the filtered corpus.
"""

from __future__ import annotations

import json
import logging
from collections import Counter
from pathlib import Path

import polars as pl

from persrm_core.atomic import write_jsonl
from persrm_core.config import Settings
from persrm_core.data.corpus import corpus_stats, filter_pairs, write_parquet
from persrm_core.data.ingest import read_exemplars
from persrm_core.errors import InputError
from persrm_core.pipeline.stages import stage
from persrm_core.synthesis.pairs import LLMSource, synthesize
from persrm_core.synthesis.strategies import CROSS_AUTHOR, enabled, uses_llm

log = logging.getLogger(__name__)


def author_file_name(author: str, suffix: str) -> str:
    """`<slug>-<sha1(author)[:8]><suffix>`: readable, safe as a file name, and distinct for authors
    whose slugs collide."""
    import hashlib
    import re

    slug = re.sub(r"[^A-Za-z0-9_.-]+", "_", author).strip("._")[:60] or "author"
    return f"{slug}-{hashlib.sha1(author.encode()).hexdigest()[:8]}{suffix}"


def author_shard(s: Settings, author: str) -> Path:
    """Where one author's ingested exemplars live: `<exemplars dir>/authors/<slug>-<hash>.jsonl`."""
    return s.paths.exemplars.parent / "authors" / author_file_name(author, ".jsonl")


@stage(reads=("ingest", "synthesis"),  # synthesis: which authors can yield no pair of their own
       deps=("raw",),
       outs=("exemplars",))
def raw_exemplars(s: Settings, authors: list[str] | None = None, incoming: Path | None = None) -> dict:
    """Ingest `authors` (all authors in `paths.raw` when None), each on its own: land the author's
    new texts from `incoming/<author>/` into `paths.raw`, validate the author's texts, and write
    them to the author's shard. Then `paths.exemplars` is rebuilt as the union of the shards of
    every author `paths.raw` holds, so the other authors' shards are read, not re-ingested.
    Shards of authors no longer in `paths.raw` are removed; authors in `paths.raw` that have no
    shard yet (never ingested) are reported and left out of the union."""
    from persrm_core.data.ingest import land_incoming, list_authors, read_authors

    present = list_authors(s.paths.raw) if s.paths.raw.exists() else []
    todo = sorted(set(present) if authors is None else set(authors))
    if authors is None and not todo:
        read_exemplars(s.paths.raw, s.min_texts_per_author)  # the reader's own error: missing, empty, ...
    landed = {a: names for a in todo if incoming is not None
              and (names := land_incoming(incoming, s.paths.raw, a))}
    if landed:
        present = list_authors(s.paths.raw)
    ingested = read_authors(s.paths.raw, todo, s.min_texts_per_author)
    for author in todo:  # every author validated above before any shard is written
        write_jsonl(author_shard(s, author), (e.to_dict() for e in ingested[author]))
    shards_dir = s.paths.exemplars.parent / "authors"
    keep = {author_shard(s, a).name for a in present}
    removed = sorted(p.name for p in shards_dir.glob("*.jsonl") if p.name not in keep)
    for name in removed:
        (shards_dir / name).unlink()
    union, not_ingested = [], []
    for author in present:
        shard = author_shard(s, author)
        if author in ingested:  # just written: no need to read it back
            union += ingested[author]
        elif shard.is_file():
            union += read_exemplars(shard, min_texts_per_author=1)
        else:
            not_ingested.append(author)
    write_jsonl(s.paths.exemplars, (e.to_dict() for e in union))
    words = Counter()
    for e in union:
        words[e.author_id] += len(e.text.split())
    per_author = Counter(e.author_id for e in union)
    # Said at ingest, not discovered after a green retrain: who will yield no pairs of their own.
    no_pairs = {a: why for a in todo if (why := why_no_own_pairs(s.synthesis, [e.text for e in ingested[a]]))}
    return {"ingested_authors": todo, "ingested_texts": sum(len(v) for v in ingested.values()),
            "no_own_pairs": no_pairs,
            "landed": landed, "not_ingested": not_ingested, "removed_shards": removed,
            "texts": len(union), "authors": len(per_author),
            "per_author": [{"author_id": a, "texts": n, "mean_words": round(words[a] / n, 1),
                            "ingested_now": a in ingested}
                           for a, n in sorted(per_author.items())]}


@stage(reads=("seed", "synthesis", "generation"),
       deps=("exemplars",),
       outs=("pairs",))
def synthetic_pairs(s: Settings, progress: bool = True) -> dict:
    """Build `paths.pairs`, incrementally per author: each author's author-local rows (every negative
    strategy but `cross_author`, before A/B positions) are kept in a Parquet shard under
    `<pairs dir>/authors/` with a `manifest.json` of author -> {shard, key}, and reused while the
    author's key (`_pair_shard_keys`: settings, seed, the author's texts and planned splits) is
    unchanged. Cross-author pairs draw on the whole split and A/B positions are balanced over it,
    so both are always recomputed; the pairs file is the same as a build from scratch. Shards and
    manifest are published only after the pairs file is written.

    Besides the counts, the summary names the authors whose rows were rebuilt and reused, and the
    number of cross-author pairs (always rebuilt); `llm_outputs_refused` counts the LLM outputs
    refused for the authors rebuilt now (reused authors make no LLM request)."""
    exemplars = synthesis_exemplars(s)
    shards_dir = _pair_shards_dir(s)
    keys = _pair_shard_keys(s, exemplars)
    manifest = _read_pair_manifest(shards_dir)
    local_types = set(enabled(s.synthesis.negatives, author_local=True))
    reused = _reusable_pair_shards(shards_dir, manifest, keys, exemplars, local_types)
    # The backend (for vLLM or transformers: a model load) only when some author's negatives are made now.
    backend = generation_backend(s) if set(keys) - set(reused) and uses_llm(s.synthesis.negatives) else None
    llm = LLMSource(backend, sampling_params(s), s.generation.cache) if backend is not None else None
    made = synthesize(exemplars, s.synthesis, llm=llm, reuse=reused, progress=progress)
    refused, built = made.refused, made.built_local
    df = pl.DataFrame(made.rows, schema_overrides={"negative_source": pl.String})
    write_parquet(df, s.paths.pairs)
    _publish_pair_shards(shards_dir, manifest, keys, built)
    if reused:
        log.info("synthetic pairs: author-local rows of %d author(s) reused, %d rebuilt", len(reused), len(built))
    llm_on = uses_llm(s.synthesis.negatives) and s.generation.backend != "rules"
    return {"pairs": df.height, "backend": s.generation.backend if llm_on else "rules (offline)",
            "llm_outputs_refused": refused,
            "by_negative_type": dict(Counter(df["negative_type"].to_list())),
            "by_split": dict(Counter(df["split"].to_list())),
            "label_A_share": round(float((df["label"] == "A").mean()), 4),
            "authors_rebuilt": sorted(built), "authors_reused": sorted(reused),
            "cross_author_rebuilt": int((df["negative_type"] == CROSS_AUTHOR).sum()),
            "pairs_by_author": dict(sorted(Counter(df["author_id"].to_list()).items())) if df.height else {},
            "authors_without_pairs": authors_without_pairs(s.synthesis, exemplars, df)}


def synthesis_exemplars(s: Settings) -> list:
    """The exemplars synthesis reads: every author's, at most `max_texts_per_author` texts each."""
    exemplars = read_exemplars(s.paths.exemplars, min_texts_per_author=1)
    if s.max_texts_per_author <= 0:
        return exemplars
    kept: Counter = Counter()
    subset = []
    for e in exemplars:
        if kept[e.author_id] < s.max_texts_per_author:
            subset.append(e)
            kept[e.author_id] += 1
    return subset


def authors_without_pairs(cfg, exemplars: list, pairs: pl.DataFrame) -> dict[str, str]:
    """Each ingested author for whom synthesis made no pair, with why (what an ingest that added a
    person who is then never trained on must say)."""
    from persrm_core.synthesis.splits import split_text

    have = set(pairs["author_id"].to_list()) if pairs.height else set()
    texts: dict[str, list[str]] = {}
    for e in exemplars:
        texts.setdefault(e.author_id, []).append(e.text)
    out = {}
    for author, ts in sorted(texts.items()):
        if author in have:
            continue
        out[author] = why_no_own_pairs(cfg, ts) or (
            f"{sum(split_text(t, cfg) is not None for t in ts)} of its {len(ts)} texts can be split, but every "
            "pair built from them was dropped (see the synthesis settings and llm_outputs_refused)")
    return out


def why_no_own_pairs(cfg, texts: list[str]) -> str | None:
    """Why synthesis can build no pair for an author with these texts (None when it can): texts too
    short to cut into a prompt and a response, or a single text (no other one to show as exemplar)."""
    from persrm_core.synthesis.splits import split_text

    if not any(split_text(t, cfg) is not None for t in texts):
        need = cfg.min_prompt_words + cfg.min_response_words
        longest = max((len(t.split()) for t in texts), default=0)
        return (f"none of its {len(texts)} texts is long enough to split into a prompt and a response "
                f"(the longest has {longest} words; synthesis.min_prompt_words + min_response_words = {need})")
    if len(texts) < 2:
        return "a single text: no other text of theirs can serve as an exemplar"
    return None


_PAIR_MANIFEST_VERSION = 1


def _pair_shard_schema() -> dict:
    """The columns of a pair shard: `synthesis.LOCAL_ROW_FIELDS`, each typed (lists of strings or strings)."""
    from persrm_core.synthesis.pairs import LOCAL_ROW_FIELDS

    return {name: (pl.List(pl.String) if name in ("perturbed_factors", "exemplar_sources") else pl.String)
            for name in LOCAL_ROW_FIELDS}


def _pair_shards_dir(s: Settings) -> Path:
    return s.paths.pairs.parent / "authors"


def _pair_shard_name(author: str) -> str:
    return author_file_name(author, ".parquet")


def _pair_shard_keys(s: Settings, exemplars: list) -> dict[str, str]:
    """Per author, the key of the author's author-local rows (`synthesis.author_local_keys`), with
    what the pipeline adds: the per-author text cap and, when an LLM strategy is on, the generation
    settings that change its outputs (not keys, URLs or concurrency)."""
    from persrm_core.synthesis.pairs import author_local_keys

    g = s.generation
    extra: dict = {"max_texts_per_author": s.max_texts_per_author}
    if uses_llm(s.synthesis.negatives):
        extra["generation"] = {"backend": g.backend, "model": g.model, "dtype": g.dtype, "temperature": g.temperature,
                               "top_p": g.top_p, "max_tokens": g.max_tokens, "seed": s.seed}
    return author_local_keys(exemplars, s.synthesis, extra)


def _read_pair_manifest(shards_dir: Path) -> dict[str, dict]:
    """author -> {"shard", "key"}; an absent or unreadable manifest is an empty one (all rebuilt)."""
    path = shards_dir / "manifest.json"
    if not path.is_file():
        return {}
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        authors = data["authors"] if data.get("version") == _PAIR_MANIFEST_VERSION else {}
        return {a: e for a, e in authors.items()
                if isinstance(e, dict) and isinstance(e.get("shard"), str) and isinstance(e.get("key"), str)}
    except (OSError, ValueError, TypeError, KeyError, AttributeError) as exc:
        log.warning("pair shards: manifest %s unreadable (%s); every author is rebuilt", path, exc)
        return {}


def _reusable_pair_shards(shards_dir: Path, manifest: dict[str, dict], keys: dict[str, str],
                          exemplars: list, local_types: set[str]) -> dict[str, list[dict]]:
    """The stored author-local rows of each author whose manifest key matches and whose shard reads
    back whole and consistent; any other author is left out (rebuilt), an unreadable shard logged."""
    from persrm_core.synthesis.splits import text_id

    schema = _pair_shard_schema()
    ids: dict[str, set[str]] = {}
    for e in exemplars:
        ids.setdefault(e.author_id, set()).add(text_id(e))
    out: dict[str, list[dict]] = {}
    for author, key in keys.items():
        entry = manifest.get(author)
        if entry is None or entry["key"] != key:
            continue
        path = shards_dir / entry["shard"]
        try:
            if path.name != entry["shard"] or path.suffix != ".parquet":
                raise ValueError(f"bad shard name {entry['shard']!r}")
            df = pl.read_parquet(path)
            if dict(df.schema) != schema or df.columns != list(schema):
                raise ValueError(f"unexpected columns {df.schema}")
            rows = df.to_dicts()
            if "rows" in entry and entry["rows"] != len(rows):
                raise ValueError(f"{len(rows)} rows, the manifest says {entry['rows']}")
            for r in rows:
                if r["author_id"] != author or r["chosen_source"] not in ids[author] \
                        or r["negative_type"] not in local_types:
                    raise ValueError(f"row {r['pair_id']!r} is not one of this author's author-local rows")
        except Exception as exc:  # a bad shard costs a rebuild of its author, never the run
            log.warning("pair shards: %s of author %r unreadable (%s: %s); rebuilding the author",
                        path, author, type(exc).__name__, exc)
            continue
        out[author] = rows
    return out


def _publish_pair_shards(shards_dir: Path, old: dict[str, dict], keys: dict[str, str],
                         built: dict[str, list[dict]]) -> None:
    """Write the rebuilt authors' shards and the manifest (each atomically), then delete shards no
    entry names (authors gone). The rebuilt authors' old entries are dropped from the manifest
    before their shards are overwritten, so a run killed in between leaves them to be rebuilt, never
    a stale key over new rows."""
    from persrm_core.atomic import write_json

    schema = _pair_shard_schema()
    entries = {a: old[a] for a in keys if a in old and a not in built}
    if set(built) & set(old):
        write_json(shards_dir / "manifest.json", {"version": _PAIR_MANIFEST_VERSION, "authors": entries})
    for author, rows in sorted(built.items()):
        name = _pair_shard_name(author)
        frame = pl.DataFrame([[r[f] for f in schema] for r in rows], schema=schema, orient="row")
        write_parquet(frame, shards_dir / name)
        entries[author] = {"shard": name, "key": keys[author], "rows": len(rows)}
    entries = dict(sorted(entries.items()))
    if built or entries != old:
        write_json(shards_dir / "manifest.json", {"version": _PAIR_MANIFEST_VERSION, "authors": entries})
    named = {e["shard"] for e in entries.values()}
    for path in shards_dir.glob("*.parquet"):
        if path.name not in named:
            path.unlink(missing_ok=True)


def sampling_params(s: Settings):
    from persrm_core.llm.generation import SamplingParams

    g = s.generation
    return SamplingParams(temperature=g.temperature, top_p=g.top_p, max_tokens=g.max_tokens, seed=s.seed)


def generation_backend(s: Settings):
    """The backend of `generation` (reads only that section: synthesis asks for it when a configured
    negative strategy needs an LLM, SFT for teacher traces)."""
    from persrm_core.llm.generation import make_backend

    g = s.generation
    options = {"transformers": {"model": g.model, "dtype": g.dtype, "batch_size": g.batch_size,
                                "trust_remote_code": g.trust_remote_code},
               "openai": {"base_url": g.base_url, "model": g.model, "api_key_env": g.api_key_env,
                          "concurrency": g.concurrency, "timeout_s": g.timeout_s, "max_retries": g.max_retries},
               "vllm": {"model": g.model, "dtype": g.dtype, "trust_remote_code": g.trust_remote_code},
               "rules": {}}
    if g.backend not in options:
        raise InputError("params.yaml", f"generation.backend {g.backend!r} is not one of {', '.join(options)}",
                         "generation")
    return make_backend(g.backend, **options[g.backend])


@stage(reads=("filter",),
       deps=("pairs",),
       outs=("corpus",))
def filtered_corpus(s: Settings) -> dict:
    pairs = pl.read_parquet(s.paths.pairs)
    result = filter_pairs(pairs, s.filter)
    # The corpus gates (leakage, empty splits, balance, schema) are the blocking checks on this asset
    # (persrm_core.data.gates): one place each; a failed one stops every asset downstream.
    write_parquet(result.train, s.paths.corpus / "train.parquet")
    write_parquet(result.eval, s.paths.corpus / "eval.parquet")
    return {**result.summary(), "stats": corpus_stats(pl.concat([result.train, result.eval], how="diagonal_relaxed"))}


def corpus_pairs(path: Path) -> list[dict]:
    return pl.read_parquet(path).to_dicts()


def train_texts_by_author(s: Settings) -> dict[str, list[str]]:
    """Each training-split author's texts: the exemplars of their train pairs (full train texts;
    no eval text is ever an exemplar of a train pair)."""
    df = pl.read_parquet(s.paths.corpus / "train.parquet", columns=["author_id", "exemplars"])
    out: dict[str, set[str]] = {}
    for author, exemplars in df.iter_rows():
        out.setdefault(author, set()).update(exemplars)
    return {a: sorted(t) for a, t in sorted(out.items())}
