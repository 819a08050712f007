"""Prompt templates for the LLM negative strategies and the teacher judge (PersRM-R1 recipe).

Each template is a named, versioned constant: a system message and a user message with `{field}`
slots. Its id (`name@vN`) goes into the generation cache key, and so does the rendered text: a
template edited without a version bump still never reuses answers to the old wording.

* `style_imitation` (hard negative): continue the prompt in the exemplars' style without copying
  them, so only a fine reading of personal factors tells it from the author;
* `random_style` (easy negative): continue the prompt in a named voice unlike the exemplars';
* `minimal_word_swap` (very hard negative): the author's own continuation with 3-4 words swapped
  for close synonyms, everything else untouched (a vocabulary-only difference);
* `teacher_judge`: a teacher LLM analyses the exemplars' personal factors and judges a pair,
  reading exactly the student judge's input (`judge_format.render_messages`) and ending in the
  closing block `judge_format.parse_verdict` reads.
"""

from __future__ import annotations

import string
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from persrm_core.judging.judge_format import SYSTEM_PROMPT, RenderLimits, format_completion, render_messages

EXEMPLAR_MAX_WORDS = 200  # each exemplar shown to a generator is cut to this many words


@dataclass(frozen=True)
class Template:
    name: str
    version: int
    system: str
    user: str

    @property
    def id(self) -> str:
        return f"{self.name}@v{self.version}"

    @property
    def fields(self) -> frozenset[str]:
        return frozenset(f for text in (self.system, self.user)
                         for _, f, _, _ in string.Formatter().parse(text) if f)


_NO_PREAMBLE = ("Output only the continuation itself: do not repeat the opening, and add no title, "
                "introduction, explanation or quotation marks.")

STYLE_IMITATION = Template(
    "style_imitation", 1,
    system="You are a skilled writer who can imitate any person's writing style closely.",
    user=("Writing samples by one author:\n{exemplars}\n\n"
          "The opening of a new text by the same author:\n{prompt}\n\n"
          "Continue this opening with about {n_words} words, written the way this author writes: match "
          "their tone, sentence length and structure, vocabulary and register, punctuation, capitalisation, "
          "emoji use and stance. Write new content that follows on from the opening; do not copy or "
          "closely paraphrase any sentence of the samples. " + _NO_PREAMBLE),
)

RANDOM_STYLE = Template(
    "random_style", 1,
    system="You are a versatile writer who can write in any voice.",
    user=("A writing sample by one author, for reference only (do NOT write like this):\n{exemplars}\n\n"
          "The opening of a text:\n{prompt}\n\n"
          "Continue this opening with about {n_words} words in a clearly different voice: write it as "
          "{style_hint}. Pick a tone, sentence structure, vocabulary, punctuation and direction unlike the "
          "sample's. " + _NO_PREAMBLE),
)

MINIMAL_WORD_SWAP = Template(
    "minimal_word_swap", 1,
    system="You are a meticulous copy editor who makes exactly the edits asked for and nothing else.",
    user=("Rewrite the text below by replacing exactly {n_swaps} single words, each with a close synonym "
          "(one word for one word). Keep every other word, every punctuation mark, the capitalisation, the "
          "line breaks and the spacing exactly as they are; do not add, remove or reorder words. Output "
          "only the rewritten text, with no introduction, comment or quotation marks.\n\n"
          "Text:\n{text}"),
)

_EXAMPLE_CLOSE = "\n".join(format_completion("-", 3, 8, "B").splitlines()[-2:])
TEACHER_JUDGE = Template(
    "teacher_judge", 1,
    system=(SYSTEM_PROMPT + "\n\nYour analysis will teach a smaller judge, so reason explicitly. First "
            "study the exemplars and name the author's personal factors: tone, structure (sentence and "
            "paragraph length, how sentences open), vocabulary and register, punctuation and capitalisation "
            "(emoji and exclamation marks included), typical length, and stance. Then compare Response A and "
            "Response B with that profile factor by factor, quoting short phrases as evidence. Topic and "
            "fluency are not evidence: both responses continue the same prompt. Keep the analysis under 200 "
            "words. End with exactly these two lines and nothing after them:\n"
            "Scores: A=<integer 0-10> B=<integer 0-10>\nVerdict: [[A]] or [[B]]\n"
            "The scores must differ and the higher one must belong to the response your verdict names, "
            "for example:\n" + _EXAMPLE_CLOSE),
    user="{judge_input}",
)

TEMPLATES: dict[str, Template] = {t.name: t for t in (STYLE_IMITATION, RANDOM_STYLE, MINIMAL_WORD_SWAP,
                                                      TEACHER_JUDGE)}

# Voices for random_style, picked per request so samples differ even at low temperature.
STYLE_HINTS = (
    "a formal news report", "a casual text message to a close friend", "a dry academic abstract",
    "breathless live sports commentary", "a terse technical incident note", "a bedtime story for children",
    "a sarcastic product review", "a rousing motivational speech", "an old-fashioned letter",
    "a bullet-point meeting summary", "a hard-boiled detective narration", "a cheerful marketing email",
)


def _cut(text: str, n_words: int) -> str:
    words = text.split()
    return text.strip() if len(words) <= n_words else " ".join(words[:n_words]) + " ..."


def format_exemplars(texts: Sequence[str], max_words: int = EXEMPLAR_MAX_WORDS) -> str:
    return "\n".join(f"[{i}] {_cut(t, max_words)}" for i, t in enumerate(texts, start=1))


def _judge_fields(exemplars: Sequence[str], prompt: str, response_a: str, response_b: str,
                  limits: RenderLimits = RenderLimits(), evidence=None) -> dict[str, Any]:
    """The teacher reads exactly what the student judge will read for the same pair (`evidence`: the
    pair's measured `persrm_core.evidence.readings.Evidence`, in this A/B order)."""
    return {"judge_input": render_messages(list(exemplars), prompt, response_a, response_b, limits,
                                           evidence=evidence)[-1]["content"]}


_PREPARE = {"teacher_judge": _judge_fields}


def render(template_name: str, **fields: Any) -> tuple[dict, ...]:
    """The chat messages of a template filled with `fields` (a list of strings, e.g. exemplars, is
    shown as numbered blocks). Missing or unexpected fields are a ValueError."""
    if template_name not in TEMPLATES:
        raise ValueError(f"unknown template {template_name!r} (known: {', '.join(sorted(TEMPLATES))})")
    tpl = TEMPLATES[template_name]
    if template_name in _PREPARE:
        try:
            fields = _PREPARE[template_name](**fields)
        except TypeError as exc:
            raise ValueError(f"template {template_name!r}: {exc}") from None
    missing, extra = tpl.fields - set(fields), set(fields) - tpl.fields
    if missing or extra:
        raise ValueError(f"template {template_name!r} needs fields {sorted(tpl.fields)} "
                         f"(missing {sorted(missing)}, unexpected {sorted(extra)})")
    values = {k: format_exemplars(v) if isinstance(v, (list, tuple)) else v for k, v in fields.items()}
    return ({"role": "system", "content": tpl.system.format(**values)},
            {"role": "user", "content": tpl.user.format(**values)})
