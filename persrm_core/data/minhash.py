"""MinHash signatures of texts, column-wise: normalised words hashed by Polars, shingles and
signatures by numpy (`persrm_core.data.neardup` bands them for LSH and verifies candidates exactly).

Texts are compared as sets of shingles of their normalised words (lowercase, runs of letters and
digits; punctuation, emoji and spacing ignored); word 3-grams by default (see `neardup`).
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import polars as pl
import pyarrow as pa

WORD_PATTERN = r"\w+"  # Unicode letters, digits and "_" (the same class in Polars and `re`)
POLY = np.uint64(0x100000001B3)  # odd multiplier for folding n tokens into one shingle value
SETS = pl.List(pl.UInt64)  # the dtype of `shingle_sets`, accepted wherever texts are


def _series(texts: pl.Series | Sequence[str]) -> pl.Series:
    """Texts as a String Series with nulls as "" (or precomputed shingle sets, unchanged)."""
    s = texts if isinstance(texts, pl.Series) else pl.Series(list(texts), dtype=pl.String)
    return s if s.dtype == SETS else s.cast(pl.String).fill_null("")


def _mix(z: np.ndarray) -> np.ndarray:
    """splitmix64's finaliser: every output bit depends on every input bit (in place)."""
    z ^= z >> np.uint64(30)
    z *= np.uint64(0xBF58476D1CE4E5B9)
    z ^= z >> np.uint64(27)
    z *= np.uint64(0x94D049BB133111EB)
    z ^= z >> np.uint64(31)
    return z


def _parse_shingle(shingle: str) -> tuple[str, int]:
    m = re.fullmatch(r"(word|char)(\d+)", shingle)
    if not m or not 1 <= int(m.group(2)) <= 16:
        raise ValueError(f"shingle must look like 'word3' or 'char5' (n from 1 to 16), got {shingle!r}")
    return m.group(1), int(m.group(2))


def _ngrams(tokens: np.ndarray, offsets: np.ndarray, n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Hash every run of n consecutive tokens within each row into one uint64 shingle.

    Rows shorter than n give one shingle of all their tokens (an empty row gives the same
    constant for every empty text), so every row has at least one shingle and two empty texts
    count as identical. Returns (shingle offsets per row, shingle hashes)."""
    tokens = tokens.astype(np.uint64, copy=False)
    lengths = np.diff(offsets)
    long_rows = lengths >= n
    counts = np.where(long_rows, lengths - n + 1, 1)
    out_offsets = np.zeros(len(lengths) + 1, np.int64)
    np.cumsum(counts, out=out_offsets[1:])
    init = np.uint64((seed * 0x9E3779B97F4A7C15 + n) % 2**64)
    # Long rows: fold shifted views of the whole token array (no gathers), then drop the
    # windows that cross into the next row (the last n - 1 starts of each row).
    width = max(len(tokens) - n + 1, 0)
    acc = np.full(width, init, np.uint64)
    for t in range(n):
        acc *= POLY
        acc += tokens[t:t + width]
        acc += np.uint64(1)  # +1 so a missing token (0 below) differs from any real one
    valid = np.ones(width, bool)
    for k in range(1, n):  # the window starting k tokens before a row's end crosses it
        start = offsets[1:] - k
        valid[start[(start >= offsets[:-1]) & (start < width)]] = False
    out = np.empty(int(out_offsets[-1]), np.uint64)
    short = ~long_rows
    if short.any():  # rows shorter than n: one padded window each
        first, length = offsets[:-1][short], lengths[short]
        padded = np.append(tokens, np.uint64(0))
        sacc = np.full(len(first), init, np.uint64)
        for t in range(n):
            sacc *= POLY
            sacc += padded[np.where(t < length, first + t, len(tokens))] + np.uint64(1)
        is_long = np.repeat(long_rows, counts)
        out[is_long] = acc[valid]
        out[~is_long] = sacc
    else:
        out[:] = acc[valid]
    return out_offsets, _mix(out)


def _shingle_hashes(texts: pl.Series, shingle: str = "word3", seed: int = 0,
                    normalize: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """(offsets [n+1] int64, shingle hashes uint64); row i's shingles are
    hashes[offsets[i]:offsets[i + 1]].

    With `normalize` words are lowercase runs of letters and digits; without it they are the
    whitespace-separated tokens as written (case and punctuation count)."""
    kind, n = _parse_shingle(shingle)
    s = _series(texts)
    if s.dtype == SETS:  # already shingled by `shingle_sets` (same shingle and seed assumed)
        lengths = s.list.len().fill_null(0).to_numpy().astype(np.int64)
        if len(lengths) and lengths.min() < 1:
            raise ValueError("shingle sets must be non-empty (as `shingle_sets` makes them)")
        offsets = np.zeros(len(lengths) + 1, np.int64)
        np.cumsum(lengths, out=offsets[1:])
        return offsets, s.explode(empty_as_null=False, keep_nulls=False).to_numpy()
    words = (s.str.to_lowercase().str.extract_all(WORD_PATTERN) if normalize
             else s.str.extract_all(r"\S+"))
    if kind == "word":
        lengths = words.list.len().fill_null(0).to_numpy().astype(np.int64)
        tokens = words.explode(empty_as_null=False, keep_nulls=False).hash(seed=seed).to_numpy()
    else:  # bytes of the normalised text, words joined by one space (= characters for ASCII)
        arr = words.list.join(" ").fill_null("").rechunk().to_arrow().cast(pa.large_string())
        raw = np.frombuffer(arr.buffers()[1], np.int64, len(arr) + 1, arr.offset * 8)
        data = arr.buffers()[2]
        tokens = (np.frombuffer(data, np.uint8, int(raw[-1] - raw[0]), int(raw[0]))
                  if raw[-1] > raw[0] else np.empty(0, np.uint8))
        lengths = np.diff(raw)
    offsets = np.zeros(len(lengths) + 1, np.int64)
    np.cumsum(lengths, out=offsets[1:])
    return _ngrams(tokens, offsets, n, seed)


def _permutations(num_perm: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng([seed, num_perm])
    a = (rng.integers(0, 2**31, num_perm, dtype=np.uint64) * 2 + 1).astype(np.uint32)
    b = rng.integers(0, 2**32, num_perm, dtype=np.uint64).astype(np.uint32)
    return a, b


def _minhash(offsets: np.ndarray, hashes: np.ndarray, a: np.ndarray, b: np.ndarray,
             block: int = 16_384) -> np.ndarray:
    """Row minima of (a*x + b) mod 2^32 for each of the permutations (a, b), x = the top 32 bits
    of each shingle hash. Blocks of rows are laid out permutation-major ([perm, shingle]) so the
    multiply-add is one vectorised pass and `np.minimum.reduceat` reduces contiguous runs."""
    x = (hashes >> np.uint64(32)).astype(np.uint32)
    n = len(offsets) - 1
    out = np.empty((n, len(a)), np.uint32)
    r0 = 0
    while r0 < n:
        r1 = int(np.searchsorted(offsets, offsets[r0] + block, "right")) - 1
        r1 = min(max(r1, r0 + 1), n)
        s0, s1 = offsets[r0], offsets[r1]
        blk = np.multiply(a[:, None], x[None, s0:s1])
        blk += b[:, None]
        out[r0:r1] = np.minimum.reduceat(blk, offsets[r0:r1] - s0, axis=1).T
        r0 = r1
    return out


def _chunked(n: int, chunk_size: int, workers: int | None, fn) -> list:
    """fn(start) for each chunk start, in order, on threads: Polars and numpy release the GIL
    for their loops, so chunks on threads can use all cores while memory stays per chunk."""
    starts = range(0, n, chunk_size)
    workers = max(1, min(workers or os.cpu_count() or 1, len(starts)))
    if workers == 1:
        return [fn(start) for start in starts]
    with ThreadPoolExecutor(workers) as pool:
        return list(pool.map(fn, starts))


def minhash_signatures(texts: pl.Series | Sequence[str], num_perm: int = 64, shingle: str = "word3",
                       seed: int = 0, chunk_size: int = 50_000, workers: int | None = None) -> np.ndarray:
    """MinHash signatures [n, num_perm] (uint32) of each text's shingle set.

    Row i and row j agree in each column with probability equal to the Jaccard similarity of
    their shingle sets. Permutations are multiply-add hashes mod 2^32 of a well-mixed 32-bit
    shingle hash; uint32 rather than uint64 because numpy's 32-bit multiply is vectorised
    (0.34 vs 0.64 ns per value here) and signatures take half the memory, while two different
    shingles of a pair collide on 32 bits with probability ~1e-6. Texts are processed
    `chunk_size` at a time on `workers` threads (default: all cores)."""
    s = _series(texts)
    a, b = _permutations(num_perm, seed)
    out = np.empty((len(s), num_perm), np.uint32)

    def run(start: int) -> None:
        offsets, hashes = _shingle_hashes(s.slice(start, chunk_size), shingle, seed)
        out[start:start + len(offsets) - 1] = _minhash(offsets, hashes, a, b)

    _chunked(len(s), chunk_size, workers, run)
    return out


def candidate_probability(similarity: float | np.ndarray, bands: int, rows: int) -> float | np.ndarray:
    """Chance that two texts with this Jaccard similarity share at least one LSH bucket."""
    return 1.0 - (1.0 - np.asarray(similarity, float) ** rows) ** bands


def choose_bands(num_perm: int, threshold: float, min_recall: float = 0.99) -> tuple[int, int]:
    """(bands, rows) for LSH: the most rows per band (fewest false candidates) that still make a
    pair exactly at `threshold` a candidate with probability >= `min_recall`. For 64
    permutations and 0.8 that is 12 bands of 5 rows: P(candidate) is 0.991 at J=0.8, 0.99998 at
    0.9, but 0.32 at 0.5 and 0.004 at 0.2, so unrelated text rarely reaches verification."""
    if not 0.0 < threshold <= 1.0:
        raise ValueError(f"threshold must be in (0, 1], got {threshold}")
    for rows in range(num_perm, 0, -1):
        bands = num_perm // rows
        if candidate_probability(threshold, bands, rows) >= min_recall:
            return bands, rows
    return num_perm, 1
