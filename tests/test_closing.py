"""Constrained closings (persrm_core.judging.closing): a judge's unreadable Scores/Verdict block is decoded
again under the format, its rationale kept, the choice the most likely valid closing."""

from __future__ import annotations

import pytest

from persrm_core.evaluation.metrics import judge_metrics
from persrm_core.judging.closing import (
    CLOSINGS,
    _scored_after_shared_prefix,
    _scored_whole,
    _takes_a_cache,
    closing_text,
    constrain_closings,
    continuation_logprobs,
    rationale_of,
)
from persrm_core.judging.judge_format import parse_verdict
from persrm_core.judging.rationale import stated_verdict
from persrm_core.records import Pair


def test_every_closing_parses_after_a_rationale_with_the_verdict_its_scores_give():
    assert len(CLOSINGS) == 10
    for a, b in CLOSINGS:
        v = parse_verdict(f"Weighed: A 0.70.\n{closing_text(a, b)}")
        assert v.valid and v.scores == (a, b) and v.choice == ("A" if a > b else "B")


@pytest.mark.parametrize("output, expected", [
    ("Weighed: B 0.56.\nScores: A=4 B=4\nVerdict: [[B]]", "Weighed: B 0.56."),
    ("Weighed: A 0.99.\nScores: A=9 B=10\nVerdict: [[A]]", "Weighed: A 0.99."),
    ("Weighed: A 0.56.", "Weighed: A 0.56."),  # stopped before its closing
    ("The first reply.\nIt reads like the author<|im_end|>", "The first reply.\nIt reads like the author"),
    ("Thinking.\nVerdict: [[A]] and [[B]]", "Thinking."),
    ("Scores: A=4 B=6\nVerdict: [[B]]", None),  # no rationale: nothing to close
    ("   \n", None),
])
def test_rationale_of_keeps_the_lines_before_the_closing(output, expected):
    assert rationale_of(output) == expected


def test_stated_verdict_reads_the_weighed_line_only():
    assert stated_verdict("Weighed: B 0.56.") == "B"
    assert stated_verdict("Weighed: A 0.50.\nFor: style encoder.") == "A"
    assert stated_verdict("Some thought.\nWeighed: A 0.70.") == "A"
    assert stated_verdict("Weighed heavily on style, B reads closer.") is None
    assert stated_verdict("The author would write B.") is None


@pytest.fixture(scope="module")
def rft(smoke_root):
    import torch

    from persrm_core.llm.model import load_model, load_tokenizer

    ckpt = smoke_root / "data" / "models" / "rft"
    torch.manual_seed(0)
    return load_model(ckpt, "float32").eval(), load_tokenizer(ckpt)


def _reference_logprob(model, tokenizer, context: str, continuation: str) -> float:
    """The same log-probability, one unpadded sequence at a time, every logit kept."""
    import torch

    ctx = tokenizer(context, add_special_tokens=False)["input_ids"]
    full = tokenizer(context + continuation, add_special_tokens=False)["input_ids"]
    start = next((i for i, (x, y) in enumerate(zip(ctx, full)) if x != y), min(len(ctx), len(full)))
    with torch.inference_mode():
        logp = torch.log_softmax(model(input_ids=torch.tensor([full])).logits[0].float(), -1)
    return float(sum(logp[i - 1, full[i]] for i in range(max(start, 1), len(full))))


def test_batched_left_padded_scores_equal_one_sequence_at_a_time(rft):
    model, tok = rft
    context = tok.apply_chat_template([{"role": "user", "content": "Which response did this author write?"}],
                                      add_generation_prompt=True, tokenize=False) + "Weighed: A 0.81.\n"
    conts = [closing_text(a, b) for a, b in CLOSINGS] + ["x", "Scores: A=10 B=0\nVerdict: [[A]] and more text"]
    got = continuation_logprobs(model, tok, "cpu", context, conts, batch_size=5)  # the shared prompt run once
    want = [_reference_logprob(model, tok, context, c) for c in conts]
    assert got == pytest.approx(want, abs=1e-3)
    assert len(set(round(g, 3) for g in got)) > 1  # the candidates are told apart
    ctx = tok(context, add_special_tokens=False)["input_ids"]
    seqs = [tok(context + c, add_special_tokens=False)["input_ids"] for c in conts]
    starts = [max(next((i for i, (x, y) in enumerate(zip(ctx, s)) if x != y), len(ctx)), 1) for s in seqs]
    assert _scored_whole(model, tok, "cpu", seqs, starts, 5) == pytest.approx(want, abs=1e-3)  # the fallback too
    shared = min(min(starts), *(next((i for i, (x, y) in enumerate(zip(seqs[0], s)) if x != y), len(s)) for s in seqs))
    assert _scored_after_shared_prefix(model, tok, "cpu", seqs, starts, shared, 5) == pytest.approx(want, abs=1e-3)


def test_a_model_that_takes_no_cache_is_scored_whole_with_the_same_answers(rft):
    import torch

    model, tok = rft

    class NoCache(torch.nn.Module):  # a forward that takes neither a cache nor logits_to_keep
        def __init__(self, inner):
            super().__init__()
            self.inner = inner

        def forward(self, input_ids, attention_mask=None, position_ids=None):
            return self.inner(input_ids=input_ids, attention_mask=attention_mask, position_ids=position_ids)

    plain = NoCache(model)
    assert _takes_a_cache(model) and not _takes_a_cache(plain)
    context = tok.apply_chat_template([{"role": "user", "content": "Which response?"}],
                                      add_generation_prompt=True, tokenize=False) + "Weighed: A 0.81.\n"
    conts = [closing_text(a, b) for a, b in CLOSINGS[:4]]
    cached = continuation_logprobs(model, tok, "cpu", context, conts)
    assert continuation_logprobs(plain, tok, "cpu", context, conts) == pytest.approx(cached, abs=1e-3)


def test_constrain_closings_keeps_valid_outputs_and_closes_the_rest_with_the_likeliest(rft):
    model, tok = rft
    prompt = tok.apply_chat_template([{"role": "user", "content": "Which response did this author write?"}],
                                     add_generation_prompt=True, tokenize=False)
    good = "Weighed: A 0.70.\nScores: A=7 B=3\nVerdict: [[A]]"
    tied = "Weighed: B 0.56.\nScores: A=4 B=4\nVerdict: [[B]]"
    against = "Weighed: B 0.99.\nScores: A=0 B=10\nVerdict: [[A]]"  # the verdict contradicts its own lines
    free = "The first response keeps the author's short sentences."  # states no verdict
    out = constrain_closings(model, tok, "cpu", [prompt] * 6,
                             [good, tied, "Weighed: A 0.91.", against, free, "Verdict: [["])
    assert out[0] == (good, True)
    assert out[5] == ("Verdict: [[", False)  # no rationale: left as it was, still invalid
    for (text, own), rationale in zip(out[1:5], ("Weighed: B 0.56.", "Weighed: A 0.91.", "Weighed: B 0.99.", free)):
        assert own is False
        v = parse_verdict(text)
        assert v.valid and v.rationale == rationale
        stated = stated_verdict(rationale)
        allowed = [c for c in CLOSINGS if stated is None or (c[0] > c[1]) == (stated == "A")]
        assert len(allowed) == (10 if stated is None else 5)
        lp = continuation_logprobs(model, tok, "cpu", f"{prompt}{rationale}\n",
                                   [closing_text(a, b) for a, b in allowed])
        assert v.scores == allowed[max(range(len(lp)), key=lp.__getitem__)]
        assert stated is None or v.choice == stated


def test_format_valid_rate_counts_what_the_judge_wrote_itself():
    pairs = [Pair(f"p{i}", "a", ["x"], "", "r1", "r2", "A") for i in range(4)]
    judgments = [{"pair_id": f"p{i}", "choice": "A", "scores": [7.0, 3.0], "rationale": "r",
                  "format_valid": i < 1} for i in range(4)]
    m = judge_metrics(pairs, judgments)
    assert m["accuracy"] == 1.0 and m["format_valid_rate"] == 0.25
    legacy = [{k: v for k, v in j.items() if k != "format_valid"} for j in judgments]  # baselines carry none
    assert judge_metrics(pairs, legacy)["format_valid_rate"] == 1.0


def test_a_constrained_closing_needs_the_transformers_engine():
    """(params.yaml says so when it loads: tests/test_cli.py, the config typo cases)"""
    from persrm_core.judging.judge import DecodingSettings

    with pytest.raises(ValueError, match="transformers engine"):
        DecodingSettings(engine="vllm")
    with pytest.raises(ValueError, match="constrained or free"):
        DecodingSettings(closing="greedy")
    assert DecodingSettings(engine="vllm", closing="free").closing == "free"
