"""Constrained closing: a judge's verdict block decoded under the format's grammar.

A judge writes a rationale, then `Scores: A=.. B=..` and `Verdict: [[A]]` (`judge_format`). A small
judge sometimes gets the closing wrong though its rationale is clear: `Weighed: B 0.56.` followed
by `Scores: A=4 B=4` (tied) or `Weighed: A 0.99.` by `Scores: A=9 B=10` and `[[A]]` (scores
against the verdict); `parse_verdict` rejects both, and the pair is lost. Structured decoding (as
vLLM's guided decoding and Outlines do with a grammar) keeps such an answer: the rationale the
judge wrote stays as written and its closing is the valid one it finds most likely.

The valid closings are the ten the training traces use (`rationale.write_trace`): scores that sum
to 10, a winner's score of 6 to 10 (0-4 for the other response) and the verdict that follows from
them; where the rationale states its verdict (the traces' `Weighed: B 0.92.` line), only the five
that agree with it. Each is scored by the checkpoint's log-likelihood after the prompt and the
rationale, and the highest is kept. So the decision is still the model's, the one its rationale
states: a small judge that wrote `Weighed: B 0.99.` and `Scores: A=0 B=10` and then `[[A]]` (it
copies a letter ~10 tokens back, not ~35) is read as choosing B. An output whose own closing parses
is kept unchanged, even where it contradicts its Weighed line; an output with no rationale
(nothing before a Scores or Verdict line) stays invalid.

Judgment records say which outputs were closed this way (`format_valid: false`), so a report's
format-valid rate still measures what the judge wrote on its own.
"""

from __future__ import annotations

from collections.abc import Sequence

from persrm_core.judging.judge_format import END_MARKERS, format_completion, parse_verdict
from persrm_core.judging.rationale import stated_verdict

# (score A, score B) of every closing the traces write: the winner gets 6-10, the other 10 minus it
CLOSINGS: tuple[tuple[int, int], ...] = tuple((a, 10 - a) for a in range(11) if a != 5)


def closing_text(score_a: int, score_b: int) -> str:
    """The closing block, as the trace writes it after its rationale's last line."""
    return format_completion("", score_a, score_b, "A" if score_a > score_b else "B").lstrip("\n")


def rationale_of(output: str) -> str | None:
    """The rationale of a free output: its lines before the first Scores or Verdict line, without
    end markers; None when there is none."""
    text = output
    for marker in END_MARKERS:
        text = text.replace(marker, "\n")
    kept = []
    for line in text.splitlines():
        low = line.strip().lower()
        if low.startswith("scores") or low.startswith("verdict") or "[[" in low:
            break
        kept.append(line.rstrip())
    rationale = "\n".join(kept).strip()
    return rationale or None


def _common_prefix(a: Sequence[int], b: Sequence[int]) -> int:
    n = 0
    for x, y in zip(a, b):
        if x != y:
            break
        n += 1
    return n


def continuation_logprobs(model, tokenizer, device, context: str, continuations: Sequence[str],
                          batch_size: int = 16) -> list[float]:
    """log P(continuation | context) under a causal LM, for each continuation.

    Each sequence is tokenized whole and scored from where its tokens first differ from the
    context's own (a tokenizer may merge across the boundary). The tokens every sequence shares
    (the prompt and rationale, hundreds of tokens, against a closing's dozen) are run once and
    their key/value cache is reused for each batch of continuations; a model whose cache cannot be
    reused this way is scored whole (`_scored_whole`)."""
    ctx = tokenizer(context, add_special_tokens=False)["input_ids"]
    seqs = [tokenizer(context + c, add_special_tokens=False)["input_ids"] for c in continuations]
    starts = [max(_common_prefix(ctx, s), 1) for s in seqs]
    if not seqs:
        return []
    shared = min(min(_common_prefix(seqs[0], s) for s in seqs), min(starts))
    if shared < 1 or not _takes_a_cache(model):  # nothing shared to cache, or no way to pass a cache in
        return _scored_whole(model, tokenizer, device, seqs, starts, batch_size)
    return _scored_after_shared_prefix(model, tokenizer, device, seqs, starts, shared, batch_size)


def _takes_a_cache(model) -> bool:
    """Whether the model's forward takes a key/value cache back and keeps only the last logits
    (every transformers causal LM of this release; asked up front, so an error inside the cached
    scoring is raised, not taken for a missing feature)."""
    import inspect

    params = inspect.signature(model.forward).parameters
    return {"past_key_values", "logits_to_keep", "position_ids"} <= set(params)


def _scored_after_shared_prefix(model, tokenizer, device, seqs, starts, shared: int, batch_size: int) -> list[float]:
    """Scores with the first `shared` tokens (common to every sequence, before any scored token) run
    once: their cache is copied for each batch of suffixes, right-padded, positions continuing."""
    import copy

    import torch

    with torch.inference_mode():
        head = model(input_ids=torch.tensor([seqs[0][:shared]], device=device), use_cache=True,
                     logits_to_keep=1)  # only the last position's prediction is read
    cache, last = head.past_key_values, torch.log_softmax(head.logits[0, -1].float(), -1).cpu()
    if not hasattr(cache, "batch_repeat_interleave"):  # a legacy tuple cache: cannot be widened to a batch
        return _scored_whole(model, tokenizer, device, seqs, starts, batch_size)
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    scores: list[float] = []
    for lo in range(0, len(seqs), batch_size):
        chunk, chunk_starts = seqs[lo:lo + batch_size], starts[lo:lo + batch_size]
        tails = [s[shared:] for s in chunk]
        width = max(max(map(len, tails)), 1)
        ids = torch.full((len(chunk), width), pad, dtype=torch.long)
        mask = torch.zeros((len(chunk), shared + width), dtype=torch.long)
        mask[:, :shared] = 1
        for i, t in enumerate(tails):
            ids[i, :len(t)] = torch.tensor(t, dtype=torch.long)
            mask[i, shared:shared + len(t)] = 1
        batch_cache = copy.deepcopy(cache)
        batch_cache.batch_repeat_interleave(len(chunk))
        positions = torch.arange(shared, shared + width).expand(len(chunk), -1)
        with torch.inference_mode():
            logits = model(input_ids=ids.to(device), attention_mask=mask.to(device), position_ids=positions.to(device),
                           past_key_values=batch_cache, use_cache=True).logits
        logp = torch.log_softmax(logits.float(), dim=-1).cpu()
        for i, (s, st) in enumerate(zip(chunk, chunk_starts)):
            # token t is predicted at position t - 1: the shared head's last position, or the suffix's
            scores.append(float(sum((last if t == shared else logp[i, t - 1 - shared])[s[t]]
                                    for t in range(st, len(s)))))
    return scores


def _scored_whole(model, tokenizer, device, seqs, starts, batch_size: int) -> list[float]:
    """Every sequence run whole, left-padded with position ids from the attention mask, only the
    scored positions' logits kept (a large vocabulary times a long prompt would not fit otherwise)."""
    import torch

    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    scores: list[float] = []
    for lo in range(0, len(seqs), batch_size):
        chunk, chunk_starts = seqs[lo:lo + batch_size], starts[lo:lo + batch_size]
        width = max(map(len, chunk))
        ids = torch.full((len(chunk), width), pad, dtype=torch.long)
        mask = torch.zeros((len(chunk), width), dtype=torch.long)
        for i, s in enumerate(chunk):
            ids[i, width - len(s):] = torch.tensor(s, dtype=torch.long)
            mask[i, width - len(s):] = 1
        keep = max(len(s) - st for s, st in zip(chunk, chunk_starts)) + 1
        positions = (mask.cumsum(-1) - 1).clamp(min=0)
        inputs = {"input_ids": ids.to(device), "attention_mask": mask.to(device), "position_ids": positions.to(device)}
        with torch.inference_mode():
            try:
                logits = model(**inputs, logits_to_keep=keep).logits
            except TypeError:  # a model class older than `logits_to_keep`
                logits = model(**inputs).logits[:, -keep:]
        logp = torch.log_softmax(logits.float(), dim=-1).cpu()
        for i, (s, st) in enumerate(zip(chunk, chunk_starts)):
            n = len(s) - st  # the scored tokens: s[st:], predicted at the positions just before them
            rows = torch.arange(keep - 1 - n, keep - 1)
            scores.append(float(logp[i, rows, torch.tensor(s[st:], dtype=torch.long)].sum()))
    return scores


def constrain_closings(model, tokenizer, device, prompts: Sequence[str], outputs: Sequence[str],
                       batch_size: int = 16) -> list[tuple[str, bool]]:
    """Each output as (text, its own closing was valid): valid outputs unchanged, the others with
    their rationale kept and the most likely of `CLOSINGS` after it that agrees with the verdict the
    rationale states, if it states one (unchanged if there is no rationale)."""
    result: list[tuple[str, bool]] = []
    for prompt, out in zip(prompts, outputs, strict=True):
        if parse_verdict(out).valid:
            result.append((out, True))
            continue
        rationale = rationale_of(out)
        if rationale is None:
            result.append((out, False))
            continue
        stated = stated_verdict(rationale)
        texts = [closing_text(a, b) for a, b in CLOSINGS if stated is None or (a > b) == (stated == "A")]
        lp = continuation_logprobs(model, tokenizer, device, f"{prompt}{rationale}\n", texts, batch_size)
        best = max(range(len(texts)), key=lambda k: lp[k])
        result.append((f"{rationale}\n{texts[best]}", False))
    return result
