"""SFT rows: the rendered judge input, the offline trace, and rejection sampling of traces whose
measured evidence contradicts the label."""

from __future__ import annotations

from persrm_core.evidence import FactorReading
from persrm_core.judge_format import RenderLimits, parse_verdict
from persrm_core.rationale import consistent_with
from persrm_core.synthesis import SynthesisConfig, build_pairs
from persrm_core.training import sft_rows
from tests.synthetic_corpus import make_corpus


def _reading(name: str, nearer: str | None) -> FactorReading:
    return FactorReading(name, name, "x", "x", "x", nearer)


def test_consistent_with_needs_support_and_no_contradiction():
    sim_a, sim_tie = _reading("similarity", "A"), _reading("similarity", None)
    emoji_a, emoji_b, caps_b = _reading("emoji", "A"), _reading("emoji", "B"), _reading("capitals", "B")
    assert consistent_with([emoji_a, sim_a], "A")
    assert consistent_with([sim_a], "A")  # similarity alone, factors silent
    assert consistent_with([emoji_a, sim_tie], "A")  # majority alone, similarity tied
    assert not consistent_with([sim_tie], "A")  # nothing supports the label
    assert not consistent_with([emoji_b, caps_b, sim_a], "A")  # factor majority contradicts
    assert not consistent_with([emoji_a, sim_a], "B")
    assert not consistent_with([emoji_a, emoji_b, sim_tie], "A")  # split factors, tied similarity


def _pairs() -> list[dict]:
    rows = build_pairs(make_corpus(), SynthesisConfig(seed=3, unseen_authors=1), progress=False)
    return [r for r in rows if r["split"] == "train"]


def test_sft_rows_render_conversational_prompt_and_completion():
    pairs = _pairs()[:12]
    rows = sft_rows(pairs, RenderLimits(max_exemplars=2))
    assert len(rows) == len(pairs)
    for row, pair in zip(rows, pairs):
        system, user = row["prompt"]
        assert (system["role"], user["role"]) == ("system", "user")
        assert "Measured style:" in user["content"] and "Response B:" in user["content"]
        completion = row["completion"][0]["content"]
        assert parse_verdict(completion).choice == pair["label"]


def test_rejection_sampling_keeps_exactly_the_traces_whose_facts_support_the_label():
    clean = _pairs()
    # The same pairs with the label flipped: now the measured evidence contradicts the label.
    flipped = [dict(p, pair_id=p["pair_id"] + "-flipped", label="B" if p["label"] == "A" else "A")
               for p in clean[:10]]
    pairs = clean + flipped
    everything = sft_rows(pairs, RenderLimits(max_exemplars=2))
    kept = sft_rows(pairs, RenderLimits(max_exemplars=2), rejection_sampling=True)
    assert 0 < len(kept) < len(everything)
    kept_completions = [r["completion"][0]["content"] for r in kept]
    for completion in kept_completions:
        verdict = parse_verdict(completion).choice
        facts = completion.splitlines()[:2]
        other = "B" if verdict == "A" else "A"
        assert not any(f"nearer {other}" in line for line in facts), completion
        assert any(f"nearer {verdict}" in line for line in facts), completion
    assert len(everything) - len(kept) >= 10  # every flipped pair is rejected


def test_tiny_tokenizer_tokenizes_identically_however_it_is_loaded(tmp_path):
    """A checkpoint is trained with one loader and judged (or used by anyone) with AutoTokenizer."""
    from transformers import AutoTokenizer, PreTrainedTokenizerFast

    from persrm_core.model import TinyModelConfig, build_tiny, load_tokenizer

    texts = [e.text for e in make_corpus()]
    build_tiny(texts, tmp_path, TinyModelConfig(vocab_size=400, hidden_size=16, num_layers=1, num_heads=2,
                                                num_kv_heads=1, intermediate_size=32))
    sample = "Character 4-gram similarity: A 0.21; B 0.34; nearer B. Scores: A=2 B=8 🎉 ÉTÉ ça"
    ids = {type(t).__name__: t(sample, add_special_tokens=False)["input_ids"]
           for t in (AutoTokenizer.from_pretrained(tmp_path), PreTrainedTokenizerFast.from_pretrained(tmp_path),
                     load_tokenizer(tmp_path))}
    assert len(set(map(tuple, ids.values()))) == 1, ids
    assert load_tokenizer(tmp_path).decode(ids["Qwen2Tokenizer"]) == sample
