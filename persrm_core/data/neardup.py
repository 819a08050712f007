"""Near-duplicate texts at corpus scale: MinHash signatures, LSH banding, exact verification.

The corpus filter must find near-duplicate texts among ~1M texts, negatives that nearly equal
their chosen response, and train texts that nearly copy an eval text. Pairwise comparison is
O(n^2) and a Python loop per text is too slow, so everything here works on whole columns:
Polars splits and hashes words, numpy builds shingles and signatures, and candidate pairs from
LSH buckets are checked with the exact Jaccard similarity of their shingle sets (Polars list set
operations), so a reported pair is never a MinHash estimate.

Texts are compared as sets of shingles of their normalised words (lowercase, runs of letters
and digits; punctuation, emoji and spacing ignored). Word 3-grams are the default, measured
against word 2-grams and char 5-grams in `benchmarks/neardup_bench.py`: a text of 60 words has
58 word 3-grams but ~400 char 5-grams (signatures 3x slower), and unrelated texts share almost
no word 3-grams (mean Jaccard 0.000 vs 0.05 for char 5-grams), so the LSH has few false
candidates to verify. The price is sensitivity: one changed word leaves a Jaccard of 0.91 in
60 words but 0.74 in 20 (char 5-grams: 0.97 and 0.92), so a threshold of 0.8 means "at most
about two words in 60 changed", and short texts need a lower one or `shingle="char5"`.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence

import numpy as np
import polars as pl
import pyarrow as pa

from persrm_core.data.minhash import (
    POLY,
    SETS,
    WORD_PATTERN,
    _chunked,
    _mix,
    _parse_shingle,
    _series,
    _shingle_hashes,
    choose_bands,
    minhash_signatures,
)


def _band_keys(sigs: np.ndarray, bands: int, rows: int) -> np.ndarray:
    """[n, bands] uint64: each band's `rows` signature values hashed to one key (band-specific,
    so equal values in different bands never share a bucket)."""
    if bands * rows > sigs.shape[1]:
        raise ValueError(f"{bands} bands x {rows} rows needs {bands * rows} permutations, "
                         f"signatures have {sigs.shape[1]}")
    keys = np.empty((sigs.shape[0], bands), np.uint64)
    for band in range(bands):
        block = np.ascontiguousarray(sigs[:, band * rows:(band + 1) * rows].T)  # [rows, n]
        acc = np.full(sigs.shape[0], np.uint64((band + 1) * 0x9E3779B97F4A7C15 % 2**64), np.uint64)
        for col in block:
            acc *= POLY
            acc += col
        keys[:, band] = _mix(acc)
    return keys


def _repeated(keys: np.ndarray) -> np.ndarray:
    """Indices of the keys that occur more than once, ascending. A bincount over the top bits
    discards most unique keys first, so only a few percent are sorted (Polars `is_duplicated`
    over the 12M keys of 1M texts took 3.5 s here, this 0.9 s for all 12 bands)."""
    bits = int(min(max(math.ceil(math.log2(max(len(keys), 2))) + 3, 8), 26))
    top = (keys >> np.uint64(64 - bits)).astype(np.intp)
    maybe = np.flatnonzero(np.bincount(top, minlength=1 << bits)[top] > 1)
    if not len(maybe):
        return maybe
    sub = keys[maybe]
    order = np.argsort(sub, kind="stable")
    sk = sub[order]
    dup = np.r_[False, sk[1:] == sk[:-1]] | np.r_[sk[:-1] == sk[1:], False]
    return np.sort(maybe[order[dup]])


def _bucket_pairs(keys: np.ndarray, idx: np.ndarray, max_bucket: int) -> np.ndarray:
    """All pairs within each run of equal keys (keys sorted). A run longer than `max_bucket`
    (in practice many copies of one text) is linked as a star through its first member, so the
    pair count stays linear; connectivity, and so clustering, is unchanged."""
    if len(keys) < 2:
        return np.empty((0, 2), np.int64)
    starts = np.flatnonzero(np.r_[True, keys[1:] != keys[:-1]])
    sizes = np.diff(np.r_[starts, len(keys)])
    big = sizes > max_bucket
    # clique: element at position q of a run of size g pairs with the g - q - 1 after it
    pos = np.arange(len(keys))
    run = np.repeat(np.arange(len(starts)), sizes)
    q = pos - starts[run]
    partners = np.where(big[run], 0, sizes[run] - q - 1)
    total = int(partners.sum())
    left = np.repeat(pos, partners)
    right = left + 1 + (np.arange(total) - np.repeat(np.cumsum(partners) - partners, partners))
    # star for the big runs: first member with each other member
    star_members = pos[big[run] & (q > 0)]
    star_first = starts[run[star_members]]
    i = np.concatenate([idx[left], idx[star_first]])
    j = np.concatenate([idx[right], idx[star_members]])
    return np.stack([np.minimum(i, j), np.maximum(i, j)], axis=1).astype(np.int64)


def _unique_pairs(pairs: np.ndarray) -> np.ndarray:
    pairs = pairs[pairs[:, 0] != pairs[:, 1]]
    if not len(pairs):
        return np.empty((0, 2), np.int64)
    code = np.unique(pairs[:, 0].astype(np.uint64) << np.uint64(32) | pairs[:, 1].astype(np.uint64))
    low = (code & np.uint64(0xFFFFFFFF)).astype(np.int64)
    return np.stack([(code >> np.uint64(32)).astype(np.int64), low], 1)


def lsh_candidates(sigs: np.ndarray, bands: int, rows: int, max_bucket: int = 64) -> np.ndarray:
    """Candidate pairs [m, 2] (int64, i < j, sorted, unique): texts whose signatures agree on all
    `rows` values of at least one of `bands` bands. See `choose_bands` for the threshold."""
    if sigs.shape[0] >= 2**32:
        raise ValueError("at most 2^32 - 1 texts")
    keys = _band_keys(sigs, bands, rows)
    found = []
    for band in range(bands):
        idx = _repeated(keys[:, band])
        idx = idx[np.argsort(keys[idx, band], kind="stable")]  # by key, then by index
        found.append(_bucket_pairs(keys[idx, band], idx, max_bucket))
    return _unique_pairs(np.concatenate(found))


def shingle_sets(texts: pl.Series | Sequence[str], shingle: str = "word3", seed: int = 0,
                 normalize: bool = True, chunk_size: int = 50_000, workers: int | None = None) -> pl.Series:
    """Each text's shingles as a list[u64] Series (64-bit hashes; repeats kept, set ops ignore
    them). Every function here that takes texts also takes this Series (made with the same
    `shingle` and `seed`), so a filter running several gates over the same texts splits and
    hashes them once: that is most of the cost (`str.extract_all` alone is ~70% of it)."""
    s = _series(texts)
    if s.dtype == SETS:
        return s
    parts = _chunked(len(s), chunk_size, workers, lambda start: _list_series(
        *_shingle_hashes(s.slice(start, chunk_size), shingle, seed, normalize)))
    out = pl.concat(parts, rechunk=False) if parts else pl.Series([], dtype=SETS)
    return out.alias("shingles")


def _list_series(offsets: np.ndarray, values: np.ndarray) -> pl.Series:
    """A list Series over numpy offsets and values, zero-copy (Arrow buffers rather than
    `pa.array`, which would import pandas: 1.5 s on a first call)."""
    arrow_type = {np.dtype(np.uint64): pa.uint64(), np.dtype(np.int64): pa.int64()}[values.dtype]
    vals = pa.Array.from_buffers(arrow_type, len(values), [None, pa.py_buffer(values)])
    offsets = offsets.astype(np.int64)
    offs = pa.Array.from_buffers(pa.int64(), len(offsets), [None, pa.py_buffer(offsets)])
    return pl.from_arrow(pa.LargeListArray.from_arrays(offs, vals))


def _set_jaccard(a: pl.Series, b: pl.Series, chunk_size: int = 200_000) -> pl.Series:
    """Exact Jaccard of two list[u64] columns, row by row: |A & B| / (|A| + |B| - |A & B|), so
    only the intersections are built (the unions would double the memory), in row chunks."""
    parts = []
    for start in range(0, len(a), chunk_size):
        frame = pl.DataFrame({"a": a.slice(start, chunk_size), "b": b.slice(start, chunk_size)})
        inter = pl.col("a").list.set_intersection("b").list.len()
        union = pl.col("a").list.n_unique() + pl.col("b").list.n_unique() - inter
        parts.append(frame.select((inter / union).alias("jaccard"))["jaccard"])
    return pl.concat(parts) if parts else pl.Series("jaccard", [], dtype=pl.Float64)


def _verify(pairs: np.ndarray, left: pl.Series, right: pl.Series | None, threshold: float,
            shingle: str, seed: int) -> pl.DataFrame:
    """Exact Jaccard of candidate pairs (left[i], right[j]; right = left when None), kept if
    >= threshold. Shingle sets are rebuilt only for the texts that appear in a candidate."""
    empty = pl.DataFrame({"i": [], "j": [], "jaccard": []},
                         schema={"i": pl.Int64, "j": pl.Int64, "jaccard": pl.Float64})
    if not len(pairs):
        return empty
    if right is None:
        ids, inv = np.unique(pairs, return_inverse=True)
        sets = shingle_sets(left.gather(ids), shingle, seed)
        li, ri = inv.reshape(-1, 2)[:, 0], inv.reshape(-1, 2)[:, 1]
        sa, sb = sets.gather(li), sets.gather(ri)
    else:
        lid, linv = np.unique(pairs[:, 0], return_inverse=True)
        rid, rinv = np.unique(pairs[:, 1], return_inverse=True)
        sa = shingle_sets(left.gather(lid), shingle, seed).gather(linv)
        sb = shingle_sets(right.gather(rid), shingle, seed).gather(rinv)
    jac = _set_jaccard(sa, sb).to_numpy()
    keep = jac >= threshold - 1e-12
    return pl.DataFrame({"i": pairs[keep, 0], "j": pairs[keep, 1], "jaccard": jac[keep]})


def near_duplicate_pairs(texts: pl.Series | Sequence[str], threshold: float = 0.8, num_perm: int = 64,
                         shingle: str = "word3", seed: int = 0, max_bucket: int = 64) -> pl.DataFrame:
    """Pairs of texts (columns i < j, jaccard) whose exact shingle Jaccard is >= threshold, found
    through MinHash LSH: a pair at the threshold is missed with probability <= 1% (see
    `choose_bands`), and no pair below it is reported. Sorted by (i, j)."""
    s = _series(texts)
    bands, rows = choose_bands(num_perm, threshold)
    sigs = minhash_signatures(s, num_perm, shingle, seed)
    cands = lsh_candidates(sigs, bands, rows, max_bucket)
    return _verify(cands, s, None, threshold, shingle, seed).sort("i", "j")


def connected_components(n: int, pairs: np.ndarray) -> np.ndarray:
    """Component label per node = the smallest node index in its component (union-find done
    as vectorised hooking and pointer jumping, O(log n) rounds)."""
    parent = np.arange(n, dtype=np.int64)
    if not len(pairs):
        return parent
    i, j = pairs[:, 0].astype(np.int64), pairs[:, 1].astype(np.int64)
    while True:
        pi, pj = parent[i], parent[j]
        differ = pi != pj
        if not differ.any():
            return parent
        lo, hi = np.minimum(pi, pj)[differ], np.maximum(pi, pj)[differ]
        np.minimum.at(parent, hi, lo)  # hook the larger root under the smaller
        while True:  # shortcut until every node points at its root
            grand = parent[parent]
            if np.array_equal(grand, parent):
                break
            parent = grand


def near_duplicate_clusters(texts: pl.Series | Sequence[str], threshold: float = 0.8, num_perm: int = 64,
                            shingle: str = "word3", seed: int = 0) -> np.ndarray:
    """Cluster id per text (int64): texts joined by a chain of verified near-duplicate pairs
    share an id, which is the smallest index in the cluster, so `ids == np.arange(n)` keeps the
    first text of each cluster."""
    s = _series(texts)
    pairs = near_duplicate_pairs(s, threshold, num_perm, shingle, seed)
    return connected_components(len(s), pairs.select("i", "j").to_numpy())


def cross_near_duplicates(query_texts: pl.Series | Sequence[str],
                          reference_texts: pl.Series | Sequence[str], threshold: float = 0.8,
                          num_perm: int = 64, shingle: str = "word3", seed: int = 0,
                          max_bucket: int = 64) -> np.ndarray:
    """bool per query text: does it near-duplicate (exact Jaccard >= threshold) any reference
    text? For train-vs-eval leakage. Each reference bucket is checked against at most
    `max_bucket` of its members (enough unless one bucket holds that many different texts)."""
    q, r = _series(query_texts), _series(reference_texts)
    hit = np.zeros(len(q), bool)
    if not len(q) or not len(r):
        return hit
    bands, rows = choose_bands(num_perm, threshold)
    qk = _band_keys(minhash_signatures(q, num_perm, shingle, seed), bands, rows)
    rk = _band_keys(minhash_signatures(r, num_perm, shingle, seed), bands, rows)
    ref = (pl.DataFrame({"key": rk.reshape(-1), "r": np.repeat(np.arange(len(r), dtype=np.uint32), bands)})
           .group_by("key").agg(pl.col("r").head(max_bucket)).explode("r"))
    qry = pl.DataFrame({"key": qk.reshape(-1), "q": np.repeat(np.arange(len(q), dtype=np.uint32), bands)})
    joined = qry.join(ref, on="key", how="inner").select("q", "r").unique()
    pairs = joined.to_numpy().astype(np.int64)
    found = _verify(pairs, q, r, threshold, shingle, seed)
    hit[found["i"].to_numpy()] = True
    return hit


def rowwise_similarity(a: pl.Series, b: pl.Series, shingle: str = "word3", normalize: bool = True,
                       seed: int = 0) -> pl.Series:
    """Exact shingle Jaccard of a[i] and b[i] for each row (Float64; null where either is null);
    a and b may be texts or `shingle_sets`.

    With `normalize` (the default) case, punctuation, emoji and spacing do not count, so a rule
    perturbation that only changes those scores 1.0; pass normalize=False to compare the tokens
    as written when style itself is the difference that must survive."""
    if len(a) != len(b):
        raise ValueError(f"length mismatch: {len(a)} vs {len(b)}")
    sim = _set_jaccard(shingle_sets(a, shingle, seed, normalize), shingle_sets(b, shingle, seed, normalize))
    nulls = a.is_null() | b.is_null()
    return pl.select(pl.when(nulls).then(None).otherwise(sim)).to_series().alias("similarity")


def reference_shingles(text: str, shingle: str = "word3") -> set:
    """The shingle set of one text in plain Python (the definition the vectorised code follows):
    lowercase `\\w+` words; word n-grams as tuples, char n-grams as byte strings of the words
    joined by single spaces; a text shorter than n is one shingle of all of it."""
    kind, n = _parse_shingle(shingle)
    words = re.findall(WORD_PATTERN, text.lower())
    seq: Sequence = words if kind == "word" else " ".join(words).encode()
    if len(seq) < n:
        return {tuple(seq) if kind == "word" else bytes(seq)}
    return {tuple(seq[k:k + n]) if kind == "word" else bytes(seq[k:k + n]) for k in range(len(seq) - n + 1)}


def exact_near_duplicate_pairs(texts: pl.Series | Sequence[str], threshold: float = 0.8,
                               shingle: str = "word3", block: int = 2048) -> pl.DataFrame:
    """The O(n^2) reference: exact Jaccard of every pair of texts from plain-Python shingle sets
    (`reference_shingles`), as a sparse incidence matrix times its transpose in row blocks; same
    output as `near_duplicate_pairs`. For tests and benchmarks, not for corpus scale."""
    from scipy import sparse

    s = _series(texts)
    if s.dtype == SETS:
        raise TypeError("the exact reference shingles texts itself: pass texts, not shingle sets")
    sets = [reference_shingles(t, shingle) for t in s.to_list()]
    vocab: dict = {}
    cols = [[vocab.setdefault(sh, len(vocab)) for sh in s] for s in sets]
    sizes = np.array([len(c) for c in cols], np.int64)
    indptr = np.r_[0, np.cumsum(sizes)]
    indices = np.fromiter((c for cs in cols for c in cs), np.int64, int(indptr[-1]))
    m = sparse.csr_matrix((np.ones(len(indices), np.int32), indices, indptr), shape=(len(sets), len(vocab)))
    out_i, out_j, out_s = [], [], []
    for r0 in range(0, len(sets), block):
        inter = (m[r0:r0 + block] @ m.T).tocoo()
        i, j, k = inter.row + r0, inter.col, inter.data.astype(float)
        upper = i < j
        i, j, k = i[upper], j[upper], k[upper]
        jac = k / (sizes[i] + sizes[j] - k)
        keep = jac >= threshold - 1e-12
        out_i.append(i[keep]), out_j.append(j[keep]), out_s.append(jac[keep])
    frame = pl.DataFrame({"i": np.concatenate(out_i).astype(np.int64) if out_i else np.empty(0, np.int64),
                          "j": np.concatenate(out_j).astype(np.int64) if out_j else np.empty(0, np.int64),
                          "jaccard": np.concatenate(out_s) if out_s else np.empty(0)})
    return frame.sort("i", "j")
