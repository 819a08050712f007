"""The negative strategies: how the rejected response of a synthetic pair is made, one registry.

Each strategy declares what the rest of the pipeline needs to know about it, so no module spells
out lists of names: whether it is *author-local* (made from the author's own text alone, so its rows
are kept in the author's shard and reused while the author's texts are unchanged; `cross_author`,
which draws on everyone, is the one that is not), whether it *needs an LLM* (a generation backend),
whether its chosen and rejected responses are *cut to equal length* (so that "pick the longer one"
says nothing), and which *gate* of `filter_pairs` validates it (an edit of the chosen text must
show the edit it promises, a swap must substitute a few words and keep the rest, any other
negative must not be a near-duplicate of the chosen text). Which strategies a run uses, and how many
negatives each makes per text, is `synthesis.negatives` in params.yaml."""

from __future__ import annotations

from dataclasses import dataclass

CROSS_AUTHOR = "cross_author"

# filter_pairs' gates (persrm_core.data.corpus.drop_non_negatives)
EDIT = "edit"  # a rewrite of the chosen text: must still differ in the factors it names
SWAP = "swap"  # a minimal word swap: same layout, a few words substituted
FREE = "free"  # anything else: must not be a near-duplicate of the chosen text


@dataclass(frozen=True)
class NegativeStrategy:
    name: str
    author_local: bool
    needs_llm: bool
    length_matched: bool
    gate: str
    summary: str


REGISTRY: dict[str, NegativeStrategy] = {s.name: s for s in (
    NegativeStrategy(CROSS_AUTHOR, author_local=False, needs_llm=False, length_matched=False, gate=FREE,
                     summary="another author's real continuation, length-matched, preferably near in topic"),
    NegativeStrategy("rule_perturbation", author_local=True, needs_llm=False, length_matched=True, gate=EDIT,
                     summary="the author's own continuation rewritten against their habit along named factors"),
    NegativeStrategy("lexicon_swap", author_local=True, needs_llm=False, length_matched=False, gate=SWAP,
                     summary="three or four of the author's words swapped for synonyms from the bundled lexicon"),
    NegativeStrategy("style_imitation", author_local=True, needs_llm=True, length_matched=True, gate=FREE,
                     summary="an LLM's continuation of the prompt in the exemplars' style (a hard negative)"),
    NegativeStrategy("random_style", author_local=True, needs_llm=True, length_matched=True, gate=FREE,
                     summary="an LLM's continuation in a named voice unlike the exemplars'"),
    NegativeStrategy("minimal_word_swap", author_local=True, needs_llm=True, length_matched=False, gate=SWAP,
                     summary="the author's continuation with three or four words swapped for synonyms by an LLM"),
)}

STRATEGIES = tuple(REGISTRY)
LLM_STRATEGIES = tuple(n for n, s in REGISTRY.items() if s.needs_llm)
OFFLINE_STRATEGIES = tuple(n for n, s in REGISTRY.items() if not s.needs_llm)


def strategy(name: str) -> NegativeStrategy:
    """The registered strategy `name`; a ValueError naming the known ones otherwise."""
    try:
        return REGISTRY[name]
    except KeyError:
        raise ValueError(f"unknown negative strategy {name!r} (known: {', '.join(STRATEGIES)})") from None


def check_known(negatives: dict[str, int]) -> None:
    """Every strategy asked for (count > 0) is registered."""
    for name, count in negatives.items():
        if count > 0:
            strategy(name)


def enabled(negatives: dict[str, int], *, author_local: bool | None = None,
            needs_llm: bool | None = None) -> dict[str, int]:
    """The strategies of `negatives` that make at least one negative, with their counts, optionally
    only those that are (or are not) author-local / need an LLM. Unknown names are left to
    `check_known`."""
    out = {}
    for name, count in negatives.items():
        s = REGISTRY.get(name)
        if count <= 0 or s is None:
            continue
        if author_local is not None and s.author_local != author_local:
            continue
        if needs_llm is not None and s.needs_llm != needs_llm:
            continue
        out[name] = count
    return out


def uses_llm(negatives: dict[str, int]) -> bool:
    """Does any strategy asked for need a generation backend?"""
    return bool(enabled(negatives, needs_llm=True))


def gated(gate: str) -> tuple[str, ...]:
    """The strategies `filter_pairs` validates with `gate` (EDIT, SWAP or FREE)."""
    return tuple(n for n, s in REGISTRY.items() if s.gate == gate)
