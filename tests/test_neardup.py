"""persrm_core.data.neardup: the vectorised shingles equal the plain-Python definition, LSH finds the
pairs the exact O(n^2) search finds (recall >= 0.95, precision 1.0), and clusters, cross-set
leakage and row-wise similarity agree with hand-computed and brute-force answers."""

from __future__ import annotations

import random
from itertools import combinations

import numpy as np
import polars as pl
import pytest

from persrm_core.data import minhash as mh
from persrm_core.data import neardup as nd


def vocabulary(rng: np.random.Generator, size: int = 3000) -> list[str]:
    letters = "abcdefghijklmnopqrstuvwxyz"
    return ["".join(rng.choice(list(letters), int(rng.integers(2, 9)))) for _ in range(size)]


def corpus(n: int, seed: int, planted: int) -> tuple[list[str], list[tuple[int, int]]]:
    """n texts of 20-100 Zipf-drawn words; `planted` of them are copies of another text with one
    or two words replaced, case changed or spacing changed."""
    rng = np.random.default_rng(seed)
    vocab = vocabulary(rng)
    p = 1.0 / np.arange(1, len(vocab) + 1)
    p /= p.sum()
    texts = [" ".join(rng.choice(vocab, int(rng.integers(20, 101)), p=p)) for _ in range(n)]
    order = rng.permutation(n)
    pairs = []
    for k in range(planted):
        src, dst = int(order[k]), int(order[planted + k])
        words = texts[src].split()
        for pos in rng.choice(len(words), int(rng.integers(1, 3)), replace=False):
            words[pos] = str(rng.choice(vocab))
        text = " ".join(words)
        texts[dst] = [text, text.upper(), text.replace(" ", "\n  "), text + "!"][k % 4]
        pairs.append((min(src, dst), max(src, dst)))
    return texts, pairs


def pair_set(frame: pl.DataFrame) -> set[tuple[int, int]]:
    return set(map(tuple, frame.select("i", "j").to_numpy().tolist()))


def jaccard(a: set, b: set) -> float:
    return len(a & b) / len(a | b)


TRICKY = ["", " ", "one", "Two words", "three little words", "Hello, World! hello world",
          "Café au lait, s'il vous plaît — 3 euros", "tabs\tand\nnewlines  and   spaces",
          "emoji 🎉 do not count 🎉", "UPPER lower Mixed", "x_y snake_case 42", "a a a a a a"]


@pytest.mark.parametrize("shingle", ["word1", "word2", "word3", "word5", "char5", "char3"])
def test_vectorised_shingles_equal_the_python_definition(shingle):
    rng = random.Random(0)
    words = ["a", "b", "c", "Dé", "e,", "F!", "g_h", "9", "🎉"]
    texts = TRICKY + [" ".join(rng.choice(words) for _ in range(rng.choice([0, 1, 2, 3, 4, 8, 30])))
                      for _ in range(300)]
    offsets, hashes = mh._shingle_hashes(pl.Series(texts), shingle)
    got = [set(hashes[offsets[i]:offsets[i + 1]].tolist()) for i in range(len(texts))]
    want = [nd.reference_shingles(t, shingle) for t in texts]
    assert [len(g) for g in got] == [len(w) for w in want]
    for i, j in [(rng.randrange(len(texts)), rng.randrange(len(texts))) for _ in range(3000)]:
        assert len(got[i] & got[j]) == len(want[i] & want[j])


def test_planted_near_duplicates_are_found_and_unrelated_texts_are_not():
    rng = np.random.default_rng(1)
    vocab = vocabulary(rng)
    base = [" ".join(rng.choice(vocab, 60)) for _ in range(40)]
    one_word = base[0].split()
    one_word[30] = "zzzz"
    two_words = base[1].split()
    two_words[10], two_words[45] = "yyyy", "xxxx"
    variants = [" ".join(one_word), " ".join(two_words), base[2].upper(),
                "  " + base[3].replace(" ", "\t \n") + "\n", base[4].replace(" ", ", ") + "."]
    texts = base + variants
    pairs = nd.near_duplicate_pairs(texts, threshold=0.8)
    assert pair_set(pairs) == {(0, 40), (1, 41), (2, 42), (3, 43), (4, 44)}
    sims = dict(zip(pairs["i"].to_list(), pairs["jaccard"].to_list()))
    assert sims[0] == pytest.approx(55 / 61) and sims[1] == pytest.approx(52 / 64)
    assert sims[2] == sims[3] == sims[4] == 1.0
    ids = nd.near_duplicate_clusters(texts)
    assert (ids[40:] == np.arange(5)).all() and (ids[:40] == np.arange(40)).all()


def test_lsh_matches_the_exact_search():
    texts, planted = corpus(2500, seed=2, planted=60)
    exact = nd.exact_near_duplicate_pairs(texts, threshold=0.8)
    lsh = nd.near_duplicate_pairs(texts, threshold=0.8)
    want, got = pair_set(exact), pair_set(lsh)
    assert len(want) >= 40  # most planted pairs are above 0.8 (texts of 20 words may fall below)
    assert got <= want  # precision 1.0: every reported pair is verified exactly
    assert len(got & want) / len(want) >= 0.95
    both = exact.join(lsh, on=["i", "j"], suffix="_lsh")
    assert np.allclose(both["jaccard"].to_numpy(), both["jaccard_lsh"].to_numpy())
    # a lower threshold finds the pairs the higher one found, and more
    assert got <= pair_set(nd.near_duplicate_pairs(texts, threshold=0.6))


def test_signatures_estimate_jaccard_and_are_deterministic():
    texts, planted = corpus(600, seed=3, planted=100)
    sigs = mh.minhash_signatures(texts, num_perm=128)
    assert sigs.shape == (600, 128) and sigs.dtype == np.uint32
    assert (mh.minhash_signatures(texts, num_perm=128) == sigs).all()
    same = mh.minhash_signatures(texts, num_perm=128, chunk_size=7, workers=2)
    assert (same == sigs).all()  # chunking and threads do not change the result
    assert not (mh.minhash_signatures(texts, num_perm=128, seed=1) == sigs).all()
    errors = []
    for i, j in planted:
        est = float((sigs[i] == sigs[j]).mean())
        errors.append(est - jaccard(nd.reference_shingles(texts[i]), nd.reference_shingles(texts[j])))
    assert abs(np.mean(errors)) < 0.02 and np.std(errors) < 0.07  # unbiased, ~binomial spread
    assert nd.near_duplicate_pairs(texts).equals(nd.near_duplicate_pairs(texts))


def test_choose_bands_and_candidate_probability():
    assert mh.choose_bands(64, 0.8) == (12, 5)
    for num_perm, threshold in [(64, 0.8), (64, 0.5), (128, 0.9), (32, 0.7)]:
        bands, rows = mh.choose_bands(num_perm, threshold)
        assert bands * rows <= num_perm
        assert mh.candidate_probability(threshold, bands, rows) >= 0.99
        assert mh.candidate_probability(0.1, bands, rows) < mh.candidate_probability(threshold, bands, rows)
    with pytest.raises(ValueError):
        mh.choose_bands(64, 0.0)
    with pytest.raises(ValueError):
        nd.lsh_candidates(np.zeros((3, 8), np.uint32), bands=3, rows=3)


def test_lsh_buckets_and_the_star_for_big_buckets():
    rng = np.random.default_rng(4)
    sigs = rng.integers(0, 2**32, (300, 10), dtype=np.uint64).astype(np.uint32)
    sigs[100:200] = sigs[5]  # 101 identical rows: 5 and 100..199
    sigs[250, :5] = sigs[7, :5]  # shares band 0 only
    cands = nd.lsh_candidates(sigs, bands=2, rows=5, max_bucket=1000)
    group = [5, *range(100, 200)]
    assert set(map(tuple, cands.tolist())) == set(combinations(group, 2)) | {(7, 250)}
    star = nd.lsh_candidates(sigs, bands=2, rows=5, max_bucket=10)
    assert set(map(tuple, star.tolist())) == {(5, k) for k in range(100, 200)} | {(7, 250)}
    assert (nd.connected_components(300, star)[group] == 5).all()


def test_connected_components_matches_a_search():
    rng = np.random.default_rng(5)
    n = 400
    edges = rng.integers(0, n, (300, 2))
    edges = np.r_[edges, [[k, k + 1] for k in range(200, 260)]]  # a long chain
    labels = nd.connected_components(n, edges)
    adjacency: dict[int, set[int]] = {k: set() for k in range(n)}
    for a, b in edges.tolist():
        adjacency[a].add(b), adjacency[b].add(a)
    for start in range(n):
        seen, todo = {start}, [start]
        while todo:
            for nxt in adjacency[todo.pop()] - seen:
                seen.add(nxt), todo.append(nxt)
        assert labels[start] == min(seen)
    assert (nd.connected_components(3, np.empty((0, 2), np.int64)) == [0, 1, 2]).all()


def test_clusters_follow_chains():
    rng = np.random.default_rng(6)
    vocab = vocabulary(rng)
    a = list(rng.choice(vocab, 80))
    b, c = a.copy(), a.copy()
    b[10:13] = ["q1", "q2", "q3"]  # b ~ a, c ~ b, but c is further from a
    c[10:13] = ["q1", "q2", "q3"]
    c[60:63] = ["r1", "r2", "r3"]
    other = [" ".join(rng.choice(vocab, 80)) for _ in range(5)]
    texts = other[:2] + [" ".join(c)] + other[2:] + [" ".join(b), " ".join(a)]
    sims = nd.rowwise_similarity(pl.Series([texts[7], texts[6]]), pl.Series([texts[2], texts[2]]))
    assert sims[0] < 0.8 <= sims[1]  # a-c below the threshold, b-c above
    ids = nd.near_duplicate_clusters(texts, threshold=0.8)
    assert list(ids) == [0, 1, 2, 3, 4, 5, 2, 2]


def test_cross_near_duplicates_matches_brute_force():
    texts, _ = corpus(900, seed=7, planted=0)
    reference, queries = texts[:600], texts[600:]
    rng = np.random.default_rng(8)
    leaked = rng.choice(300, 40, replace=False)
    for q in leaked:
        words = reference[int(q)].split()
        words[len(words) // 2] = "leak"
        queries[int(q)] = " ".join(words).upper() if q % 2 else " ".join(words)
    hit = nd.cross_near_duplicates(queries, reference, threshold=0.8)
    exact = nd.exact_near_duplicate_pairs(reference + queries, threshold=0.8)  # brute force
    across = exact.filter((pl.col("i") < 600) & (pl.col("j") >= 600))["j"].to_numpy() - 600
    want = np.isin(np.arange(300), across)
    assert want.sum() >= 30
    assert (hit <= want).all() and hit[want].mean() >= 0.95
    assert not nd.cross_near_duplicates([], reference).size
    assert not nd.cross_near_duplicates(queries[:3], []).any()


def test_rowwise_similarity_by_hand():
    a = pl.Series(["a b c d e", "Shares rose, analysts said.", "one two", "one", "", "x y z", None,
                   "a b c a b c"])
    b = pl.Series(["a b c d f", "shares   ROSE analysts said", "one two", "two", "", "p q r", "x",
                   "a b c"])
    sim = nd.rowwise_similarity(a, b)
    # {abc, bcd, cde} vs {abc, bcd, cdf}: 2 shared of 4; the 2-word texts are one shingle each
    assert sim.to_list() == [0.5, 1.0, 1.0, 0.0, 1.0, 0.0, None, 1 / 3]
    raw = nd.rowwise_similarity(pl.Series(["Shares rose, analysts said."]),
                                pl.Series(["shares rose, analysts said."]), normalize=False)
    assert raw.to_list() == [1 / 3]  # "Shares" differs: {S r a, r a s} vs {s r a, r a s}
    assert nd.rowwise_similarity(a, b, shingle="word1")[0] == pytest.approx(4 / 6)
    with pytest.raises(ValueError):
        nd.rowwise_similarity(a, b.head(2))
    with pytest.raises(ValueError):
        nd.rowwise_similarity(a, b, shingle="sentence2")


def test_precomputed_shingle_sets_give_the_same_answers():
    texts, _ = corpus(800, seed=9, planted=40)
    sets = nd.shingle_sets(texts)
    assert sets.dtype == pl.List(pl.UInt64) and nd.shingle_sets(sets) is sets
    assert (mh.minhash_signatures(sets) == mh.minhash_signatures(texts)).all()
    assert nd.near_duplicate_pairs(sets).equals(nd.near_duplicate_pairs(texts))
    assert (nd.near_duplicate_clusters(sets) == nd.near_duplicate_clusters(texts)).all()
    assert (nd.cross_near_duplicates(sets[400:], sets[:400]) ==
            nd.cross_near_duplicates(texts[400:], texts[:400])).all()
    a, b = np.arange(0, 800, 2), np.arange(1, 800, 2)
    by_sets = nd.rowwise_similarity(sets.gather(a), sets.gather(b))
    assert by_sets.equals(nd.rowwise_similarity(pl.Series(texts).gather(a), pl.Series(texts).gather(b)))
    with pytest.raises(TypeError):
        nd.exact_near_duplicate_pairs(sets)
    with pytest.raises(ValueError):
        mh.minhash_signatures(pl.Series([[1], []], dtype=pl.List(pl.UInt64)))
