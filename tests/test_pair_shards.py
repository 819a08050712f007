"""Incremental synthetic pairs: author-local rows kept per author (`synthesize(reuse=...)` and
the shards of `pipeline.synthetic_pairs`), and always the same pairs as a build from scratch."""

from __future__ import annotations

import hashlib
import json
import logging
import random
from pathlib import Path

import polars as pl
import pytest
from polars.testing import assert_frame_equal
from synthetic_corpus import make_corpus

from persrm_core import pipeline
from persrm_core.atomic import write_jsonl
from persrm_core.config import load_settings
from persrm_core.data.ingest import read_exemplars
from persrm_core.pipeline import data as pipeline_data
from persrm_core.records import Exemplar
from persrm_core.synthesis import pairs as synthesis
from persrm_core.synthesis.pairs import LOCAL_ROW_FIELDS, SynthesisConfig, build_pairs, synthesize
from persrm_core.synthesis.splits import text_id
from persrm_core.synthesis.splits import plan_splits, split_text

REPO = Path(__file__).resolve().parent.parent
N_TEXTS = 6  # per author: the smoke profile's max_texts_per_author


@pytest.fixture(scope="module")
def sample() -> dict[str, list[Exemplar]]:
    """The bundled sample's first texts of each author, by author."""
    by_author: dict[str, list[Exemplar]] = {}
    for e in read_exemplars(REPO / "data" / "raw"):
        by_author.setdefault(e.author_id, []).append(e)
    return {a: texts[:N_TEXTS] for a, texts in sorted(by_author.items())}


def flat(by_author: dict[str, list[Exemplar]], authors) -> list[Exemplar]:
    return [e for a in authors for e in by_author[a]]


def run(root: Path, exemplars: list[Exemplar], adjust=None) -> tuple[dict, pl.DataFrame]:
    """`pipeline.synthetic_pairs` with the smoke settings under `root` on `exemplars`."""
    s = load_settings("smoke", root=root)
    if adjust is not None:
        adjust(s)
    write_jsonl(s.paths.exemplars, (e.to_dict() for e in exemplars))
    out = pipeline.synthetic_pairs(s, progress=False)
    return out, pl.read_parquet(s.paths.pairs)


def scratch(tmp_path: Path, exemplars: list[Exemplar], adjust=None) -> pl.DataFrame:
    """The pairs of a from-scratch run in a fresh directory (every author rebuilt)."""
    root = tmp_path / f"scratch-{len(list(tmp_path.glob('scratch-*')))}"
    out, df = run(root, exemplars, adjust)
    assert out["authors_reused"] == []
    return df


def shards_dir(root: Path) -> Path:
    return load_settings("smoke", root=root).paths.pairs.parent / "authors"


def manifest(root: Path) -> dict[str, dict]:
    return json.loads((shards_dir(root) / "manifest.json").read_text())["authors"]


def plan_changed(before: list[Exemplar], after: list[Exemplar]) -> set[str]:
    """Authors present in both corpora whose texts' planned splits differ between the two."""
    cfg = load_settings("smoke").synthesis
    old, new = plan_splits(before, cfg), plan_splits(after, cfg)
    return {e.author_id for e in before if text_id(e) in new and old[text_id(e)] != new[text_id(e)]}


# --- pipeline.synthetic_pairs ---------------------------------------------------------------------

@pytest.mark.parametrize("displaces", [False, True], ids=["newcomer-seen", "newcomer-displaces-unseen"])
def test_adding_an_author_incrementally_equals_a_build_from_scratch(sample, tmp_path, displaces):
    """With and without a newcomer that takes an unseen author's place (whose split plan changes)."""
    authors = list(sample)
    pick = ((a, [b for b in authors if b != a][:6]) for a in authors)
    newcomer, base = next(((a, b) for a, b in pick
                           if bool(plan_changed(flat(sample, b), flat(sample, b + [a]))) == displaces), (None, []))
    assert newcomer is not None, "the sample has no such newcomer"
    before, after = flat(sample, base), flat(sample, base + [newcomer])
    changed = plan_changed(before, after)
    assert bool(changed) == displaces

    first, _ = run(tmp_path / "inc", before)
    assert first["authors_rebuilt"] == sorted(base) and first["authors_reused"] == []
    out, incremental = run(tmp_path / "inc", after)
    assert out["authors_rebuilt"] == sorted({newcomer} | changed)
    assert out["authors_reused"] == sorted(set(base) - changed)
    assert out["cross_author_rebuilt"] == out["by_negative_type"]["cross_author"] > 0
    assert_frame_equal(incremental, scratch(tmp_path, after))
    # the newcomer's texts serve as cross-author negatives of others' pairs: those were recomputed
    newcomer_ids = {text_id(e) for e in sample[newcomer]}
    cross = incremental.filter((pl.col("negative_type") == "cross_author") & (pl.col("author_id") != newcomer))
    assert cross["negative_source"].is_in(list(newcomer_ids)).any()

    again, same = run(tmp_path / "inc", after)  # nothing changed: everyone reused, the same pairs
    assert again["authors_rebuilt"] == [] and again["authors_reused"] == sorted(base + [newcomer])
    assert_frame_equal(same, incremental)
    assert {k: v for k, v in again.items() if not k.startswith("authors_")} == \
        {k: v for k, v in out.items() if not k.startswith("authors_")}


def test_changing_one_authors_text_rebuilds_that_author_only(sample, tmp_path):
    authors = list(sample)[:5]
    corpus = flat(sample, authors)
    run(tmp_path / "inc", corpus)
    edited_author = authors[2]
    edited = [Exemplar(e.author_id, e.text + " One more sentence at the end.") if e is sample[edited_author][0] else e
              for e in corpus]
    out, df = run(tmp_path / "inc", edited)
    assert out["authors_rebuilt"] == [edited_author]
    assert out["authors_reused"] == sorted(set(authors) - {edited_author})
    assert_frame_equal(df, scratch(tmp_path, edited))


def test_a_synthesis_setting_rebuilds_everyone_and_workers_or_unused_llm_settings_nobody(sample, tmp_path):
    authors = list(sample)[:5]
    corpus = flat(sample, authors)
    run(tmp_path / "inc", corpus)

    def more_workers(s):
        s.synthesis.workers = 3
        s.generation.model = "another-model"  # no LLM strategy is on: its settings do not matter

    out, _ = run(tmp_path / "inc", corpus, more_workers)
    assert out["authors_rebuilt"] == [] and out["authors_reused"] == sorted(authors)

    def fewer_factors(s):
        s.synthesis.perturb_factors = 1

    out, df = run(tmp_path / "inc", corpus, fewer_factors)
    assert out["authors_rebuilt"] == sorted(authors) and out["authors_reused"] == []
    assert_frame_equal(df, scratch(tmp_path, corpus, fewer_factors))
    out, _ = run(tmp_path / "inc", corpus, fewer_factors)
    assert out["authors_rebuilt"] == []

    def another_cap(s):
        s.max_texts_per_author = N_TEXTS + 1  # no author has more texts here, yet the key records the cap

    out, _ = run(tmp_path / "inc", corpus, another_cap)
    assert out["authors_rebuilt"] == sorted(authors)


def test_a_corrupt_or_missing_shard_is_rebuilt_not_a_crash(sample, tmp_path, caplog):
    authors = list(sample)[:5]
    corpus = flat(sample, authors)
    _, first = run(tmp_path / "inc", corpus)
    entries = manifest(tmp_path / "inc")
    (shards_dir(tmp_path / "inc") / entries[authors[0]]["shard"]).write_bytes(b"not parquet at all")
    (shards_dir(tmp_path / "inc") / entries[authors[1]]["shard"]).unlink()
    other = pl.DataFrame({"pair_id": ["x"]})  # readable Parquet, but not a shard
    other.write_parquet(shards_dir(tmp_path / "inc") / entries[authors[2]]["shard"])
    with caplog.at_level(logging.WARNING, logger="persrm_core.pipeline.data"):
        out, df = run(tmp_path / "inc", corpus)
    assert out["authors_rebuilt"] == sorted(authors[:3])
    assert out["authors_reused"] == sorted(authors[3:])
    assert_frame_equal(df, first)
    assert sum("rebuilding the author" in r.getMessage() for r in caplog.records) == 3
    out, _ = run(tmp_path / "inc", corpus)  # the rebuilt shards were written again
    assert out["authors_rebuilt"] == []

    (shards_dir(tmp_path / "inc") / "manifest.json").write_text("{not json")
    out, df = run(tmp_path / "inc", corpus)
    assert out["authors_rebuilt"] == sorted(authors)
    assert_frame_equal(df, first)


def test_a_removed_authors_shard_is_deleted(sample, tmp_path):
    authors = list(sample)[:6]
    run(tmp_path / "inc", flat(sample, authors))
    gone = manifest(tmp_path / "inc")[authors[-1]]["shard"]
    assert (shards_dir(tmp_path / "inc") / gone).is_file()
    out, df = run(tmp_path / "inc", flat(sample, authors[:-1]))
    assert authors[-1] not in out["authors_rebuilt"] + out["authors_reused"]
    assert not (shards_dir(tmp_path / "inc") / gone).exists()
    assert set(manifest(tmp_path / "inc")) == set(authors[:-1])
    assert sorted(p.name for p in shards_dir(tmp_path / "inc").glob("*.parquet")) == \
        sorted(e["shard"] for e in manifest(tmp_path / "inc").values())
    assert_frame_equal(df, scratch(tmp_path, flat(sample, authors[:-1])))


def test_shards_hold_author_local_rows_before_positions_named_by_author(sample, tmp_path):
    authors = list(sample)[:4]
    run(tmp_path / "inc", flat(sample, authors))
    entries = manifest(tmp_path / "inc")
    assert set(entries) == set(authors)
    for author, entry in entries.items():
        assert entry["shard"].endswith(f"-{hashlib.sha1(author.encode()).hexdigest()[:8]}.parquet")
        shard = pl.read_parquet(shards_dir(tmp_path / "inc") / entry["shard"])
        assert shard.columns == list(LOCAL_ROW_FIELDS)  # chosen/rejected, no label, A/B or exemplar texts
        assert shard.height == entry["rows"] > 0
        assert set(shard["author_id"]) == {author}
        assert set(shard["negative_type"]) == {"rule_perturbation", "lexicon_swap"}


def test_a_failed_run_leaves_the_shards_and_manifest_as_they_were(sample, tmp_path, monkeypatch):
    authors = list(sample)
    run(tmp_path / "inc", flat(sample, authors[:5]))
    before = {p.name: p.read_bytes() for p in shards_dir(tmp_path / "inc").iterdir()}

    def fail(df, path):
        raise OSError("disk full")

    with monkeypatch.context() as m:
        m.setattr(pipeline_data, "write_parquet", fail)
        with pytest.raises(OSError, match="disk full"):
            run(tmp_path / "inc", flat(sample, authors[:6]))
    assert {p.name: p.read_bytes() for p in shards_dir(tmp_path / "inc").iterdir()} == before
    out, _ = run(tmp_path / "inc", flat(sample, authors[:6]))
    assert out["authors_rebuilt"] == [authors[5]]


class HashBackend:
    """A backend whose answer depends only on the request (like a cached or per-request-seeded
    model), counting the requests it gets per author named in the prompt."""

    name, model = "hashed", "hashed-1"

    def __init__(self):
        self.requests: list = []

    def generate(self, requests, params):
        self.requests += requests
        words = "the river kept moving past the old mill while evening settled over quiet fields and roads".split()
        out = []
        for r in requests:
            rng = random.Random(hashlib.sha1(repr(r.messages).encode()).hexdigest())
            out.append(" ".join(rng.choice(words) for _ in range(40)) + ".")
        return out


def test_reused_authors_make_no_llm_request_and_the_pairs_equal_scratch(sample, tmp_path, monkeypatch):
    authors = list(sample)[:6]
    backends: list[HashBackend] = []

    def backend(s, needed=None):
        backends.append(HashBackend())
        return backends[-1]

    monkeypatch.setattr(pipeline_data, "generation_backend", backend)

    def llm(s):
        s.synthesis.negatives = {"cross_author": 1, "style_imitation": 1, "rule_perturbation": 1}
        s.generation.backend = "hashed"

    run(tmp_path / "inc", flat(sample, authors[:5]), llm)
    first_requests = len(backends[0].requests)
    out, df = run(tmp_path / "inc", flat(sample, authors), llm)
    assert out["authors_rebuilt"] == [authors[5]] and len(backends) == 2
    cfg = load_settings("smoke").synthesis
    newcomer_prompts = {split_text(e.text, cfg)[0] for e in sample[authors[5]]}
    assert 0 < len(backends[1].requests) < first_requests
    assert all(any(p in r.messages[-1]["content"] for p in newcomer_prompts) for r in backends[1].requests)
    assert "style_imitation" in set(df["negative_type"])
    assert_frame_equal(df, scratch(tmp_path, flat(sample, authors), llm))
    n_backends = len(backends)
    out, _ = run(tmp_path / "inc", flat(sample, authors), llm)  # all reused: no backend is even built
    assert out["authors_rebuilt"] == [] and len(backends) == n_backends

    def other_model(s):
        llm(s)
        s.generation.model = "another-model"  # changes LLM outputs: everyone is rebuilt

    out, _ = run(tmp_path / "inc", flat(sample, authors), other_model)
    assert out["authors_rebuilt"] == sorted(authors)


# --- synthesize(reuse=...) ------------------------------------------------------------------

CFG = SynthesisConfig(seed=7, negatives={"cross_author": 1, "rule_perturbation": 2, "lexicon_swap": 1})


@pytest.fixture(scope="module")
def corpus() -> list[Exemplar]:
    return make_corpus(n_authors=5, n_texts=8, seed=0)


def test_local_rows_give_the_same_pairs_without_rebuilding_them(corpus, monkeypatch):
    first = synthesize(corpus, CFG, progress=False)
    full, built = first.rows, first.built_local
    authors = sorted({e.author_id for e in corpus})
    assert sorted(built) == authors and all(built[a] for a in authors)
    assert all(list(r) == list(LOCAL_ROW_FIELDS) and r["negative_type"] != "cross_author"
               for rows in built.values() for r in rows)
    reused = {a: built[a] for a in authors[:3]}
    snapshot = json.dumps(reused, sort_keys=True)
    perturbed: list[str] = []
    real = synthesis.perturb
    monkeypatch.setattr(synthesis, "perturb", lambda text, rng, n_factors: perturbed.append(text) or real(
        text, rng, n_factors=n_factors))
    made = synthesize(corpus, CFG, progress=False, reuse=reused)
    again = made.built_local
    assert made.rows == full
    assert json.dumps(reused, sort_keys=True) == snapshot  # the given rows are not modified
    assert sorted(again) == authors[3:] and again == {a: built[a] for a in authors[3:]}
    own = {e.text for e in corpus if e.author_id in reused}
    assert perturbed and not any(t in text for t in own for text in perturbed)


def test_local_rows_with_two_workers_equal_one_worker(corpus, monkeypatch):
    monkeypatch.setattr(synthesis, "PARALLEL_MIN_TASKS", 0)  # the forked pool even for this small corpus
    monkeypatch.setattr(synthesis, "CHUNK_TASKS", 7)
    first = synthesize(corpus, CFG, progress=False, workers=1)
    full, built = first.rows, first.built_local
    authors = sorted(built)
    reused = {a: built[a] for a in authors[1:4]}
    one = synthesize(corpus, CFG, progress=False, workers=1, reuse=reused)
    two = synthesize(corpus, CFG, progress=False, workers=2, reuse=reused)
    assert one.rows == two.rows == full
    assert one.built_local == two.built_local == {a: built[a] for a in authors if a not in reused}
    assert build_pairs(corpus, CFG, progress=False, workers=2) == full
