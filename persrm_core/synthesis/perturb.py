"""Rule perturbations: rewrite a text against its own habit along one named personal factor.

Each rule looks at the text, moves it the other way along its factor (lowercase prose gains
sentence case, emoji-laden prose loses its emoji, plain prose gains them...), and returns None
when it cannot make a clear change. Because the direction follows the text, no factor value by
itself says which response is the author's: only a comparison with the exemplars does.
"""

from __future__ import annotations

import random
import re
from collections.abc import Callable

from persrm_core.evidence.style import EMOJI_RE, HEDGE_RE, measure, sentences

Rule = Callable[..., "str | None"]

EMOJI_POOL = ("😊", "🎉", "🙌", "✨", "🔥", "😂", "👍", "😍", "💯", "🙃")
CONTRACTIONS = {
    "do not": "don't", "does not": "doesn't", "did not": "didn't", "is not": "isn't",
    "are not": "aren't", "was not": "wasn't", "were not": "weren't", "cannot": "can't",
    "will not": "won't", "would not": "wouldn't", "could not": "couldn't", "should not": "shouldn't",
    "have not": "haven't", "has not": "hasn't", "had not": "hadn't", "I am": "I'm", "it is": "it's",
    "that is": "that's", "there is": "there's", "we are": "we're", "they are": "they're",
    "you are": "you're", "I have": "I've", "we have": "we've", "I will": "I'll", "we will": "we'll",
    "I would": "I'd", "let us": "let's", "what is": "what's",
}
EXPANSIONS = {v.lower(): k for k, v in CONTRACTIONS.items()}
EXPANSIONS.update({"dont": "do not", "cant": "cannot", "im": "I am", "ive": "I have",
                   "didnt": "did not", "isnt": "is not", "wont": "will not", "doesnt": "does not"})
FORMAL_TO_PLAIN = {
    "however": "but", "therefore": "so", "purchase": "buy", "assist": "help", "commence": "start",
    "numerous": "lots of", "approximately": "about", "obtain": "get", "sufficient": "enough",
    "require": "need", "requires": "needs", "additional": "extra", "individuals": "people",
    "regarding": "about", "utilise": "use", "utilize": "use", "attempt": "try", "inform": "tell",
    "residence": "home", "furthermore": "also", "moreover": "plus", "consequently": "so",
    "observe": "see", "demonstrate": "show", "substantial": "big", "acquire": "get",
    "nevertheless": "still", "prior to": "before", "subsequently": "then", "endeavour": "try",
}
PLAIN_TO_FORMAL = {v: k for k, v in reversed(list(FORMAL_TO_PLAIN.items()))}
STARTS_WITH_I = re.compile(r"I\b")
HEDGE_OPENERS = ("Perhaps", "Arguably", "It may be that", "To some extent,", "One might say")


_SWAP_PATTERNS: dict[int, tuple[re.Pattern, dict[str, str]]] = {}


def _swap_pattern(table: dict[str, str]) -> tuple[re.Pattern, dict[str, str]]:
    """The alternation regex of a (module-constant) word table, compiled once, not per text."""
    if id(table) not in _SWAP_PATTERNS:
        pattern = re.compile(r"\b(" + "|".join(re.escape(k) for k in sorted(table, key=len, reverse=True))
                             + r")\b", re.IGNORECASE)
        _SWAP_PATTERNS[id(table)] = (pattern, {k.lower(): v for k, v in table.items()} | dict(table))
    return _SWAP_PATTERNS[id(table)]


def _swap_words(text: str, table: dict[str, str]) -> tuple[str, int]:
    pattern, table = _swap_pattern(table)
    count = 0

    def repl(m: re.Match) -> str:
        nonlocal count
        count += 1
        word = m.group(0)
        new = table[word.lower()] if word.lower() in table else table.get(word, word)
        return new[0].upper() + new[1:] if word[0].isupper() else new

    return pattern.sub(repl, text), count


def casing(text: str, rng: random.Random, ref: str | None = None) -> str | None:
    ref = text if ref is None else ref
    caps = measure(ref)["capitals"]
    if caps < 1.0:  # lowercase writer -> sentence case, capital I
        out = re.sub(r"(^|[.!?]\s+|\n)([a-z])", lambda m: m.group(1) + m.group(2).upper(), text)
        out = re.sub(r"\bi\b", "I", out)
        return out if out != text else None
    return text.lower()


def exclamations(text: str, rng: random.Random, ref: str | None = None) -> str | None:
    ref = text if ref is None else ref
    if "!" in ref:
        return re.sub(r"!+", ".", text) if "!" in text else None
    ends = [m.start() for m in re.finditer(r"\.(?=\s|$)", text)]
    if len(ends) < 2:
        return None
    chosen = set(rng.sample(ends, k=max(2, len(ends) // 2)))
    return "".join("!" if i in chosen else c for i, c in enumerate(text))


def emoji(text: str, rng: random.Random, ref: str | None = None) -> str | None:
    ref = text if ref is None else ref
    if EMOJI_RE.search(ref):
        out = re.sub(r" ?" + EMOJI_RE.pattern + "+", "", text)
        return re.sub(r"[ \t]{2,}", " ", out).strip()
    sents = sentences(text)
    if len(sents) < 2:
        return text + " " + rng.choice(EMOJI_POOL)
    picks = set(rng.sample(range(len(sents)), k=min(3, len(sents))))
    return " ".join(s + (" " + rng.choice(EMOJI_POOL) if i in picks else "") for i, s in enumerate(sents))


def contractions(text: str, rng: random.Random, ref: str | None = None) -> str | None:
    ref = text if ref is None else ref
    expanded, n = _swap_words(text.replace("’", "'"), EXPANSIONS)
    if n >= 1:
        # "im" -> "I am" would add capitals to a lowercase writer's text
        return expanded.replace("I ", "i ") if measure(ref)["capitals"] < 1.0 else expanded
    contracted, n = _swap_words(text, CONTRACTIONS)
    return contracted if n >= 2 else None


def sentence_length(text: str, rng: random.Random, ref: str | None = None) -> str | None:
    ref = text if ref is None else ref
    sents = sentences(text)
    if len(sents) < 2:
        return None
    mean_len = measure(ref)["sentence_length"]
    if mean_len >= 12:  # long sentences -> split at commas and conjunctions
        out = re.sub(r",\s+(and|but|which|so)\s+(\w)", lambda m: ". " + m.group(2).upper(), text)
        out = re.sub(r";\s+(\w)", lambda m: ". " + m.group(1).upper(), out)
        return out if out != text else None
    merged, i = [], 0
    while i < len(sents):
        if i + 1 < len(sents):
            a, b = sents[i].rstrip(".!?"), sents[i + 1]
            b = b[0].lower() + b[1:] if b[:1].isupper() and not STARTS_WITH_I.match(b) else b
            merged.append(f"{a}, and {b}")
            i += 2
        else:
            merged.append(sents[i])
            i += 1
    return " ".join(merged)


def hedging(text: str, rng: random.Random, ref: str | None = None) -> str | None:
    ref = text if ref is None else ref
    if len(HEDGE_RE.findall(ref)) >= 2:
        out = re.sub(r"\b(perhaps|arguably|possibly|somewhat|seemingly|apparently|presumably),?\s+",
                     "", text, flags=re.IGNORECASE)
        out = re.sub(r"\b(to some extent|it seems|in some ways),?\s*", "", out, flags=re.IGNORECASE)
        out = re.sub(r"\b(might|may|could)\b", "will", out)
        if measure(ref)["capitals"] >= 1.0:  # re-capitalise sentence starts, unless a lowercase writer
            out = re.sub(r"(^|[.!?]\s+)([a-z])", lambda m: m.group(1) + m.group(2).upper(), out)
        return out if out != text else None
    sents = sentences(text)
    if len(sents) < 2:
        return None
    picks = set(rng.sample(range(len(sents)), k=min(3, len(sents))))
    out = []
    for i, s in enumerate(sents):
        if i in picks and s[:1].isalpha():
            # The opener takes over the sentence's capital (or its lack), so hedging never
            # changes how much of the text is capitalised.
            opener = rng.choice(HEDGE_OPENERS)
            if s[0].isupper() and not STARTS_WITH_I.match(s):
                s = f"{opener} {s[0].lower()}{s[1:]}"
            elif s[0].isupper():
                s = f"{opener} {s}"
            else:
                s = f"{opener[0].lower()}{opener[1:]} {s}"
        out.append(s)
    return " ".join(out)


def register(text: str, rng: random.Random, ref: str | None = None) -> str | None:
    plain, n_formal = _swap_words(text, FORMAL_TO_PLAIN)
    if n_formal >= 2:
        return plain
    formal, n_plain = _swap_words(text, PLAIN_TO_FORMAL)
    return formal if n_plain >= 2 else None


RULES: dict[str, Rule] = {
    "casing": casing,
    "exclamations": exclamations,
    "emoji": emoji,
    "contractions": contractions,
    "sentence_length": sentence_length,
    "hedging": hedging,
    "register": register,
}


# The measured factor each rule moves (register has no single measure of its own).
MEASURED_BY = {"casing": "capitals", "exclamations": "exclamations", "emoji": "emoji",
               "contractions": "contractions", "sentence_length": "sentence_length", "hedging": "hedges"}


def perturb(text: str, rng: random.Random, n_factors: int = 2,
            factors: list[str] | None = None) -> tuple[str, list[str]] | None:
    """Apply up to `n_factors` applicable rules in random order; None if none changes the text.
    Every rule takes its direction from the original text (so hedging's capitalised openers do
    not flip the casing rule), and a factor is reported only if its measure differs between
    `text` and the result."""
    names = list(factors or RULES)
    rng.shuffle(names)
    out, applied = text, []
    for name in names:
        if len(applied) == n_factors:
            break
        new = RULES[name](out, rng, ref=text)  # each rule's direction follows the original text
        if new is not None and new.strip() and new != out:
            out, applied = new, applied + [name]
    before, after = measure(text), measure(out)
    applied = [a for a in applied if a not in MEASURED_BY or
               abs(before[MEASURED_BY[a]] - after[MEASURED_BY[a]]) > 1e-9]
    return (out, sorted(applied)) if applied else None
