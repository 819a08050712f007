"""TRL-shaped reward functions for the judge: `(completions, **kwargs) -> list[float]`.

    >>> verdict_reward([[{"role": "assistant", "content": "Casing differs.\\nScores: A=8 B=2\\nVerdict: [[A]]"}]],
    ...                label=["A"])
    [1.0]

Correct verdict +1, wrong verdict -1, invalid output (see `parse_verdict`) -1.5: an invalid
output must never pay better than a wrong guess, or the policy would learn to dodge.
"""

from __future__ import annotations

from persrm_core.judging.judge_format import completion_text, parse_verdict

CORRECT, WRONG, INVALID = 1.0, -1.0, -1.5


def verdict_reward(completions: list, label: list[str], **kwargs) -> list[float]:
    rewards = []
    for completion, gold in zip(completions, label, strict=True):
        verdict = parse_verdict(completion_text(completion))
        if not verdict.valid:
            rewards.append(INVALID)
        else:
            rewards.append(CORRECT if verdict.choice == gold else WRONG)
    return rewards


def verdict_correct(completions: list, label: list[str], **kwargs) -> list[float]:
    """1 for a valid, correct verdict, else 0. Added to GRPO with weight 0: it shapes nothing and
    makes TRL log the rollouts' accuracy as a curve (`rewards/verdict_correct/mean`)."""
    return [float(r == CORRECT) for r in verdict_reward(completions, label)]


def verdict_invalid(completions: list, label: list[str], **kwargs) -> list[float]:
    """1 for an invalid output, else 0; weight 0 in GRPO, logged as the invalid-rate curve."""
    return [float(r == INVALID) for r in verdict_reward(completions, label)]
