"""TRL-shaped reward functions for the judge: `(completions, **kwargs) -> list[float]`.

    >>> verdict_reward([[{"role": "assistant", "content": "Casing differs.\\nScores: A=8 B=2\\nVerdict: [[A]]"}]],
    ...                label=["A"])
    [1.0]

Correct verdict +1, wrong verdict -1, invalid output (see `parse_verdict`) -1.5: an invalid
output must never pay better than a wrong guess, or the policy would learn to dodge.
"""

from __future__ import annotations

from persrm_core.judge_format import completion_text, parse_verdict

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
