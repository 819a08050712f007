"""Data: the texts people wrote and the corpus built from them.

`ingest` reads raw exemplars (a folder per author, or JSONL) into exemplar records and rejects bad
input with one error naming the file and record; `real_authors` builds neutral-prompt pairs from a
directory-per-author corpus of real writing for evaluation; `corpus` runs the quality gates over
the synthetic pairs (length, balance, leakage, near-duplicates) and writes the filtered train and
eval splits; `neardup` is the MinHash + LSH near-duplicate search those gates use.
"""
