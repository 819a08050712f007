"""The judge's conversation format, shared by SFT, RFT, judging and parsing.

The judge reads a system message and one user message (exemplars, prompt, two responses) and
writes a rationale, then exactly two closing lines:

    Scores: A=<0-10> B=<0-10>
    Verdict: [[A]]            (or [[B]])

`parse_verdict` reads only that closing block, strictly: anything after the verdict, a missing
or repeated block, tied or out-of-range scores, scores that disagree with the verdict, or a
verdict that names both or neither response make the output invalid.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass

SYSTEM_PROMPT = ("You are a personalized reward model: judge which response fits the author of the "
                 "exemplars, by their personal style.")
QUESTION = "Which response did this author write? Weigh the measured style, then give scores and a verdict."
# The evidence block, when shown, closes the user message: its weighed line sits a fixed distance
# before the answer, where a small judge finds it soonest.

SCORES_RE = re.compile(r"^Scores: A=(\d{1,2}) B=(\d{1,2})$")
VERDICT_RE = re.compile(r"^Verdict: \[\[(A|B)\]\]$")
END_MARKERS = ("<|im_end|>", "<|endoftext|>", "</s>", "<eos>")


@dataclass(frozen=True)
class RenderLimits:
    """How a pair is cut to fit a model's context (documented rule, never an error):
    at most `max_exemplars` exemplars, each cut to `max_exemplar_words` words, responses and
    prompt cut to `max_response_words`; if a token budget is still exceeded, exemplars are
    dropped from the end (one is always kept), then every cut is halved, until it fits."""

    max_exemplars: int = 3
    max_exemplar_words: int = 80
    max_response_words: int = 120
    max_prompt_tokens: int | None = None
    evidence: bool = True  # show the measured style evidence (persrm_core.evidence.readings) to the judge
    rationale: str = "full"  # the offline SFT traces (persrm_core.judging.rationale): full | brief

    def __post_init__(self):
        if self.rationale not in ("full", "brief"):
            raise ValueError(f"render.rationale must be full or brief, not {self.rationale!r}")


@dataclass(frozen=True)
class Verdict:
    choice: str | None  # "A", "B", or None when invalid
    scores: tuple[float, float] | None
    rationale: str
    error: str | None = None

    @property
    def valid(self) -> bool:
        return self.choice is not None


def _cut(text: str, n_words: int) -> str:
    words = text.split()
    return text.strip() if len(words) <= n_words else " ".join(words[:n_words]) + " ..."


def user_message(exemplars: Sequence[str], prompt: str, response_a: str, response_b: str,
                 limits: RenderLimits = RenderLimits(), evidence: str | None = None) -> str:
    lines = ["Exemplars by the author:"]
    for i, ex in enumerate(exemplars[: limits.max_exemplars], start=1):
        lines.append(f"[{i}] {_cut(ex, limits.max_exemplar_words)}")
    lines += [
        f"Prompt: {_cut(prompt, limits.max_response_words)}",
        f"Response A: {_cut(response_a, limits.max_response_words)}",
        f"Response B: {_cut(response_b, limits.max_response_words)}",
        QUESTION,
        *([evidence] if evidence else []),
    ]
    return "\n".join(lines)


def render_messages(exemplars: Sequence[str], prompt: str, response_a: str, response_b: str,
                    limits: RenderLimits = RenderLimits(),
                    count_tokens: Callable[[list[dict]], int] | None = None,
                    evidence=None) -> list[dict]:
    """The judge's input as chat messages, cut to fit `limits` (see RenderLimits). The style
    evidence (`persrm_core.evidence.readings.Evidence`), when shown, is measured on every exemplar in full;
    pass it measured (`evidence.read_pairs` measures a batch at once), or it is measured here
    without fitted weights."""
    block = None
    if limits.evidence:
        from persrm_core.evidence.readings import evidence_block, read_pair

        if evidence is None:
            evidence = read_pair(list(exemplars), response_a, response_b)
        block = evidence_block(evidence)
    lim = limits
    while True:
        msgs = [{"role": "system", "content": SYSTEM_PROMPT},
                {"role": "user", "content": user_message(exemplars, prompt, response_a, response_b, lim, block)}]
        if count_tokens is None or lim.max_prompt_tokens is None or count_tokens(msgs) <= lim.max_prompt_tokens:
            return msgs
        if lim.max_exemplars > 1 and len(exemplars) > 1:
            lim = dataclasses.replace(lim, max_exemplars=min(lim.max_exemplars, len(exemplars)) - 1)
        elif lim.max_exemplar_words > 8 or lim.max_response_words > 8:
            lim = dataclasses.replace(lim, max_exemplars=1, max_exemplar_words=max(lim.max_exemplar_words // 2, 8),
                                      max_response_words=max(lim.max_response_words // 2, 8))
        else:
            return msgs


def format_completion(rationale: str, score_a: int, score_b: int, choice: str) -> str:
    return f"{rationale.strip()}\nScores: A={score_a} B={score_b}\nVerdict: [[{choice}]]"


def completion_text(completion: str | list | dict) -> str:
    """The text of a completion as TRL passes it: a string, or conversational messages."""
    if isinstance(completion, str):
        return completion
    if isinstance(completion, dict):
        return str(completion.get("content", ""))
    if isinstance(completion, list) and completion:
        return completion_text(completion[-1])
    return ""


def parse_verdict(output: str) -> Verdict:
    """Parse a judge output strictly; see the module docstring for what makes it invalid."""
    text = output
    for marker in END_MARKERS:
        if text.rstrip().endswith(marker):
            text = text.rstrip()[: -len(marker)]
    lines = [ln.strip() for ln in text.strip().splitlines() if ln.strip()]

    def invalid(why: str) -> Verdict:
        return Verdict(None, None, text.strip(), why)

    if len(lines) < 3:
        return invalid("too short: needs a rationale, a Scores line and a Verdict line")
    if sum("verdict" in ln.lower() for ln in lines) != 1 or sum("scores:" in ln.lower() for ln in lines) != 1:
        return invalid("needs exactly one Scores line and one Verdict line")
    verdict, scores = VERDICT_RE.match(lines[-1]), SCORES_RE.match(lines[-2])
    if verdict is None:
        return invalid("the last line is not 'Verdict: [[A]]' or 'Verdict: [[B]]'")
    if scores is None:
        return invalid("the line before the verdict is not 'Scores: A=<0-10> B=<0-10>'")
    a, b = int(scores.group(1)), int(scores.group(2))
    if not (0 <= a <= 10 and 0 <= b <= 10):
        return invalid("scores out of range 0-10")
    if a == b:
        return invalid("tied scores")
    choice = verdict.group(1)
    if (a > b) != (choice == "A"):
        return invalid("scores disagree with the verdict")
    rationale = "\n".join(lines[:-2])
    return Verdict(choice, (float(a), float(b)), rationale)
