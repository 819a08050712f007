"""`make bench`: measure the pipeline on this machine and append the figures to BENCHMARKS.md.

Every figure is measured here, in this run; each speed stands beside another way of doing the same
work, measured in the same run, as a ratio. Each measurement runs in its own Python process, so
its peak RSS (`ru_maxrss`) is its own. Sections:

1. the demo's stages (default profile, real-author eval off) one by one: wall time and peak RSS;
2. synthesis throughput at 10k and 100k pairs (and 1M with `--full`), one worker vs two;
3. the corpus quality gates at 10k, 100k and 1M pairs (1M = the 100k synthesized pairs in ten
   near-duplicate tiles: one word changed per tile, so the near-duplicate gate has 900k to find);
4. near-duplicate search: MinHash/LSH against the exact pairwise check (benchmarks/neardup_bench.py);
5. SFT and GRPO tokens/s on the default profile's tiny model; GRPO step time split into generation
   and update; GRPO with a KL reference model (beta > 0) against without;
6. judging pairs/s, batched against one pair at a time.

Usage: `python benchmarks/run.py [--quick] [--full] [--notes BENCHMARKS.md]`.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

# --- measurements (each runs in a child process: `run.py --child NAME JSON`) ------------------------


def scaled_exemplars(n_texts: int, seed: int = 0, texts_per_author: int = 26):
    """`n_texts` texts by n_texts/26 authors. Each author writes in the habits of one bundled sample
    author (their sentences' shapes, casing, punctuation, emoji) with about half of the words
    replaced by words drawn from the whole sample's vocabulary, so texts share style but not long
    word runs (as real authors do; re-used sentences would make every text a near-duplicate)."""
    import random

    from persrm_core.data.ingest import read_exemplars
    from persrm_core.records import Exemplar

    base = read_exemplars(REPO / "data" / "raw", 2)
    by_author: dict[str, list[list[str]]] = {}
    vocab = sorted({w.lower() for e in base for w in re.findall(r"[A-Za-z]+", e.text)})
    for e in base:
        by_author.setdefault(e.author_id, []).extend(s.split() for s in re.split(r"(?<=[.!?])\s+", e.text) if s)
    rng = random.Random(seed)
    authors = sorted(by_author)

    def vary(token: str) -> str:
        m = re.fullmatch(r"([^A-Za-z]*)([A-Za-z]+)(.*)", token)
        if not m or rng.random() < 0.5:
            return token
        word = rng.choice(vocab)
        word = word.upper() if m[2].isupper() and len(m[2]) > 1 else word.capitalize() if m[2][0].isupper() else word
        return m[1] + word + m[3]

    out = []
    for a in range(max(1, n_texts // texts_per_author)):
        sents = by_author[authors[a % len(authors)]]
        for _ in range(texts_per_author):
            parts, words = [], 0
            while words < 70:
                s = rng.choice(sents)
                parts.append(" ".join(vary(t) for t in s))
                words += len(s)
            out.append(Exemplar(author_id=f"{authors[a % len(authors)]}-{a}", text=" ".join(parts)))
    return out[:n_texts]


def child_synthesis(pairs: int, workers: int, out: str | None = None) -> dict:
    import polars as pl

    from persrm_core.config import load_settings
    from persrm_core.synthesis.pairs import build_pairs

    s = load_settings("default", REPO / "params.yaml")
    per_text = sum(s.synthesis.negatives.values())
    exemplars = scaled_exemplars(int(pairs / per_text / 0.93) + 26)  # ~7% of texts give no pair
    t = time.perf_counter()
    rows = build_pairs(exemplars, s.synthesis, progress=False, workers=workers)
    seconds = time.perf_counter() - t
    if out:
        pl.DataFrame(rows, schema_overrides={"negative_source": pl.String}).write_parquet(out)
    return {"texts": len(exemplars), "pairs": len(rows), "seconds": seconds}


def child_incremental(n_texts: int) -> dict:
    """`synthetic_pairs` when one author arrives: incrementally (the others' shards reused) against a
    build from scratch of the same corpus, both in this process; the two files must be equal."""
    import polars as pl

    from persrm_core import pipeline
    from persrm_core.atomic import write_jsonl
    from persrm_core.config import load_settings

    exemplars = scaled_exemplars(n_texts)
    newcomer = exemplars[-1].author_id
    with tempfile.TemporaryDirectory(prefix="persrm-bench-inc-") as a, \
            tempfile.TemporaryDirectory(prefix="persrm-bench-scratch-") as b:
        inc, scratch = load_settings("default", REPO / "params.yaml", a), load_settings("default", REPO / "params.yaml", b)
        write_jsonl(inc.paths.exemplars, (e.to_dict() for e in exemplars if e.author_id != newcomer))
        pipeline.synthetic_pairs(inc, progress=False)  # the state before the newcomer
        write_jsonl(inc.paths.exemplars, (e.to_dict() for e in exemplars))
        write_jsonl(scratch.paths.exemplars, (e.to_dict() for e in exemplars))
        t = time.perf_counter()
        out = pipeline.synthetic_pairs(inc, progress=False)
        seconds = time.perf_counter() - t
        t = time.perf_counter()
        pipeline.synthetic_pairs(scratch, progress=False)
        scratch_seconds = time.perf_counter() - t
        equal = pl.read_parquet(inc.paths.pairs).equals(pl.read_parquet(scratch.paths.pairs))
    return {"texts": len(exemplars), "authors": len({e.author_id for e in exemplars}), "pairs": out["pairs"],
            "seconds": seconds, "scratch_seconds": scratch_seconds, "equal": equal,
            "rebuilt": len(out["authors_rebuilt"]), "reused": len(out["authors_reused"])}


def child_filter(source: str, tiles: int) -> dict:
    import polars as pl

    from persrm_core.config import load_settings
    from persrm_core.data.corpus import filter_pairs

    s = load_settings("default", REPO / "params.yaml")
    base = pl.read_parquet(source)
    if tiles > 1:  # tile k: ids suffixed, one word of each response replaced by a tile token
        parts = []
        for k in range(tiles):
            token = f"tile{k}"
            parts.append(base.with_columns(  # a new source id: the near-duplicate gates must find it
                pair_id=pl.col("pair_id") + f"~{k}", chosen_source=pl.col("chosen_source") + f"~{k}",
                response_a=pl.col("response_a").str.replace(r"^\S+", token),
                response_b=pl.col("response_b").str.replace(r"^\S+", token)))
        base = pl.concat(parts)
    t = time.perf_counter()
    result = filter_pairs(base, s.filter)
    seconds = time.perf_counter() - t
    return {"pairs": base.height, "kept": result.train.height + result.eval.height, "seconds": seconds,
            "rules": {r: n for r, n in result.removed}}


def child_stage(stage: str, params: str) -> dict:
    t = time.perf_counter()
    proc = subprocess.run([str(REPO / ".venv" / "bin" / "persrm"), "run", "--params", params, "--select", stage],
                          capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"stage {stage} failed:\n{proc.stderr[-3000:]}")
    return {"stage": stage, "seconds": time.perf_counter() - t}


def _tiny_setup(work: Path, n_pairs: int = 200):
    from persrm_core.config import load_settings
    from persrm_core.llm.model import build_tiny
    from persrm_core.synthesis.pairs import build_pairs
    from persrm_core.training.trainers import sft_rows

    s = load_settings("default", REPO / "params.yaml")
    rows = build_pairs(scaled_exemplars(260), s.synthesis, progress=False)[:n_pairs]
    texts = [t for r in rows for t in (r["prompt"], r["response_a"], r["response_b"], *r["exemplars"])]
    texts += [x["completion"][0]["content"] for x in sft_rows(rows[:100], s.render)]
    build_tiny(texts, work / "base", s.base_model.tiny)
    return s, rows


def _set(cfg, **values):
    import dataclasses

    return dataclasses.replace(cfg, **{k: v for k, v in values.items() if k in {f.name for f in dataclasses.fields(cfg)}})


def child_training(steps: int) -> dict:
    """SFT tokens/s, packed vs unpacked; GRPO tokens/s, generation vs update, beta 0 vs 0.04."""
    import transformers

    from persrm_core.training.trainers import train_grpo, train_sft

    work = Path(tempfile.mkdtemp(prefix="persrm-bench-"))
    try:
        s, rows = _tiny_setup(work)
        out: dict = {}
        for packing in (False, True):
            cfg = _set(s.sft, max_steps=steps, logging_steps=1, save_steps=10_000, launcher="inprocess",
                       packing=packing)
            t = time.perf_counter()
            log = train_sft(work / "base", rows, work / f"sft{packing}", cfg, s.render, work_dir=work / f"w{packing}")
            wall = time.perf_counter() - t
            tokens = max((h.get("num_tokens", 0) for h in log), default=0)
            out[f"sft_packing_{packing}"] = {"seconds": wall, "tokens": tokens, "steps": steps}
        original = transformers.GenerationMixin.generate
        timer = {"seconds": 0.0}

        def timed_generate(self, *args, **kwargs):
            t0 = time.perf_counter()
            try:
                return original(self, *args, **kwargs)
            finally:
                timer["seconds"] += time.perf_counter() - t0

        transformers.GenerationMixin.generate = timed_generate
        for beta in (0.0, 0.04):
            timer["seconds"] = 0.0
            cfg = _set(s.rft, max_steps=max(2, steps // 4), logging_steps=1, save_steps=10_000, beta=beta,
                       launcher="inprocess")
            t = time.perf_counter()
            log = train_grpo(str(work / "sftFalse"), rows, work / f"rft{beta}", cfg, s.render, work_dir=work / f"g{beta}")
            wall = time.perf_counter() - t
            tokens = max((h.get("num_tokens", 0) for h in log), default=0)
            out[f"grpo_beta_{beta}"] = {"seconds": wall, "generation_seconds": timer["seconds"], "tokens": tokens,
                                        "steps": cfg.max_steps, "generations_per_step": cfg.batch_size}
        return out
    finally:
        shutil.rmtree(work, ignore_errors=True)


def child_judge(n_pairs: int) -> dict:
    from persrm_core.judging.judge import DecodingSettings, ModelJudge
    from persrm_core.records import pair_from_dict

    work = Path(tempfile.mkdtemp(prefix="persrm-bench-"))
    try:
        s, rows = _tiny_setup(work)
        pairs = [pair_from_dict({k: r[k] for k in ("pair_id", "author_id", "exemplars", "prompt", "response_a",
                                                   "response_b", "label", "negative_type")}, "bench", i)
                 for i, r in enumerate(rows[:n_pairs])]
        out = {}
        for batch in (1, s.eval.batch_size):
            judge = ModelJudge(str(work / "base"), s.render,
                               DecodingSettings(batch_size=batch, max_new_tokens=s.eval.max_new_tokens))
            subset = pairs if batch > 1 else pairs[: max(8, n_pairs // 4)]
            t = time.perf_counter()
            judge.judge(subset, both_orders=False)
            out[f"batch_{batch}"] = {"pairs": len(subset), "seconds": time.perf_counter() - t}
        return out
    finally:
        shutil.rmtree(work, ignore_errors=True)


CHILDREN = {"synthesis": child_synthesis, "incremental": child_incremental, "filter": child_filter, "stage": child_stage,
            "training": child_training, "judge": child_judge}


def isolated(name: str, **kwargs) -> dict:
    """Run one measurement in a fresh process; add its peak RSS (MB)."""
    proc = subprocess.Popen([sys.executable, __file__, "--child", name, json.dumps(kwargs)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    stdout, stderr = proc.communicate()
    if proc.returncode != 0:
        raise RuntimeError(f"benchmark {name} {kwargs} failed:\n{stderr[-4000:]}")
    result = json.loads(stdout.strip().splitlines()[-1])
    result["peak_rss_mb"] = result.pop("_rss_mb")
    return result


def _child_main(name: str, args: str) -> None:
    import resource

    result = CHILDREN[name](**json.loads(args))
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    rss_children = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    result["_rss_mb"] = round(max(rss, rss_children), 1)
    print(json.dumps(result))


# --- the notes ---------------------------------------------------------------------------------------


def machine() -> str:
    cpu = next((ln.split(":", 1)[1].strip() for ln in Path("/proc/cpuinfo").read_text().splitlines()
                if ln.startswith("model name")), platform.processor()) if Path("/proc/cpuinfo").exists() else "?"
    mem = next((int(ln.split()[1]) // 1024 // 1024 for ln in Path("/proc/meminfo").read_text().splitlines()
                if ln.startswith("MemTotal")), 0) if Path("/proc/meminfo").exists() else 0
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True, text=True).stdout.strip()
    return (f"{cpu}, {os.cpu_count()} cores, {mem} GiB; Python {platform.python_version()}; commit {commit or '?'}; "
            f"load average at start {load:.1f}")


def table(rows: list[dict]) -> list[str]:
    if not rows:
        return []
    cols = list(rows[0])
    out = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    out += ["| " + " | ".join(str(r[c]) for c in cols) + " |" for r in rows]
    return out + [""]


def median_of(runs: int, name: str, **kwargs) -> dict:
    """The run with the median wall time of `runs` isolated runs (plus every run's seconds)."""
    results = [isolated(name, **kwargs) for _ in range(runs)]
    results.sort(key=lambda r: r["seconds"])
    mid = dict(results[len(results) // 2])
    mid["all_seconds"] = [round(r["seconds"], 2) for r in results]
    return mid


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--notes", default=str(REPO / "BENCHMARKS.md"))
    ap.add_argument("--quick", action="store_true", help="smaller sizes, one run each (a smoke test of the harness)")
    ap.add_argument("--full", action="store_true", help="also synthesize 1M pairs (about 10 more minutes)")
    ap.add_argument("--skip-demo", action="store_true", help="leave out the demo's stage times")
    ap.add_argument("--child", nargs=2, metavar=("NAME", "JSON"), help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.child:
        _child_main(*args.child)
        return 0
    started = time.perf_counter()
    runs = 1 if args.quick else 3
    sizes = [2_000, 10_000] if args.quick else [10_000, 100_000]
    lines = [f"## `make bench`, {datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC", "",
             f"Machine: {machine()}. Each figure is the median of {runs} runs in fresh processes unless "
             "said; peak RSS is the measuring process's own.", ""]

    def progress(msg: str) -> None:
        print(f"[bench {time.perf_counter() - started:6.0f}s] {msg}", flush=True)

    if not args.skip_demo:
        progress("demo stages (default profile)")
        with tempfile.TemporaryDirectory(prefix="persrm-bench-demo-") as tmp:
            shutil.copytree(REPO / "data" / "raw", Path(tmp) / "data" / "raw")
            params = (REPO / "params.yaml").read_text()
            params = re.sub(r"(\n\s+dir: )\S+", r'\1""', params, count=1)  # real-author eval off
            if args.quick:
                params = params.replace("profile: default", "profile: smoke", 1)
            (Path(tmp) / "params.yaml").write_text(params)
            from persrm_core.pipeline.stages import stage_sections

            stages = list(stage_sections())  # every registered stage, in dvc.yaml's (dependency) order
            rows = []
            for stage in stages:
                r = isolated("stage", stage=stage, params=str(Path(tmp) / "params.yaml"))
                rows.append({"stage": stage, "seconds": round(r["seconds"], 1), "peak RSS (MB)": r["peak_rss_mb"]})
                progress(f"  {stage}: {r['seconds']:.1f} s")
            metrics = json.loads((Path(tmp) / "data" / "reports" / "eval" / "metrics.json").read_text())
        total = sum(r["seconds"] for r in rows)
        lines += [f"### Demo stages ({'smoke' if args.quick else 'default'} profile, one run each, real-author "
                  f"eval off; `persrm run --select STAGE` in a fresh process, so each includes ~5 s of imports)", "",
                  *table(rows + [{"stage": "total", "seconds": round(total, 1), "peak RSS (MB)": ""}]),
                  f"What that run's judges reached on its eval split ({metrics['settings']['eval_pairs']} pairs, "
                  "both orders; accuracy counts an invalid verdict as wrong):", "",
                  *table([{"judge": n, "accuracy": m["accuracy"], "95% CI": m["accuracy_ci95"],
                           "format-valid": m["format_valid_rate"], "position consistency": m["position_consistency"],
                           **{f"acc. {t}": a for t, a in m["by_negative_type"].items()}}
                          for n, m in metrics["judges"].items()])]

    progress("synthesis")
    syn_rows, sources = [], {}
    tmpdir = Path(tempfile.mkdtemp(prefix="persrm-bench-"))
    try:
        for n in sizes + ([1_000_000] if args.full else []):
            n_runs = runs if n <= 10_000 else 1  # the larger sizes take a minute each: one run
            # 1 worker against 2 at the largest default size only (where it matters; the bench stays < 15 min)
            one = median_of(n_runs, "synthesis", pairs=n, workers=1) if n == sizes[-1] else None
            out = str(tmpdir / f"pairs{n}.parquet")
            two = median_of(n_runs, "synthesis", pairs=n, workers=2, out=out)
            sources[n] = out
            row = {"pairs": f"{two['pairs']:,}", "texts": f"{two['texts']:,}", "runs": n_runs,
                   "1 worker (s)": round(one["seconds"], 1) if one else "-",
                   "2 workers (s)": round(two["seconds"], 1),
                   "pairs/min (2 workers)": f"{two['pairs'] / two['seconds'] * 60:,.0f}",
                   "speed-up 2 vs 1": f"{one['seconds'] / two['seconds']:.2f}x" if one else "-",
                   "peak RSS (MB)": two["peak_rss_mb"]}
            syn_rows.append(row)
            progress(f"  {row}")
        lines += ["### Offline synthesis (cross-author + rule perturbation + lexicon swap, one each per text)",
                  "", "Pairs built by `build_pairs` from generated authors (each writing in one bundled author's "
                  "habits, half the words drawn at random from the sample's vocabulary: `scaled_exemplars`); "
                  "corpus generation is not timed. Target: 100k pairs a minute.", "",
                  *table(syn_rows)]

        progress("one author arrives: incremental synthetic_pairs vs from scratch")
        inc_rows = []
        for n in ([1_300] if args.quick else [2_600]):  # one size: make bench stays under 15 minutes
            results = sorted((isolated("incremental", n_texts=n) for _ in range(runs)),
                             key=lambda r: r["scratch_seconds"] / r["seconds"])
            r = results[len(results) // 2]
            inc_rows.append({"texts": f"{r['texts']:,}", "authors": r["authors"], "pairs": f"{r['pairs']:,}",
                             "runs": runs, "incremental (s)": round(r["seconds"], 2),
                             "from scratch (s)": round(r["scratch_seconds"], 2),
                             "speed-up": f"{r['scratch_seconds'] / r['seconds']:.2f}x",
                             "authors rebuilt / reused": f"{r['rebuilt']} / {r['reused']}",
                             "files equal": all(x["equal"] for x in results)})
            progress(f"  {inc_rows[-1]}")
        lines += ["### One author arrives: `synthetic_pairs` incrementally vs from scratch", "",
                  "The corpus minus its last author is built first; then the newcomer is added and the pairs "
                  "are rebuilt reusing the other authors' shards, and, in the same process, built from scratch "
                  "in a fresh directory (the run with the median ratio shown; the two files must be equal). "
                  "Cross-author pairs, topic neighbours and A/B positions are recomputed in both.", "",
                  *table(inc_rows)]

        progress("filtering")
        filt_rows = []
        for n, tiles in [(n, 1) for n in sizes] + [(sizes[-1], 10)]:
            r = median_of(runs if tiles == 1 else 1, "filter", source=sources[n], tiles=tiles)
            filt_rows.append({"pairs in": f"{r['pairs']:,}", "runs": runs if tiles == 1 else 1, "kept": f"{r['kept']:,}", "seconds": round(r["seconds"], 1),
                              "pairs/s": f"{r['pairs'] / r['seconds']:,.0f}", "peak RSS (MB)": r["peak_rss_mb"],
                              "removed by rule": ", ".join(f"{k} {v:,}" for k, v in r["rules"].items() if v)})
            progress(f"  {filt_rows[-1]}")
        lines += ["### Corpus quality gates (`filter_pairs`, every rule)", "",
                  f"The largest input is the {sizes[-1]:,} synthesized pairs in ten tiles, each tile with new source "
                  "ids and one word of each response changed: near-duplicates the gates must find. Targets: 1M pairs within 60 s "
                  "and under 4 GB.", "", *table(filt_rows)]
    finally:
        shutil.rmtree(tmpdir, ignore_errors=True)

    progress("near-duplicate search vs exact pairwise")
    bench_nd = subprocess.run([sys.executable, str(REPO / "benchmarks" / "neardup_bench.py"), "--sizes",
                               *(["10000"] if args.quick else ["10000", "1000000"]),
                               "--repeats", "1", "--json"], capture_output=True, text=True)
    if bench_nd.returncode == 0:
        lines += ["### Near-duplicate search (MinHash + LSH) against the exact pairwise check (one run each)", "",
                  *neardup_lines(json.loads(bench_nd.stdout.strip().splitlines()[-1])), ""]
    else:
        lines += ["### Near-duplicate search", "", f"Failed: {bench_nd.stderr.strip().splitlines()[-1:]}", ""]

    progress("training throughput")
    steps = 4
    tr = isolated("training", steps=steps)
    rows = []
    for key, label in (("sft_packing_False", "SFT, unpacked"), ("sft_packing_True", "SFT, packed")):
        r = tr[key]
        rows.append({"run": label, "steps": r["steps"], "seconds": round(r["seconds"], 1), "tokens": r["tokens"],
                     "tokens/s": f"{r['tokens'] / r['seconds']:,.0f}"})
    for key, label in (("grpo_beta_0.0", "GRPO, beta 0"), ("grpo_beta_0.04", "GRPO, beta 0.04 (KL reference)")):
        r = tr[key]
        rows.append({"run": label, "steps": r["steps"], "seconds": round(r["seconds"], 1), "tokens": r["tokens"],
                     "tokens/s": f"{r['tokens'] / r['seconds']:,.0f}",
                     "generation s/step": round(r["generation_seconds"] / r["steps"], 2),
                     "update s/step": round((r["seconds"] - r["generation_seconds"]) / r["steps"], 2)})
    for r in rows:
        r.setdefault("generation s/step", "-")
        r.setdefault("update s/step", "-")
    sft_ratio = (tr["sft_packing_True"]["tokens"] / tr["sft_packing_True"]["seconds"]) / max(
        tr["sft_packing_False"]["tokens"] / tr["sft_packing_False"]["seconds"], 1e-9)
    kl_ratio = tr["grpo_beta_0.04"]["seconds"] / tr["grpo_beta_0.0"]["seconds"]
    lines += ["### Training throughput (default profile's tiny model, CPU, in-process; one run)", "",
              *table(rows), f"Packing moves SFT tokens/s by {sft_ratio:.2f}x; a KL reference model makes a GRPO "
              f"run take {kl_ratio:.2f}x as long. GRPO generation time is measured around `generate`; the rest of "
              f"each step (reward, loss, backward, optimizer) is the update. Peak RSS {tr['peak_rss_mb']} MB.", ""]

    progress("judging throughput")
    j = isolated("judge", n_pairs=32 if args.quick else 96)
    b1, bn = j["batch_1"], next(v for k, v in j.items() if k.startswith("batch_") and k != "batch_1")
    r1, rn = b1["pairs"] / b1["seconds"], bn["pairs"] / bn["seconds"]
    lines += ["### Judging (one order, greedy, default render limits, tiny model, CPU; one run)", "",
              *table([{"batching": "one pair at a time", "pairs": b1["pairs"], "pairs/s": f"{r1:.1f}"},
                      {"batching": f"batch {next(k for k in j if k != 'batch_1' and k.startswith('batch_')).split('_')[1]}",
                       "pairs": bn["pairs"], "pairs/s": f"{rn:.1f}"}]),
              f"Batching gives {rn / r1:.2f}x the pairs/s. Peak RSS {j['peak_rss_mb']} MB.", ""]

    lines += [f"Whole `make bench` run: {time.perf_counter() - started:.0f} s.", "", ""]
    notes = Path(args.notes)
    text = notes.read_text() if notes.exists() else "# Benchmarks\n\n"
    marker = "<!-- make bench appends below -->"
    if marker not in text:
        text = text.rstrip() + f"\n\n# Measured by `make bench` (each run appended)\n\n{marker}\n\n"
    notes.write_text(text + "\n".join(lines))
    progress(f"figures appended to {notes}")
    return 0


def neardup_lines(results: list[dict]) -> list[str]:
    rows, exact = [], []
    for r in results:
        if r.get("kind") == "scale":
            rows.append({k: r[k] for k in r if k in ("n", "signatures_s", "lsh_s", "verify_s", "total_s", "recall",
                                                     "peak_rss_mb")})
        elif r.get("kind") == "exact":
            exact.append(r)
    out = table(rows) if rows else []
    for e in exact:
        out.append("At " + ", ".join(f"{k} {v}" for k, v in e.items() if k != "kind") + ".")
    return out


if __name__ == "__main__":
    sys.exit(main())
