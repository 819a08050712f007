"""Benchmark for persrm_core.data.neardup: MinHash + LSH near-duplicate search at 10k to 1M texts.

`benchmark(sizes, seed)` returns one dict per measurement:

* kind "scale": signatures, LSH candidates and exact verification from n generated texts of
  ~60 words (1% planted near-duplicates), each stage the median of `repeats` runs
  (`time.perf_counter`, and process CPU seconds, which the load of other processes on a shared
  machine inflates less), and the recall on the planted pairs whose exact Jaccard reaches the
  threshold; then the three near-duplicate gates a corpus filter runs (clusters, train-vs-eval
  `cross_near_duplicates`, `rowwise_similarity` over n pairs) over texts shingled once, per
  stage; peak RSS (getrusage) and the kernel's peak-RSS mark (VmHWM) for each of the two parts;
* kind "exact": the LSH search against the exact all-pairs reference at sizes both can do;
* kind "shingles": word 2/3-gram and char 5-gram shingles compared on cost and on the Jaccard
  similarity that 1, 2 or 4 changed words leave at 20, 60 and 120 words.

Each corpus is generated in one child process and measured in another, so generating it does
not count and peak RSS is the measurement's own. Run directly:
`python benchmarks/neardup_bench.py --sizes 10000 100000 1000000` (one JSON object per line;
`--json` prints them as one list, which `benchmarks/run.py` reads).
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import polars as pl
import pyarrow as pa

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from persrm_core.data import minhash as mh  # noqa: E402
from persrm_core.data import neardup as nd  # noqa: E402


def _vocabulary(rng: np.random.Generator, size: int = 20_000) -> pl.Series:
    lengths = rng.integers(2, 10, size)
    letters = rng.integers(97, 123, int(lengths.sum())).astype(np.uint8).tobytes().decode()
    cuts = np.r_[0, np.cumsum(lengths)]
    return pl.Series([letters[a:b] for a, b in zip(cuts[:-1], cuts[1:])])


def _join(words: pl.Series, lengths: np.ndarray) -> pl.Series:
    offsets = np.r_[0, np.cumsum(lengths)].astype(np.int64)
    lists = pa.LargeListArray.from_arrays(pa.array(offsets), words.to_arrow().cast(pa.large_string()))
    return pl.from_arrow(lists).list.join(" ")


def make_corpus(n: int, seed: int = 0, mean_words: int = 60, dup_rate: float = 0.01,
                spread: int = 20) -> tuple[pl.Series, np.ndarray]:
    """n texts of mean_words +/- spread words drawn from a 20k-word Zipf(1.05) vocabulary, of
    which dup_rate are near-copies of another text in the corpus (1 or 2 words replaced; a third
    of them also upper-cased, a third with doubled spaces). Returns (texts, planted [k, 2])."""
    rng = np.random.default_rng(seed)
    vocab = _vocabulary(rng)
    p = 1.0 / np.arange(1, len(vocab) + 1) ** 1.05
    lengths = rng.integers(mean_words - spread, mean_words + spread + 1, n)
    words = vocab.gather(rng.choice(len(vocab), int(lengths.sum()), p=p / p.sum()))
    texts = _join(words, lengths)
    k = int(n * dup_rate)
    if not k:
        return texts, np.empty((0, 2), np.int64)
    order = rng.permutation(n)
    src, dst = order[:k], order[k:2 * k]
    copies = texts.gather(src).str.split(" ").to_list()
    for c, words_ in enumerate(copies):
        for pos in rng.choice(len(words_), int(rng.integers(1, 3)), replace=False):
            words_[pos] = vocab[int(rng.integers(len(vocab)))]
        text = " ".join(words_)
        copies[c] = text.upper() if c % 3 == 1 else text.replace(" ", "  ") if c % 3 == 2 else text
    texts = texts.scatter(dst, pl.Series(copies))
    return texts, np.stack([np.minimum(src, dst), np.maximum(src, dst)], 1).astype(np.int64)


def _peak_rss_mb() -> float:
    """Peak RSS of this process (getrusage; Linux reports KiB). After fork + exec it starts at
    the parent's RSS, which is why the parent here never holds a corpus."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _reset_hwm() -> None:
    """Reset the kernel's peak-RSS mark (VmHWM) so the next `_hwm_mb` covers one stage only."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        pass


def _hwm_mb() -> float | None:
    try:
        status = Path("/proc/self/status").read_text()
    except OSError:
        return None
    line = next((x for x in status.splitlines() if x.startswith("VmHWM:")), None)
    return int(line.split()[1]) / 1024 if line else None


def _timed(fn, repeats: int) -> tuple[float, float, object]:
    """(median wall seconds, median CPU seconds, last result)."""
    walls, cpus, result = [], [], None
    for _ in range(repeats):
        w, c = time.perf_counter(), time.process_time()
        result = fn()
        walls.append(time.perf_counter() - w)
        cpus.append(time.process_time() - c)
    return statistics.median(walls), statistics.median(cpus), result


def _gates(texts: pl.Series, threshold: float, num_perm: int) -> tuple[dict, dict]:
    """The corpus filter's three near-duplicate gates over one set of texts, shingled once:
    clusters of near-duplicate texts, train (first 80%) vs eval (last 20%) leakage, and the
    row-wise similarity of n (text, other text) pairs. Returns (wall, cpu) seconds per stage."""
    bands, rows = mh.choose_bands(num_perm, threshold)
    n, cut = len(texts), int(len(texts) * 0.8)
    state: dict = {}
    stages = {
        "shingle_sets": lambda: state.update(sets=nd.shingle_sets(texts)),
        "signatures": lambda: state.update(sigs=mh.minhash_signatures(state["sets"], num_perm)),
        "lsh": lambda: state.update(cands=nd.lsh_candidates(state["sigs"], bands, rows)),
        "verify": lambda: state.update(pairs=nd._verify(state["cands"], state["sets"], None, threshold,
                                                        "word3", 0)),
        "clusters": lambda: state.update(ids=nd.connected_components(
            n, state["pairs"].select("i", "j").to_numpy())),
        "cross_80_20": lambda: state.update(leaked=nd.cross_near_duplicates(
            state["sets"][:cut], state["sets"][cut:], threshold, num_perm)),
        "rowwise_n_pairs": lambda: state.update(sim=nd.rowwise_similarity(
            state["sets"], state["sets"].gather(np.r_[1:n, 0]))),
    }
    wall, cpu = {}, {}
    for name, fn in stages.items():
        c, w = time.process_time(), time.perf_counter()
        fn()
        wall[name], cpu[name] = time.perf_counter() - w, time.process_time() - c
    return wall, cpu


def measure_scale(path: str, repeats: int = 3, threshold: float = 0.8, num_perm: int = 64) -> dict:
    texts = pl.read_parquet(path)["text"]
    planted = np.load(path + ".planted.npy")
    rss_input = _peak_rss_mb()
    bands, rows = mh.choose_bands(num_perm, threshold)
    # 1. The search on its own, from texts: signatures, LSH candidates, exact verification.
    _reset_hwm()
    sig_w, sig_c, sigs = _timed(lambda: mh.minhash_signatures(texts, num_perm), repeats)
    lsh_w, lsh_c, cands = _timed(lambda: nd.lsh_candidates(sigs, bands, rows), repeats)
    ver_w, ver_c, pairs = _timed(lambda: nd._verify(cands, texts, None, threshold, "word3", 0), repeats)
    hwm_search = _hwm_mb()
    found = set(map(tuple, pairs.select("i", "j").to_numpy().tolist()))
    sims = nd.rowwise_similarity(texts.gather(planted[:, 0]), texts.gather(planted[:, 1])).to_numpy()
    should = [tuple(p) for p, s in zip(planted.tolist(), sims) if s >= threshold]
    del sigs
    # 2. All three gates, shingling once (what a corpus filter would run).
    _reset_hwm()
    runs = [_gates(texts, threshold, num_perm) for _ in range(repeats)]
    hwm_gates = _hwm_mb()
    gate_wall = {k: statistics.median(r[0][k] for r in runs) for k in runs[0][0]}
    gate_cpu = {k: statistics.median(r[1][k] for r in runs) for k in runs[0][1]}
    return {
        "kind": "scale", "n": len(texts), "threshold": threshold, "num_perm": num_perm,
        "bands": bands, "rows": rows, "repeats": repeats,
        "signatures_s": round(sig_w, 2), "lsh_s": round(lsh_w, 2), "verify_s": round(ver_w, 2),
        "total_s": round(sig_w + lsh_w + ver_w, 2), "total_cpu_s": round(sig_c + lsh_c + ver_c, 2),
        "candidates": len(cands), "verified_pairs": pairs.height,
        "planted": len(planted), "planted_at_threshold": len(should),
        "recall": round(sum(p in found for p in should) / max(len(should), 1), 4),  # of those
        "min_reported_jaccard": round(float(pairs["jaccard"].min()), 4) if pairs.height else None,
        "gates_s": {k: round(v, 2) for k, v in gate_wall.items()},
        "gates_total_s": round(sum(gate_wall.values()), 2),
        "gates_total_cpu_s": round(sum(gate_cpu.values()), 2),
        "peak_rss_mb": round(_peak_rss_mb()), "rss_with_input_mb": round(rss_input),
        "hwm_search_mb": round(hwm_search) if hwm_search else None,
        "hwm_gates_mb": round(hwm_gates) if hwm_gates else None,
    }


def measure_exact(path: str, repeats: int = 3, threshold: float = 0.8) -> dict:
    texts = pl.read_parquet(path)["text"]
    lsh_w, lsh_c, lsh = _timed(lambda: nd.near_duplicate_pairs(texts, threshold), repeats)
    ex_w, ex_c, exact = _timed(lambda: nd.exact_near_duplicate_pairs(texts, threshold), repeats)
    got = set(map(tuple, lsh.select("i", "j").to_numpy().tolist()))
    want = set(map(tuple, exact.select("i", "j").to_numpy().tolist()))
    return {
        "kind": "exact", "n": len(texts), "threshold": threshold, "repeats": repeats,
        "lsh_s": round(lsh_w, 3), "exact_s": round(ex_w, 3), "exact_over_lsh": round(ex_w / lsh_w, 1),
        "lsh_cpu_s": round(lsh_c, 3), "exact_cpu_s": round(ex_c, 3),
        "exact_pairs": len(want), "lsh_pairs": len(got),
        "recall": round(len(got & want) / max(len(want), 1), 4),
        "precision": round(len(got & want) / max(len(got), 1), 4),
        "peak_rss_mb": round(_peak_rss_mb()),
    }


def _edit(texts: list[str], k: int, rng: np.random.Generator) -> list[str]:
    out = []
    for t in texts:
        words = t.split(" ")
        for pos in rng.choice(len(words), k, replace=False):
            words[pos] = "qqq" + words[pos]
        out.append(" ".join(words))
    return out


def measure_shingles(seed: int = 0, n: int = 20_000, repeats: int = 3) -> list[dict]:
    """Cost and sensitivity of each shingle kind: signature time for n texts of ~60 words, and
    the mean exact Jaccard left by k changed words (k = 1, 2, 4) at 20, 60 and 120 words."""
    rng = np.random.default_rng(seed)
    base, _ = make_corpus(n, seed, dup_rate=0)
    out = []
    for shingle in ("word2", "word3", "char5"):
        wall, cpu, _ = _timed(lambda: mh.minhash_signatures(base, shingle=shingle), repeats)
        offsets, _ = mh._shingle_hashes(base.head(2000), shingle)
        row = {"kind": "shingles", "shingle": shingle, "n": n, "signatures_s": round(wall, 2),
               "signatures_cpu_s": round(cpu, 2), "shingles_per_text": round(offsets[-1] / 2000, 1)}
        for words in (20, 60, 120):
            texts, _ = make_corpus(500, seed + words, mean_words=words, spread=0, dup_rate=0)
            src = texts.to_list()
            row[f"unrelated_{words}w"] = round(float(nd.rowwise_similarity(
                texts, texts.shift(1), shingle).drop_nulls().mean()), 3)
            for k in (1, 2, 4):
                sim = nd.rowwise_similarity(texts, pl.Series(_edit(src, k, rng)), shingle)
                row[f"{k}_changed_{words}w"] = round(float(sim.mean()), 3)
        out.append(row)
    return out


def write_corpus(path: str, n: int, seed: int) -> dict:
    texts, planted = make_corpus(n, seed)
    pl.DataFrame({"text": texts}).write_parquet(path)
    np.save(path + ".planted.npy", planted)
    return {"kind": "corpus", "n": n, "path": path}


def _child(spec: dict) -> list[dict] | dict:
    fns = {"corpus": write_corpus, "scale": measure_scale, "exact": measure_exact,
           "shingles": measure_shingles}
    return fns[spec.pop("fn")](**spec)


def _isolated(spec: dict) -> list[dict]:
    done = subprocess.run([sys.executable, str(Path(__file__).resolve()), "--child", json.dumps(spec)],
                          capture_output=True, text=True)
    if done.returncode:
        raise RuntimeError(f"benchmark child {spec} failed:\n{done.stderr[-4000:]}")
    result = json.loads(done.stdout.strip().splitlines()[-1])
    return result if isinstance(result, list) else [result]


def _inline(spec: dict) -> list[dict]:
    result = _child(dict(spec))
    return result if isinstance(result, list) else [result]


def benchmark(sizes: list[int] | tuple[int, ...] = (10_000, 100_000, 1_000_000), seed: int = 0,
              repeats: int = 3, exact_sizes: list[int] | tuple[int, ...] = (3000, 20_000),
              shingles: bool = True, isolate: bool = True) -> list[dict]:
    """All measurements (see the module docstring). With `isolate` each corpus is generated and
    each measurement runs in its own process, so peak RSS is the measurement's own."""
    run = _isolated if isolate else _inline
    results: list[dict] = []
    with tempfile.TemporaryDirectory() as tmp:
        for kind, n in [("exact", n) for n in exact_sizes] + [("scale", n) for n in sizes]:
            path = str(Path(tmp) / f"corpus_{kind}_{n}.parquet")
            run({"fn": "corpus", "path": path, "n": n, "seed": seed})
            results += run({"fn": kind, "path": path, "repeats": repeats})
    if shingles:
        results += run({"fn": "shingles", "seed": seed, "repeats": repeats})
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000, 1_000_000])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--exact-sizes", type=int, nargs="*", default=[3000, 20_000])
    parser.add_argument("--no-shingles", action="store_true")
    parser.add_argument("--json", action="store_true", help="print all results as one JSON list")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(_child(json.loads(args.child))))
        return
    results = benchmark(args.sizes, args.seed, args.repeats, args.exact_sizes, not args.no_shingles)
    if args.json:
        print(json.dumps(results))
    else:
        for row in results:
            print(json.dumps(row))


if __name__ == "__main__":
    main()
