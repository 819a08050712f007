"""Judges: a trained checkpoint that reasons and gives a verdict, and training-free baselines.

Every judge maps pair records to judgment records (README, "Record shapes") in the same order. A judge
may be asked to read each pair in both A/B orders; the swapped reading is mapped back, so
`choice` always refers to the original order.
"""

from __future__ import annotations

import dataclasses
import random
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol, runtime_checkable

from persrm_core.evidence.signals import EvidenceModel
from persrm_core.evidence.style import distance, measure, profile
from persrm_core.judging.judge_format import RenderLimits, parse_verdict, render_messages
from persrm_core.records import Pair

BASELINES = ("random", "length", "stylometric", "ngram", "embedding", "combined")
EVIDENCE_DIR = "evidence"  # where a checkpoint carries the fitted evidence it was trained to read


def evidence_model_for(model_dir: str | Path, evidence: EvidenceModel | str | Path | None = None) -> EvidenceModel:
    """The evidence a judge at `model_dir` reads: `evidence` when given, else the checkpoint's own
    `evidence/` folder, else evidence with nothing fitted."""
    from persrm_core.evidence.readings import untrained_model

    if isinstance(evidence, EvidenceModel):
        return evidence
    if evidence is not None:
        return EvidenceModel.load(evidence)
    own = Path(str(model_dir)) / EVIDENCE_DIR
    if own.is_dir():
        return EvidenceModel.load(own)
    return untrained_model()


def swapped(pair: Pair) -> Pair:
    return Pair(pair.pair_id, pair.author_id, pair.exemplars, pair.prompt, pair.response_b,
                pair.response_a, {"A": "B", "B": "A"}.get(pair.label), pair.negative_type)


def _flip(choice: str | None) -> str | None:
    return None if choice is None else ("B" if choice == "A" else "A")


@dataclass
class DecodingSettings:
    """How a model judge decodes its answer (`eval:` in params.yaml: batch_size, max_new_tokens,
    engine, closing). Not the `generation:` section (`config.BackendSettings`), which is the LLM
    that writes negatives and teacher traces."""

    batch_size: int = 16
    max_new_tokens: int = 96
    do_sample: bool = False  # deterministic (greedy) decoding by default
    temperature: float = 1.0
    engine: str = "transformers"  # transformers (batched generate, CPU or GPU) | vllm (GPU; the `gpu` extra)
    closing: str = "constrained"  # constrained (persrm_core.judging.closing; transformers engine) | free

    def __post_init__(self):
        if self.closing not in ("constrained", "free"):
            raise ValueError(f"closing must be constrained or free, not {self.closing!r}")
        if self.closing == "constrained" and self.engine == "vllm":
            raise ValueError("a constrained closing needs the transformers engine; with vllm set closing: free")


class ModelJudge:
    """Judge with a causal-LM checkpoint: render, generate (batched, greedy), parse strictly."""

    def __init__(self, model_dir: str, limits: RenderLimits = RenderLimits(),
                 gen: DecodingSettings = DecodingSettings(), dtype: str = "float32",
                 trust_remote_code: bool = False, evidence: EvidenceModel | str | Path | None = None):
        """`evidence`: the fitted evidence the judge reads (`persrm_core.evidence.signals.EvidenceModel` or its
        folder); by default the one the checkpoint carries (`<model_dir>/evidence/`), else evidence
        with nothing fitted (`evidence.untrained_model`)."""
        from persrm_core.llm.bundled_lm import locate
        from persrm_core.llm.model import load_tokenizer, token_counter

        model_dir = locate(model_dir)
        self.limits, self.gen = limits, gen
        self.evidence = evidence_model_for(model_dir, evidence) if limits.evidence else None
        # one generation path for the judge and the LLM negatives: the backends of persrm_core.llm.generation
        if gen.engine == "vllm":
            from transformers import AutoConfig

            from persrm_core.llm.generation import VLLMBackend

            self.engine = VLLMBackend(str(model_dir), dtype=dtype, trust_remote_code=trust_remote_code)
            self.tokenizer = load_tokenizer(model_dir, trust_remote_code)
            config = AutoConfig.from_pretrained(str(model_dir), trust_remote_code=trust_remote_code)
        elif gen.engine == "transformers":
            from persrm_core.llm.generation import TransformersBackend

            self.engine = TransformersBackend(str(model_dir), dtype, gen.batch_size, trust_remote_code)
            self.tokenizer = self.engine.tokenizer
            config = self.engine.lm.config
        else:
            raise ValueError(f"unknown judging engine {gen.engine!r} (transformers or vllm)")
        self._count = token_counter(self.tokenizer)
        max_ctx = getattr(config, "max_position_embeddings", 2048)
        budget = max_ctx - gen.max_new_tokens
        if limits.max_prompt_tokens is None or limits.max_prompt_tokens > budget:
            self.limits = dataclasses.replace(limits, max_prompt_tokens=budget)

    def read_evidence(self, pairs: Sequence[Pair]) -> list:
        """The evidence of each pair as the judge is shown it (None each when evidence is off)."""
        if self.evidence is None:
            return [None] * len(pairs)
        from persrm_core.evidence.readings import read_pairs

        return read_pairs(self.evidence, [(list(p.exemplars), p.response_a, p.response_b) for p in pairs])

    def generate(self, pairs: Sequence[Pair], desc: str = "judging", evs: Sequence | None = None) -> list[str]:
        """The judge's outputs, closings constrained when `gen.closing` says so."""
        return [text for text, _ in self.outputs(pairs, desc, evs)]

    def outputs(self, pairs: Sequence[Pair], desc: str = "judging",
                evs: Sequence | None = None) -> list[tuple[str, bool]]:
        """(output, its own closing parsed) for each pair: greedy generation, then, with
        `gen.closing: constrained`, the unreadable closings decoded under the format
        (persrm_core.judging.closing)."""
        from persrm_core.llm.generation import GenRequest, SamplingParams

        evs = self.read_evidence(pairs) if evs is None else evs
        messages = [render_messages(p.exemplars, p.prompt, p.response_a, p.response_b, self.limits, self._count, ev)
                    for p, ev in zip(pairs, evs)]
        params = SamplingParams(temperature=self.gen.temperature if self.gen.do_sample else 0.0, top_p=1.0,
                                max_tokens=self.gen.max_new_tokens)
        requests = [GenRequest(tuple(m), "judge") for m in messages]
        texts = self.engine.generate(requests, params, desc=desc)
        if self.gen.closing == "free":
            return [(t, parse_verdict(t).valid) for t in texts]
        from persrm_core.judging.closing import constrain_closings

        prompts = [self.engine.prompt_text(m) for m in messages]  # what the backend generated from
        return constrain_closings(self.engine.lm, self.tokenizer, self.engine.device, prompts, texts,
                                  self.gen.batch_size)

    def judge(self, pairs: Sequence[Pair], both_orders: bool = False) -> list[dict]:
        from persrm_core.judging.rationale import rationale_problems

        pairs = list(pairs)
        evs = self.read_evidence(pairs)
        if both_orders:
            evs = evs + [None if e is None else e.swapped() for e in evs]
        todo = pairs + ([swapped(p) for p in pairs] if both_orders else [])
        outs = self.outputs(todo, evs=evs)
        texts = [t for t, _ in outs]
        results = []
        for i, pair in enumerate(pairs):
            v = parse_verdict(texts[i])
            row = {"pair_id": pair.pair_id, "choice": v.choice, "scores": list(v.scores) if v.scores else None,
                   "rationale": v.rationale if v.valid else texts[i].strip(),
                   "format_valid": outs[i][1]}  # the judge's own closing parsed (before any constraint)
            if v.valid and evs[i] is not None and evs[i].weighed is not None:
                row["rationale_true"] = not rationale_problems(v.rationale, evs[i], v.choice)
            if both_orders:
                vs = parse_verdict(texts[len(pairs) + i])
                row["choice_swapped"] = _flip(vs.choice)
                row["scores_swapped"] = list(reversed(vs.scores)) if vs.scores else None
                row["debiased_choice"] = _debias(v, vs)
            results.append(row)
        return results


def _debias(v, vs) -> str | None:
    """Combine both orders: average each response's score over the two readings (a tie, or an
    invalid reading in one order, leaves the other order's verdict)."""
    if v.scores is None and vs.scores is None:
        return None
    if vs.scores is None:
        return v.choice
    if v.scores is None:
        return _flip(vs.choice)
    a = (v.scores[0] + vs.scores[1]) / 2
    b = (v.scores[1] + vs.scores[0]) / 2
    return v.choice if a == b else ("A" if a > b else "B")  # a tie keeps the original order's verdict


def _scored(pair: Pair, score_a: float, score_b: float, why: str) -> dict:
    choice = None if score_a == score_b else ("A" if score_a > score_b else "B")
    return {"pair_id": pair.pair_id, "choice": choice, "scores": [float(score_a), float(score_b)],
            "rationale": why}


def baseline_judge(name: str, pairs: Sequence[Pair], seed: int = 0, both_orders: bool = False,
                   evidence: EvidenceModel | str | Path | None = None) -> list[dict]:
    """Training-free judges: `random`, `length` (prefer the longer), `stylometric` (nearer the
    exemplars' personal-factor profile), `ngram` (character 4-gram TF-IDF similarity fitted on the
    pair), `embedding` (MiniLM cosine to the exemplar mean); and `combined`, the fitted evidence
    (`evidence`: an `EvidenceModel` or its folder) weighed by its logistic model."""
    pairs = list(pairs)
    if name == "random":
        rng = random.Random(seed)
        rows = [_scored(p, *( (1.0, 0.0) if rng.random() < 0.5 else (0.0, 1.0)), "coin flip") for p in pairs]
    elif name == "length":  # ties (equal word counts) are broken by a seeded coin
        rng = random.Random(seed)
        rows = [_scored(p, len(p.response_a) + rng.random() * 1e-3, len(p.response_b) + rng.random() * 1e-3,
                        "longer response (characters)") for p in pairs]
    elif name == "stylometric":
        rows = []
        for p in pairs:
            prof = profile(list(p.exemplars))
            rows.append(_scored(p, -distance(measure(p.response_a), prof), -distance(measure(p.response_b), prof),
                                "negative personal-factor distance to the exemplars"))
    elif name == "ngram":
        rows = [_scored(p, *char_ngram_similarity(p.exemplars, p.response_a, p.response_b),
                        "character 4-gram TF-IDF cosine to the exemplars (fitted on the pair)") for p in pairs]
    elif name == "embedding":
        rows = _embedding_judge(pairs)
    elif name == "combined":
        rows = _combined_judge(pairs, evidence)
    else:
        raise ValueError(f"unknown baseline {name!r}; known: {', '.join(BASELINES)}")
    if both_orders:  # all baselines here are order-free by construction
        for r in rows:
            r["choice_swapped"] = r["choice"]
            r["debiased_choice"] = r["choice"]
    return rows


@runtime_checkable
class Judge(Protocol):
    """Anything that judges pairs: the model judges (`ModelJudge`), the scalar reward model
    (`persrm_core.training.scalar_rm.ScalarRMJudge`) and the training-free baselines (`BaselineJudge`).
    One judgment dict a pair, in the pairs' order (`choice`, `score_a`, `score_b`, ...; with
    `both_orders`, also the swapped reading and the debiased choice)."""

    def judge(self, pairs: Sequence[Pair], both_orders: bool = False) -> list[dict]: ...


@dataclass
class BaselineJudge:
    """A training-free baseline (`BASELINES`) behind the `Judge` protocol; `evidence` (an
    `EvidenceModel` or its folder) is what `combined` weighs."""

    name: str
    seed: int = 0
    evidence: EvidenceModel | str | Path | None = None

    def __post_init__(self) -> None:
        if self.name not in BASELINES:
            raise ValueError(f"unknown baseline {self.name!r}; known: {', '.join(BASELINES)}")

    def judge(self, pairs: Sequence[Pair], both_orders: bool = False) -> list[dict]:
        return baseline_judge(self.name, pairs, seed=self.seed, both_orders=both_orders, evidence=self.evidence)


def char_ngram_similarity(exemplars: Sequence[str], response_a: str, response_b: str) -> tuple[float, float]:
    """Cosine of each response to the exemplars' centroid in char-4-gram TF-IDF space (fit on the pair)."""
    import numpy as np
    from sklearn.feature_extraction.text import TfidfVectorizer

    vec = TfidfVectorizer(analyzer="char", ngram_range=(4, 4), sublinear_tf=True, lowercase=False)
    m = vec.fit_transform([*exemplars, response_a, response_b])
    centre = np.asarray(m[: len(exemplars)].mean(axis=0)).ravel()
    centre /= np.linalg.norm(centre) + 1e-12
    sims = m[len(exemplars):] @ centre
    return float(sims[0]), float(sims[1])


def _combined_judge(pairs: list[Pair], evidence) -> list[dict]:
    from persrm_core.evidence.combined import prob_a

    if evidence is None:
        raise ValueError("the combined baseline needs fitted evidence (an evidence folder; materialize evidence_model)")
    model = evidence if isinstance(evidence, EvidenceModel) else EvidenceModel.load(evidence)
    if model.combined is None:
        raise ValueError("the evidence has no fitted combined weights; materialize evidence_model")
    rows = model.signals([(list(p.exemplars), p.response_a, p.response_b) for p in pairs])
    out = []
    for p, r in zip(pairs, rows):
        pa = prob_a(model.combined, r)
        out.append(_scored(p, pa, 1.0 - pa, "style signals weighed by the logistic model fitted on the train split"))
    return out


def _embedding_judge(pairs: list[Pair]) -> list[dict]:
    from persrm_core.evidence.embeddings import cosine_to_exemplars

    sims = cosine_to_exemplars([(list(p.exemplars), p.response_a, p.response_b) for p in pairs])
    return [_scored(p, a, b, "MiniLM cosine to the exemplar mean") for p, (a, b) in zip(pairs, sims)]
