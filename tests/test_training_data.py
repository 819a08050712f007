"""SFT rows: the rendered judge input with its attached evidence, the offline trace, and rejection
sampling of traces whose weighed evidence contradicts the label."""

from __future__ import annotations

from persrm_core.evidence.readings import attach_evidence
from persrm_core.evidence.signals import SIGNALS, EvidenceModel, fit_idf
from persrm_core.judging.judge_format import RenderLimits, parse_verdict
from persrm_core.judging.rationale import rationale_problems
from persrm_core.synthesis.pairs import SynthesisConfig, build_pairs
from persrm_core.training.trainers import sft_rows
from tests.synthetic_corpus import make_corpus

WEIGHTS = {"weights": {s: 1.0 for s in SIGNALS}, "scales": {s: 0.1 for s in SIGNALS}}


def _pairs() -> list[dict]:
    corpus = make_corpus()
    rows = build_pairs(corpus, SynthesisConfig(seed=3, unseen_authors=1), progress=False)
    train = [r for r in rows if r["split"] == "train"][:40]
    return attach_evidence(EvidenceModel(fit_idf([e.text for e in corpus]), combined=WEIGHTS), train)


def test_sft_rows_render_conversational_prompt_and_completion():
    pairs = _pairs()[:12]
    rows = sft_rows(pairs, RenderLimits(max_exemplars=2))
    assert len(rows) == len(pairs)
    for row, pair in zip(rows, pairs):
        system, user = row["prompt"]
        assert (system["role"], user["role"]) == ("system", "user")
        assert "Measured style (similarity to the exemplars):" in user["content"] and "Response B:" in user["content"]
        assert "\nweighed: A " in user["content"]
        completion = row["completion"][0]["content"]
        assert parse_verdict(completion).choice == pair["label"]


def test_rejection_sampling_keeps_exactly_the_traces_whose_weighed_evidence_supports_the_label():
    from persrm_core.evidence.readings import evidence_of

    clean = _pairs()
    # The same pairs with the label flipped: now the weighed evidence contradicts the label.
    flipped = [dict(p, pair_id=p["pair_id"] + "-flipped", label="B" if p["label"] == "A" else "A") for p in clean]
    pairs = clean + flipped
    everything = sft_rows(pairs, RenderLimits(max_exemplars=2))
    kept = sft_rows(pairs, RenderLimits(max_exemplars=2), rejection_sampling=True)
    supported = [p for p in pairs if evidence_of(p).verdict == p["label"]]
    assert 0 < len(kept) == len(supported) < len(everything)
    for row, pair in zip(kept, supported):
        v = parse_verdict(row["completion"][0]["content"])
        assert v.choice == pair["label"]
        assert rationale_problems(v.rationale, evidence_of(pair)) == []


def test_tiny_tokenizer_tokenizes_identically_however_it_is_loaded(tmp_path):
    """A checkpoint is trained with one loader and judged (or used by anyone) with AutoTokenizer."""
    from transformers import AutoTokenizer, PreTrainedTokenizerFast

    from persrm_core.llm.model import TinyModelConfig, build_tiny, load_tokenizer

    texts = [e.text for e in make_corpus()]
    build_tiny(texts, tmp_path, TinyModelConfig(vocab_size=400, hidden_size=16, num_layers=1, num_heads=2,
                                                num_kv_heads=1, intermediate_size=32))
    sample = "style encoder: A 0.21, B 0.34; B by 0.13. Scores: A=2 B=8 🎉 ÉTÉ ça"
    ids = {type(t).__name__: t(sample, add_special_tokens=False)["input_ids"]
           for t in (AutoTokenizer.from_pretrained(tmp_path), PreTrainedTokenizerFast.from_pretrained(tmp_path),
                     load_tokenizer(tmp_path))}
    assert len(set(map(tuple, ids.values()))) == 1, ids
    assert load_tokenizer(tmp_path).decode(ids["Qwen2Tokenizer"]) == sample
