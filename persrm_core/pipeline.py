"""The stages of the chain as plain functions of `Settings`: each reads its inputs from their
artifact paths, publishes its outputs atomically, and returns a summary for metadata.

Dagster assets (`assets/`) call these; `persrm run` and `dvc repro` reach them through Dagster.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import logging
import math
import random
import shutil
from collections import Counter
from pathlib import Path

import polars as pl

from persrm_core.atomic import atomic_dir, write_jsonl
from persrm_core.config import Settings
from persrm_core.corpus import check_no_leakage, corpus_stats, filter_pairs, write_parquet
from persrm_core.errors import InputError
from persrm_core.ingest import read_exemplars
from persrm_core.records import Pair, pair_from_dict
from persrm_core.strategies import CROSS_AUTHOR, enabled, uses_llm
from persrm_core.synthesis import LLMSource, synthesize

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


def raw_exemplars(s: Settings, authors: list[str] | None = None, incoming: Path | None = None) -> dict:
    """Ingest `authors` (all authors in `paths.raw` when None), each on its own: land the author's
    new texts from `incoming/<author>/` into `paths.raw`, validate the author's texts, and write
    them to the author's shard. Then `paths.exemplars` is rebuilt as the union of the shards of
    every author `paths.raw` holds, so the other authors' shards are read, not re-ingested.
    Shards of authors no longer in `paths.raw` are removed; authors in `paths.raw` that have no
    shard yet (never ingested) are reported and left out of the union."""
    from persrm_core.ingest import land_incoming, list_authors, read_authors

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
    backend = generation_backend(s) if set(keys) - set(reused) else None
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
    from persrm_core.synthesis import split_text

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
    from persrm_core.synthesis import split_text

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
    from persrm_core.synthesis import LOCAL_ROW_FIELDS

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
    from persrm_core.synthesis import author_local_keys

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
    from persrm_core.synthesis import text_id

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
    from persrm_core.generation import SamplingParams

    g = s.generation
    return SamplingParams(temperature=g.temperature, top_p=g.top_p, max_tokens=g.max_tokens, seed=s.seed)


def generation_backend(s: Settings, needed: bool | None = None):
    """The backend of `generation`; by default built only when a configured negative strategy
    needs an LLM (`needed=True` builds it regardless, e.g. for teacher traces)."""
    if needed is None:
        needed = uses_llm(s.synthesis.negatives)
    if not needed:
        return None
    from persrm_core.generation import make_backend

    g = s.generation
    options = {"transformers": {"model": g.model, "dtype": g.dtype, "batch_size": g.batch_size,
                                "trust_remote_code": s.base_model.trust_remote_code},
               "openai": {"base_url": g.base_url, "model": g.model, "api_key_env": g.api_key_env,
                          "concurrency": g.concurrency, "timeout_s": g.timeout_s, "max_retries": g.max_retries},
               "vllm": {"model": g.model, "dtype": g.dtype, "trust_remote_code": s.base_model.trust_remote_code},
               "rules": {}}
    if g.backend not in options:
        raise InputError("params.yaml", f"generation.backend {g.backend!r} is not one of {', '.join(options)}",
                         "generation")
    return make_backend(g.backend, **options[g.backend])


def filtered_corpus(s: Settings) -> dict:
    pairs = pl.read_parquet(s.paths.pairs)
    result = filter_pairs(pairs, s.filter)
    problems = check_no_leakage(result.train, result.eval)
    if problems:
        raise RuntimeError("filtered corpus still leaks: " + "; ".join(problems))
    if result.train.height == 0 or result.eval.height == 0:
        raise RuntimeError(f"filtered corpus has an empty split (train {result.train.height}, "
                           f"eval {result.eval.height}); see the filter rules' removal counts")
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


def style_encoder(s: Settings, progress: bool = True) -> dict:
    """Fine-tune the bundled MiniLM contrastively on the training split's authors, less the
    calibration authors (`style_encoder.calibration_authors`), into `paths.style_encoder`."""
    from persrm_core.style_encoder import calibration_authors, train_style_encoder

    by_author = train_texts_by_author(s)
    held = calibration_authors(list(by_author), s.style_encoder.calibration_fraction, s.seed)
    train = {a: t for a, t in by_author.items() if a not in held}
    with atomic_dir(s.paths.style_encoder) as tmp:
        out = train_style_encoder(train, tmp, s.style_encoder, progress=progress)
        (tmp / "persrm_style_encoder.json").write_text(json.dumps(
            {"calibration_authors": held, "trained_on_authors": sorted(train),
             **{k: v for k, v in out.items() if k != "curve"}}, indent=1), encoding="utf-8")
    return {"path": str(s.paths.style_encoder), "calibration_authors": held, **out}


def evidence_model(s: Settings, progress: bool = True) -> dict:
    """Fit the evidence the judge reads, into `paths.evidence`: IDF tables on every training-split
    text, the style encoder of `paths.style_encoder`, and the `combined` weights fitted on the train
    pairs of the calibration authors (all train pairs when there are none), cross-author pairs
    weighed up (`evidence.cross_author_weight`)."""
    from persrm_core.combined import fit_combined, prob_a
    from persrm_core.signals import EvidenceModel, fit_idf

    enc_meta_path = s.paths.style_encoder / "persrm_style_encoder.json"
    if not enc_meta_path.is_file():
        raise InputError(s.paths.style_encoder, "no trained style encoder here; materialize style_encoder first")
    enc_meta = json.loads(enc_meta_path.read_text(encoding="utf-8"))
    train = corpus_pairs(s.paths.corpus / "train.parquet")
    texts = sorted({t for p in train for t in (p["response_a"], p["response_b"], *p["exemplars"])})
    held = set(enc_meta.get("calibration_authors") or [])
    fit = [p for p in train if p["author_id"] in held] or train
    if s.evidence.fit_negative_types:
        fit = [p for p in fit if p["negative_type"] in s.evidence.fit_negative_types] or fit
    rng = random.Random(s.seed)
    if 0 < s.evidence.fit_pairs < len(fit):
        fit = rng.sample(fit, s.evidence.fit_pairs)
    model = EvidenceModel(fit_idf(texts), encoder_dir=s.paths.style_encoder)
    rows = model.signals([(p["exemplars"], p["response_a"], p["response_b"]) for p in fit], progress=progress)
    weights = [s.evidence.cross_author_weight if p["negative_type"] == CROSS_AUTHOR else 1.0 for p in fit]
    model.combined = fit_combined(rows, [p["label"] for p in fit], weights, l2=s.evidence.l2)
    by_type: dict[str, list[bool]] = {}
    for p, r in zip(fit, rows):
        by_type.setdefault(p["negative_type"], []).append((prob_a(model.combined, r) > 0.5) == (p["label"] == "A"))
    model.meta = {"idf_texts": len(texts), "fit_pairs": len(fit), "fit_authors": sorted({p["author_id"] for p in fit}),
                  "fit_accuracy_by_negative_type": {k: round(sum(v) / len(v), 4) for k, v in sorted(by_type.items())}}
    with atomic_dir(s.paths.evidence) as tmp:
        model.save(tmp)
    return {"path": str(s.paths.evidence), "weights": model.combined["weights"],
            "fit_accuracy": model.combined["train_accuracy"], **model.meta}


def with_evidence(s: Settings, pairs: list[dict]) -> list[dict]:
    """Pairs with their evidence attached (`evidence.attach_evidence`) from `paths.evidence`, or as
    they are when the judge is shown no evidence."""
    if not s.render.evidence:
        return pairs
    from persrm_core.evidence import attach_evidence
    from persrm_core.signals import EvidenceModel

    return attach_evidence(EvidenceModel.load(s.paths.evidence), pairs)


def publish_evidence(s: Settings, checkpoint: Path) -> None:
    """Copy the fitted evidence into a checkpoint (`<checkpoint>/evidence/`), so a judge loaded from
    the folder alone reads the evidence it was trained on."""
    from persrm_core.judge import EVIDENCE_DIR

    if s.render.evidence and s.paths.evidence.is_dir():
        shutil.copytree(s.paths.evidence, Path(checkpoint) / EVIDENCE_DIR, dirs_exist_ok=True)


BASE_REF = "persrm_base_ref.json"  # in paths.base_model when the base is not built here


def base_model(s: Settings) -> dict:
    """Build the offline `tiny` base from train-split text only, or record a hub id / path."""
    if s.base_model.name != "tiny":
        from persrm_core.model import resolve_model

        ref = {"base_model": s.base_model.name, "built": False, "found_at": str(resolve_model(s.base_model.name))}
        # A reference, not the weights: the stage's DVC output exists whatever the base, and a changed
        # base (name or where it resolves) is a changed output.
        with atomic_dir(s.paths.base_model) as tmp:
            (tmp / BASE_REF).write_text(json.dumps(ref, indent=1), encoding="utf-8")
        return ref
    from persrm_core.model import build_tiny
    from persrm_core.training import sft_rows

    train = corpus_pairs(s.paths.corpus / "train.parquet")
    texts = sorted({t for p in train for t in (p["prompt"], p["response_a"], p["response_b"], *p["exemplars"])})
    # Judge-format text too, so its words are single tokens: train pairs rendered as the judge reads
    # them, with evidence of seeded random readings (only its words and layout matter here; measuring
    # the real evidence would load the style encoder for a tokenizer).
    texts += [r["completion"][0]["content"] + "\n" + r["prompt"][-1]["content"]
              for r in sft_rows(_format_sample_evidence(train[:400], s.seed), s.render)]
    with atomic_dir(s.paths.base_model) as tmp:
        build_tiny(texts, tmp, s.base_model.tiny)
        n_params = _count_params(tmp)
    return {"base_model": str(s.paths.base_model), "built": True, "parameters": n_params,
            "tokenizer_training_texts": len(texts)}


def _format_sample_evidence(pairs: list[dict], seed: int) -> list[dict]:
    from persrm_core.signals import SIGNALS

    rng = random.Random(seed)
    return [{**p, "evidence": {"signals": {n: [round(rng.random(), 2), round(rng.random(), 2)] for n in SIGNALS},
                               "p_a": round(rng.random(), 2)}} for p in pairs]


def base_model_ref(s: Settings) -> str:
    """What training and judging load as the base: the built `tiny`, a bundled model's converted
    folder, or the name as given (a folder or a cached hub id)."""
    from persrm_core.bundled_lm import locate

    return str(s.paths.base_model) if s.base_model.name == "tiny" else locate(s.base_model.name)


def _count_params(model_dir: Path) -> int:
    from safetensors import safe_open

    total = 0
    for f in Path(model_dir).glob("*.safetensors"):
        with safe_open(str(f), "pt") as st:
            total += sum(math.prod(st.get_slice(k).get_shape()) for k in st.keys())
    return total


def _curve_summary(log: list[dict], keys: tuple[str, ...]) -> dict:
    out = {}
    for k in keys:
        pts = [h[k] for h in log if k in h]
        if pts:
            out[f"{k.replace('/', '_')}_first"] = round(float(pts[0]), 4)
            out[f"{k.replace('/', '_')}_last"] = round(float(pts[-1]), 4)
    return out


def sft_checkpoint(s: Settings) -> dict:
    from persrm_core.training import train_sft

    train = with_evidence(s, corpus_pairs(s.paths.corpus / "train.parquet"))
    teacher: dict = {}
    if s.sft.traces == "teacher":
        from persrm_core.teacher import teacher_sample, teacher_traces

        if s.generation.backend == "rules":
            raise InputError("params.yaml", "sft.traces is teacher but generation.backend is rules (no LLM)", "sft")
        asked = teacher_sample(train, s.sft.teacher_pairs, s.sft.seed)
        kept, stats = teacher_traces(asked, generation_backend(s, needed=True), sampling_params(s),
                                     s.generation.cache, s.render)
        teacher = stats.as_dict()
        if s.sft.teacher_fallback == "offline":  # the rest get the measured offline trace (rejection-sampled)
            from persrm_core.teacher import with_offline_fallback

            kept, teacher["offline_fallback_pairs"] = with_offline_fallback(train, kept)
        train = kept
        if not train:
            raise RuntimeError(f"the teacher's verdicts matched the label in both orders for none of "
                               f"{stats.pairs} train pairs: {teacher} (sft.teacher_fallback: offline trains "
                               "the rest on offline traces)")
    with atomic_dir(s.paths.sft) as tmp:
        # Checkpoints live beside the target, outside the atomic temp dir, so a killed run resumes.
        log = train_sft(base_model_ref(s), train, tmp, _logged(s, s.sft), s.render, work_dir=_work_dir(s.paths.sft))
        _clean_trainer_files(tmp)
        publish_evidence(s, tmp)
    kept = next((h for h in log if "trace_keep_rate" in h), {})
    return {"checkpoint": str(s.paths.sft), "train_pairs": len(train), "traces": kept.get("traces"), **teacher,
            "trace_keep_rate": kept.get("trace_keep_rate"),
            **_curve_summary(log, ("loss", "mean_token_accuracy")), "curve": _points(log, "loss")}


def rft_checkpoint(s: Settings) -> dict:
    from persrm_core.training import train_grpo

    train = rft_curriculum(with_evidence(s, corpus_pairs(s.paths.corpus / "train.parquet")), s.seed)
    with atomic_dir(s.paths.rft) as tmp:
        log = train_grpo(str(s.paths.sft), train, tmp, _logged(s, s.rft), s.render, work_dir=_work_dir(s.paths.rft))
        _clean_trainer_files(tmp)
        publish_evidence(s, tmp)
    return {"checkpoint": str(s.paths.rft), "rft_pairs": len(train),
            **_curve_summary(log, ("reward", "completions/mean_length")),
            "curve": _points(log, "reward")}


def rft_curriculum(pairs: list[dict], seed: int, easy_share: float = 0.25) -> list[dict]:
    """The RFT pairs: those whose readings disagree (some favour A, some B) or whose weighed evidence
    is unsure (P within 0.2 of a coin), plus easy ones worth `easy_share` of them so the judge
    keeps its easy cases; GRPO spends its steps where copying the weighed line is not enough
    (P-GenRM's hard negatives). Every pair when fewer than 16 are hard."""
    from persrm_core.evidence import evidence_of

    def hard(p: dict) -> bool:
        if not p.get("evidence"):
            return False
        ev = evidence_of(p)
        sides = {r.nearer for r in ev.readings if r.nearer}
        return len(sides) > 1 or (ev.weighed is not None and abs(ev.weighed.a - 0.5) < 0.2)

    hard_pairs = [p for p in pairs if hard(p)]
    if len(hard_pairs) < 16:
        return pairs
    easy = [p for p in pairs if not hard(p)]
    random.Random(seed).shuffle(easy)
    return hard_pairs + easy[: int(len(hard_pairs) * easy_share)]


def _logged(s: Settings, cfg):
    """A training section with its log folder: `logging_dir` as set, else data/reports/tensorboard
    (beside the eval report) when an integration such as TensorBoard is on."""
    import dataclasses

    from persrm_core.training import reporters

    if cfg.logging_dir or not reporters(cfg):
        return cfg
    return dataclasses.replace(cfg, logging_dir=str(s.paths.report.parent / "tensorboard"))


def _work_dir(target: Path) -> Path:
    return target.parent / f".{target.name}-checkpoints"


def _points(log: list[dict], key: str) -> list[tuple[int, float]]:
    return [(int(h["step"]), float(h[key])) for h in log if key in h and "step" in h]


def _clean_trainer_files(out: Path) -> None:
    for name in ("training_args.bin",):  # pickled by Trainer; nothing here needs it
        (out / name).unlink(missing_ok=True)
    for ckpt in out.glob("checkpoint-*"):
        shutil.rmtree(ckpt, ignore_errors=True)


def eval_pairs(s: Settings) -> tuple[list[Pair], dict[str, str]]:
    """The eval split, subsampled to `eval.max_pairs` evenly across split and negative type."""
    rows = corpus_pairs(s.paths.corpus / "eval.parquet")
    if 0 < s.eval.max_pairs < len(rows):
        rng = random.Random(s.seed)
        groups: dict[tuple, list[dict]] = {}
        for r in rows:
            groups.setdefault((r["split"], r["negative_type"]), []).append(r)
        for g in groups.values():
            rng.shuffle(g)
        picked, i = [], 0
        while len(picked) < s.eval.max_pairs:
            for g in groups.values():
                if i < len(g) and len(picked) < s.eval.max_pairs:
                    picked.append(g[i])
            i += 1
        rows = sorted(picked, key=lambda r: r["pair_id"])
    pairs = [pair_from_dict(r, s.paths.corpus / "eval.parquet", f"row {i}") for i, r in enumerate(rows)]
    return pairs, {r["pair_id"]: r["split"] for r in rows}


def real_author_eval_pairs(s: Settings) -> tuple[list[Pair], str | None]:
    """Pairs from the real-author corpus of `eval.real_authors` (`persrm_core.real_authors`), or no
    pairs and the reason the report gives for skipping that section."""
    from persrm_core.errors import InputError
    from persrm_core.real_authors import real_author_pairs

    ra = s.eval.real_authors
    if ra.dir is None:
        return [], "eval.real_authors.dir is empty in params.yaml (turned off)"
    authors = None
    if ra.only_unseen:  # a profile trained on this corpus: only the authors it never trained on
        eval_df = pl.read_parquet(s.paths.corpus / "eval.parquet", columns=["author_id", "split"])
        authors = sorted(set(eval_df.filter(pl.col("split") == "eval_unseen")["author_id"].to_list()))
        if not authors:
            return [], "eval.real_authors.only_unseen is set but the corpus holds no unseen author"
    try:
        real = real_author_pairs(ra.dir, ra.max_pairs, ra.num_exemplars, s.seed, authors=authors)
    except InputError as exc:  # an unreadable optional corpus should not cost the whole evaluation
        log.warning("real-authors evaluation skipped: %s", exc)
        return [], f"the corpus could not be read: {exc}"
    if real is None:
        return [], f"no corpus at {ra.dir}"
    if not real:
        return [], f"no cross-author pairs could be built from {ra.dir} (too few or too short texts)"
    return real, None


def eval_report(s: Settings) -> dict:
    from persrm_core.judge import GenerationSettings, ModelJudge
    from persrm_core.metrics import judge_metrics
    from persrm_core.report import NO_EVIDENCE, headline_rows, pick_examples, write_report

    pairs, splits = eval_pairs(s)
    real, real_skipped = real_author_eval_pairs(s)
    gen = GenerationSettings(batch_size=s.eval.batch_size, max_new_tokens=s.eval.max_new_tokens,
                             engine=s.eval.engine, closing=s.eval.closing)
    judgments: dict[str, list[dict]] = {}
    real_judgments: dict[str, list[dict]] = {}
    judges = eval_judges(s, gen)
    for name, judge in judges.items():  # one loop for model judges and baselines alike
        judgments[name] = judge.judge(pairs, both_orders=s.eval.both_orders)
        if real and name != "base":  # the untrained base is judged on the eval split only (it never parses)
            real_judgments[name] = judge.judge(real, both_orders=s.eval.both_orders)
        if isinstance(judge, ModelJudge) and name in s.eval.without_evidence and s.render.evidence:
            blind = copy.copy(judge)  # the loaded model again (not a second copy in memory), no evidence shown
            blind.limits, blind.evidence = dataclasses.replace(judge.limits, evidence=False), None
            judgments[name + NO_EVIDENCE] = blind.judge(pairs, both_orders=s.eval.both_orders)
            if real and name != "base":
                real_judgments[name + NO_EVIDENCE] = blind.judge(real, both_orders=s.eval.both_orders)
    metrics = {"judges": {n: judge_metrics(pairs, j, splits) for n, j in judgments.items()},
               "settings": {"profile": s.profile, "eval_pairs": len(pairs), "eval_data": eval_data_digest(pairs),
                            "base_model": s.base_model.name, "both_orders": s.eval.both_orders}}
    metrics["by_exemplar_count"] = _by_exemplar_count(s, pairs, judges, judgments)
    if real:
        metrics["real_authors"] = {"source": str(s.eval.real_authors.dir), "pairs": len(real),
                                   "authors": len({p.author_id for p in real}),
                                   "unseen_by_training": bool(s.eval.real_authors.only_unseen
                                                              or str(s.paths.raw) != str(s.eval.real_authors.dir)),
                                   "judges": {n: judge_metrics(real, j) for n, j in real_judgments.items()}}
    else:
        metrics["real_authors"] = {"skipped": real_skipped}
    curves = {}
    for stage, path in (("sft", s.paths.sft), ("rft", s.paths.rft)):
        log_file = path / "training_log.json"
        curves[stage] = json.loads(log_file.read_text()) if log_file.exists() else []
    examples = pick_examples(pairs, judgments.get("rft", []), s.eval.examples, "rft")
    with atomic_dir(s.paths.report) as tmp:
        files = write_report(tmp, metrics, curves, examples)
        write_jsonl(tmp / "judgments.jsonl",
                    [*({"judge": n, "eval_set": "eval", **j} for n, js in judgments.items() for j in js),
                     *({"judge": n, "eval_set": "real_authors", **j} for n, js in real_judgments.items() for j in js)])
    return {"metrics": metrics, "headline": headline_rows(metrics),
            "files": {k: str(s.paths.report / Path(v).name) for k, v in files.items()}}


def eval_data_digest(pairs: list[Pair]) -> str:
    """A short digest of the pairs judged (ids, labels, both responses, exemplars), so two reports are
    compared only when they measured the same thing."""
    import hashlib

    h = hashlib.sha1()
    for p in pairs:
        h.update(json.dumps([p.pair_id, p.label, p.response_a, p.response_b, list(p.exemplars)]).encode("utf-8"))
    return h.hexdigest()[:12]


EXEMPLAR_COUNT_JUDGES = ("rft", "sft", "combined", "stylometric", "ngram", "embedding")


def exemplar_counts(n_max: int) -> list[int]:
    """1, 2, 4, ... below `n_max`, then `n_max` itself."""
    counts, c = [], 1
    while c < n_max:
        counts.append(c)
        c *= 2
    return counts + [n_max] if n_max >= 1 else []


def _by_exemplar_count(s: Settings, pairs: list[Pair], judges: dict, judgments: dict[str, list[dict]]) -> dict:
    """The same eval pairs re-judged with only the first k exemplars, for each k of
    `exemplar_counts` (the full count reuses the main judgments). The model judges' prompt shows
    at most `render.max_exemplars` of them, so their curve is flat beyond it."""
    from dataclasses import replace

    from persrm_core.metrics import judge_metrics

    n_max = max((len(p.exemplars) for p in pairs), default=0)
    out: dict[str, dict[str, float]] = {}
    for name in (n for n in EXEMPLAR_COUNT_JUDGES if n in judgments and n in s.eval.exemplar_count_judges):
        out[name] = {}
        for k in exemplar_counts(n_max):
            if k == n_max:
                js = judgments[name]
                subset = pairs
            else:
                subset = [replace(p, exemplars=p.exemplars[:k]) for p in pairs]
                # accuracy counts the first order's verdict, so one order is enough here
                js = judges[name].judge(subset, both_orders=False)
            out[name][str(k)] = judge_metrics(subset, js)["accuracy"]
    return out


def eval_judges(s: Settings, gen) -> dict:
    """Every judge the evaluation runs, by name, each behind the `persrm_core.judge.Judge` protocol:
    the base, SFT and RFT model judges, then `eval.baselines` (the training-free ones over the fitted
    evidence, and `scalar_rm`, a Bradley-Terry scalar reward model trained on the same train split)."""
    from persrm_core.judge import BaselineJudge, ModelJudge

    fitted = s.paths.evidence if (s.paths.evidence / "evidence.json").is_file() else None
    judges: dict = {}
    for name, ref in (("base", base_model_ref(s)), ("sft", str(s.paths.sft)), ("rft", str(s.paths.rft))):
        judges[name] = ModelJudge(ref, s.render, gen, s.base_model.dtype, s.base_model.trust_remote_code,
                                  evidence=fitted if name == "base" else None)
    for name in s.eval.baselines:
        judges[name] = _scalar_rm_judge(s) if name == "scalar_rm" else BaselineJudge(name, s.seed, fitted)
    return judges


def _scalar_rm_judge(s: Settings):
    from persrm_core.scalar_rm import ScalarRMJudge

    if not (s.paths.scalar_rm / "config.json").exists():
        raise RuntimeError(f"eval.baselines names scalar_rm but {s.paths.scalar_rm} holds no model; "
                           "materialize the scalar_rm asset first")
    return ScalarRMJudge(s.paths.scalar_rm, batch_size=s.eval.batch_size)


def scalar_rm(s: Settings) -> dict:
    """The scalar Bradley-Terry reward model baseline (TRL RewardTrainer), trained on the train split."""
    from persrm_core.scalar_rm import train_scalar_rm

    train = corpus_pairs(s.paths.corpus / "train.parquet")
    with atomic_dir(s.paths.scalar_rm) as tmp:
        log = train_scalar_rm(base_model_ref(s), train, tmp, s.scalar_rm)
        _clean_trainer_files(tmp)
    return {"checkpoint": str(s.paths.scalar_rm), "train_pairs": len(train),
            **_curve_summary(log, ("loss", "accuracy")), "curve": _points(log, "loss")}


