"""LLM-written negatives (the PersRM-R1 recipe's generated strategies), validated before use.

For each task (an author's prompt and their own continuation, `persrm_core.synthesis.pairs.Task`):

* `style_imitation` (hard): a continuation of the prompt in the exemplars' style;
* `random_style` (easy): a continuation in a named voice unlike the exemplars';
* `minimal_word_swap` (very hard): the author's continuation with 3-4 words swapped for synonyms.

A generator's output is only a negative if it is what its strategy promises, so each one is
cleaned (a "Here is..." preamble, wrapping quotes, an echoed prompt) and checked; failures are
dropped and counted by reason rather than silently mislabelling a pair:

* `empty`; `identical` (the author's own text back);
* `copies_exemplar`: a continuation that shares more than `MAX_COPY_SHARE` of its word 8-grams
  with an exemplar, or covers more than that share of an exemplar's 8-grams (copied author text
  would be a rejected response that the author actually wrote);
* `not_word_swap` / `swap_count`: a word swap whose diff against the chosen text is not 3-4
  same-position word substitutions with punctuation, casing of untouched words and word count
  kept; a kept swap is rebuilt on the chosen text's exact whitespace, so only the words differ;
* `duplicate`: the same text again for the same task and strategy.

Sample k of a (task, strategy) is generated with seed `params.seed + k`, so several samples per
task differ while every sample stays cached and reproducible.
"""

from __future__ import annotations

import dataclasses
import hashlib
import re
from collections.abc import Mapping, Sequence
from pathlib import Path

from persrm_core.llm.generation import Backend, GenRequest, SamplingParams, generate_cached
from persrm_core.synthesis.pairs import Task
from persrm_core.synthesis.strategies import LLM_STRATEGIES
from persrm_core.synthesis.templates import STYLE_HINTS, TEMPLATES, render

DROP_REASONS = ("empty", "identical", "copies_exemplar", "not_word_swap", "swap_count", "duplicate")
COPY_NGRAM = 8
MAX_COPY_SHARE = 0.2
SWAP_RANGE = (3, 4)

PREAMBLE_RE = re.compile(
    r"^(?:(?:sure|certainly|okay|ok|of course)\b[,!.]?\s*)?"
    r"(?:here(?:'s|’s| is| are)\b[^\n:]{0,80}?\b(?:text|continuation|version|rewrite|rewritten|passage|response"
    r"|paragraph|story|piece|output)\b[^\n:]{0,80}:|(?:rewritten|revised|modified) text:|continuation:)\s*",
    re.IGNORECASE)
QUOTES = {'"': '"', "“": "”", "'": "'", "«": "»"}
WORD_RE = re.compile(r"\w+(?:['’]\w+)*")
TOKEN_RE = re.compile(r"^(\W*)(.*?)(\W*)$", re.DOTALL)


def clean_output(text: str, reference: str = "", prompt: str = "") -> str:
    """Strip, conservatively, what generators wrap around an answer: a leading "Here is the
    <text|continuation|version|...> ...:" or "Rewritten text:" preamble, quotes around the whole
    text, and a repeat of the prompt. Nothing is stripped that the reference (the author's
    continuation) itself starts with."""
    out, ref = text.strip(), reference.strip()
    m = PREAMBLE_RE.match(out)
    if m and not ref.lower().startswith(m.group(0).strip().lower()):
        out = out[m.end():].strip()
    close = QUOTES.get(out[:1])
    if (close and len(out) >= 2 and out.endswith(close) and not ref.startswith(out[0])
            and out[0] not in out[1:-1] and close not in out[1:-1]):
        out = out[1:-1].strip()
    if prompt.strip() and out.startswith(prompt.strip()) and not ref.startswith(prompt.strip()):
        out = out[len(prompt.strip()):].strip()
    return out


def _ngrams(text: str, n: int = COPY_NGRAM) -> set[tuple[str, ...]]:
    words = WORD_RE.findall(text.lower())
    return {tuple(words[i:i + n]) for i in range(len(words) - n + 1)}


def copy_share(output: str, exemplar: str, n: int = COPY_NGRAM) -> float:
    """How much of either text the other's word n-grams cover: the larger of the share of the
    exemplar's n-grams found in the output and the share of the output's found in the exemplar
    (the first alone misses a long exemplar's sentence copied into a short output)."""
    out, ex = _ngrams(output, n), _ngrams(exemplar, n)
    if not out or not ex:
        return 0.0
    common = len(out & ex)
    return max(common / len(ex), common / len(out))


def changed_words(a: str, b: str) -> list[tuple[str, str]] | None:
    """The (old, new) words at the positions where `b` differs from `a`; None unless the two have
    the same number of words. Whitespace itself is not compared (an LLM reflows it freely): the
    rule of `persrm_core.synthesis.swap.changed_words` on whitespace-normalised texts."""
    from persrm_core.synthesis.swap import changed_words as same_layout_changes

    return same_layout_changes(" ".join(a.split()), " ".join(b.split()))


def _is_word_swap(old: str, new: str) -> bool:
    """A real word substitution: same surrounding punctuation, a different word (not only case)."""
    mo, mn = TOKEN_RE.match(old), TOKEN_RE.match(new)
    assert mo is not None and mn is not None
    return (mo.group(1), mo.group(3)) == (mn.group(1), mn.group(3)) and \
        bool(mn.group(2)) and mo.group(2).lower() != mn.group(2).lower()


def _on_whitespace_of(reference: str, words: list[str]) -> str:
    """`words` laid on `reference`'s exact spacing and line breaks (same word count assumed)."""
    it = iter(words)
    return re.sub(r"\S+", lambda _: next(it), reference.strip())


def _pick(*parts: object) -> int:
    return int(hashlib.sha1("\x00".join(map(str, parts)).encode()).hexdigest()[:8], 16)


def _request(strategy: str, task: Task, exemplars: Sequence[str], k: int) -> GenRequest | None:
    n_words = len(task.continuation.split())
    if strategy == "minimal_word_swap":
        fields = {"text": task.continuation, "n_swaps": SWAP_RANGE[_pick(task.text_id, k) % len(SWAP_RANGE)]}
    elif not exemplars:
        return None
    elif strategy == "style_imitation":
        fields = {"exemplars": list(exemplars), "prompt": task.prompt, "n_words": n_words}
    else:
        hint = STYLE_HINTS[_pick(task.text_id, "hint", k) % len(STYLE_HINTS)]
        fields = {"exemplars": list(exemplars), "prompt": task.prompt, "n_words": n_words, "style_hint": hint}
    return GenRequest(messages=render(strategy, **fields), template=TEMPLATES[strategy].id)


def validate(strategy: str, output: str, task: Task, exemplars: Sequence[str]) -> tuple[str | None, str | None]:
    """(negative text, None) for a usable output, else (None, drop reason)."""
    chosen = task.continuation.strip()
    text = clean_output(output, chosen, "" if strategy == "minimal_word_swap" else task.prompt)
    if not text:
        return None, "empty"
    if " ".join(text.split()) == " ".join(chosen.split()):
        return None, "identical"
    if strategy == "minimal_word_swap":
        changes = changed_words(chosen, text)
        if changes is None or not all(_is_word_swap(o, n) for o, n in changes):
            return None, "not_word_swap"
        if not SWAP_RANGE[0] <= len(changes) <= SWAP_RANGE[-1]:
            return None, "swap_count"
        return _on_whitespace_of(chosen, text.split()), None
    if any(copy_share(text, ex) > MAX_COPY_SHARE for ex in exemplars):
        return None, "copies_exemplar"
    return text, None


def llm_negatives(tasks: Sequence[Task], exemplars_by_task: Sequence[Sequence[str]] | Mapping[str, Sequence[str]],
                  strategy_counts: Mapping[str, int], backend: Backend, params: SamplingParams,
                  cache_path: str | Path, progress: bool = True
                  ) -> tuple[list[tuple[int, str, str]], dict[str, int]]:
    """Generate, clean and validate LLM negatives. `exemplars_by_task` is aligned with `tasks`, or
    maps a task's text_id to its exemplar texts (the ones its pairs will show). Returns the kept
    (task index, strategy, rejected text) in task, strategy, sample order, and the number of
    outputs dropped per reason. Strategies that need exemplars skip tasks that have none."""
    unknown = set(strategy_counts) - set(LLM_STRATEGIES)
    if unknown:
        raise ValueError(f"unknown LLM negative strategies {sorted(unknown)} (known: {', '.join(LLM_STRATEGIES)})")
    if backend is None:
        raise ValueError("LLM negatives need a generation backend "
                         "(the 'rules' backend means offline strategies only)")

    def exemplars_of(i: int) -> Sequence[str]:
        if isinstance(exemplars_by_task, Mapping):
            return exemplars_by_task.get(tasks[i].text_id, ())
        return exemplars_by_task[i]

    order = {s: n for n, s in enumerate(strategy_counts)}
    dropped = dict.fromkeys(DROP_REASONS, 0)
    kept: list[tuple[int, str, int, str]] = []
    seen: set[tuple[int, str, str]] = set()
    for k in range(max(strategy_counts.values(), default=0)):
        requests = []
        for i, task in enumerate(tasks):
            for strategy, count in strategy_counts.items():
                req = _request(strategy, task, exemplars_of(i), k) if k < count else None
                if req is not None:
                    requests.append(dataclasses.replace(req, meta={"task": i, "strategy": strategy, "k": k}))
        outputs = generate_cached(backend, requests, dataclasses.replace(params, seed=params.seed + k),
                                  cache_path, progress=progress)
        for req, out in zip(requests, outputs):
            i, strategy = req.meta["task"], req.meta["strategy"]  # type: ignore[index]
            text, reason = validate(strategy, out, tasks[i], exemplars_of(i))
            if text is not None and (i, strategy, text) in seen:
                text, reason = None, "duplicate"
            if text is None:
                dropped[reason or "empty"] += 1
                continue
            seen.add((i, strategy, text))
            kept.append((i, strategy, k, text))
    kept.sort(key=lambda r: (r[0], order[r[1]], r[2]))
    return [(i, s, t) for i, s, _, t in kept], dropped
