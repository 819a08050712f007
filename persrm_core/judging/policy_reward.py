"""The trained judge as a TRL reward function, to personalize a policy toward one author.

Each completion is put against a reference response (a dataset column, e.g. the author's own
continuation) as the pair (exemplars, prompt, A = completion, B = reference), judged by
`ModelJudge` (greedy decoding, strict parsing) and mapped to a reward:

    +1  the judge prefers the completion in every order it read (A/B and, by default, B/A)
    -1  it prefers the reference in every order
     0  the orders disagree, or a reading is invalid

Only order-robust verdicts pay. The completion always sits in slot A of the first reading, so a
judge with a position bias would pay a one-order reward for anything; read both ways, that bias
cancels, and a policy cannot farm it. Invalid output pays 0, not a penalty: the judge's failure
is not the policy's fault, and a group whose rewards are all 0 gives GRPO no advantage to act on.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from persrm_core.judging.judge_format import RenderLimits, completion_text
from persrm_core.records import Pair

WIN, LOSS, UNSURE = 1.0, -1.0, 0.0


def prompt_text(prompt: str | list | dict) -> str:
    """The pair's prompt from a TRL prompt: a string as is, or the last user message's text."""
    if isinstance(prompt, str):
        return prompt
    if isinstance(prompt, dict):
        prompt = [prompt]
    for message in reversed(prompt):
        if message.get("role") == "user":
            content = message.get("content", "")
            if isinstance(content, list):  # content parts: keep the text ones
                return "\n".join(str(p.get("text", "")) for p in content if p.get("type") == "text")
            return str(content)
    return ""


def reward_of(judgment: dict, both_orders: bool) -> float:
    """WIN, LOSS or UNSURE for a judgment of (A = completion, B = reference); see the module docstring."""
    readings = [judgment["choice"]] + ([judgment["choice_swapped"]] if both_orders else [])
    if all(c == "A" for c in readings):
        return WIN
    if all(c == "B" for c in readings):
        return LOSS
    return UNSURE


class PersonalReward:
    """TRL reward function `(prompts, completions, **kwargs) -> list[float]`.

    Needs a `reference` dataset column (TRL passes extra columns as kwargs, one value per
    completion); an `exemplars` column, where present and non-empty, overrides the constructor's
    exemplars row by row. `render` must be the limits the judge was trained with (params.yaml
    `render`). `judge` replaces the checkpoint with any object that has `ModelJudge.judge`'s
    signature (tests, or a judge shared with evaluation)."""

    def __init__(self, judge_dir: str | Path | None, exemplars: list[str] | None = None,
                 render: RenderLimits = RenderLimits(), both_orders: bool = True, batch_size: int = 8,
                 max_new_tokens: int = 96, judge=None):
        self.__name__ = "personal_reward"  # TRL names the reward's logged columns after it
        self.exemplars = list(exemplars) if exemplars else None
        self.both_orders = both_orders
        if judge is None:
            if judge_dir is None:
                raise ValueError("PersonalReward needs a judge checkpoint directory or a judge object")
            from persrm_core.judging.judge import DecodingSettings, ModelJudge

            judge = ModelJudge(str(judge_dir), render, DecodingSettings(batch_size=batch_size,
                                                                          max_new_tokens=max_new_tokens))
        self.judge = judge

    def pairs(self, prompts: Sequence, completions: Sequence, reference: Sequence[str] | None = None,
              exemplars: Sequence[Sequence[str] | None] | None = None) -> list[Pair]:
        """The pairs judged for a batch: A = the completion, B = the reference."""
        if reference is None:
            raise ValueError("PersonalReward needs a `reference` dataset column: the response each completion "
                             "is judged against")
        out = []
        for i, (prompt, completion, ref) in enumerate(zip(prompts, completions, reference, strict=True)):
            ex = list(exemplars[i]) if exemplars is not None and exemplars[i] else self.exemplars
            if not ex:
                raise ValueError("PersonalReward needs exemplars: pass them to the constructor or add an "
                                 "`exemplars` dataset column")
            out.append(Pair(f"policy-{i}", "policy", ex, prompt_text(prompt), completion_text(completion), ref, "A"))
        return out

    def __call__(self, prompts: Sequence, completions: Sequence, **kwargs) -> list[float]:
        pairs = self.pairs(prompts, completions, kwargs.get("reference"), kwargs.get("exemplars"))
        judgments = self.judge.judge(pairs, both_orders=self.both_orders)
        rewards = [reward_of(j, self.both_orders) for j in judgments]
        if log_metric := kwargs.get("log_metric"):  # TRL: averaged per logging step beside `reward`
            valid = [j["choice"] is not None and (not self.both_orders or j["choice_swapped"] is not None)
                     for j in judgments]
            log_metric("personal_reward/judge_valid_rate", sum(valid) / max(len(valid), 1))
            log_metric("personal_reward/win_rate", sum(r == WIN for r in rewards) / max(len(rewards), 1))
        return rewards
