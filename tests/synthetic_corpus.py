"""A small deterministic multi-author corpus with clearly different personal styles (test helper,
not a test module): five authors, each writing from their own bank of sentences."""

from __future__ import annotations

import random

from persrm_core.records import Exemplar

SENTENCES: dict[str, list[str]] = {
    # all lowercase, apostrophe-less contractions, no capitals at all
    "lena": [
        "i dont really know why the bus was late again this morning.",
        "honestly im just tired of waiting in the cold for it every day.",
        "my sister says i should get a bike but i cant ride one at all.",
        "we ended up walking to the market and buying way too much bread.",
        "the cat knocked my coffee over while i was reading the news.",
        "i think im going to cook pasta tonight because its easy.",
        "there was a tiny dog in the park wearing a little green coat.",
        "my phone died halfway through the call so i never heard the end.",
        "i keep forgetting to water the plants on the windowsill.",
        "the neighbours were playing loud music until way past midnight.",
        "we watched an old movie and fell asleep before the ending.",
        "i found a shop that sells the good cheap notebooks i like.",
    ],
    # sentence case, emoji and exclamation marks
    "eve": [
        "Just got back from the beach and it was amazing! 🌊",
        "The sunset tonight was honestly unreal! 😍",
        "Made pancakes for the whole family this morning! 🥞",
        "My best friend surprised me with concert tickets! 🎉",
        "Can't wait for the weekend road trip with everyone! 🚗",
        "Finally finished painting the bedroom a lovely shade of blue! 🎨",
        "The puppy learned to sit in just one afternoon! 🐶",
        "We danced in the kitchen until our feet hurt! 💃",
        "Found the cutest little cafe around the corner today! ☕",
        "Our garden tomatoes are finally turning red! 🍅",
        "Spent the whole day laughing with my cousins! 😂",
        "New running shoes arrived and they feel like clouds! 👟",
    ],
    # long formal sentences, semicolons, formal vocabulary
    "frank": [
        "The committee convened on Tuesday to review the quarterly budget; however, "
        "several members requested additional documentation prior to any decision.",
        "It is therefore necessary to obtain sufficient evidence regarding the proposed "
        "expenditure before the board can demonstrate its approval.",
        "Numerous individuals have expressed concern regarding the residence permits; "
        "consequently, the department intends to inform each applicant in writing.",
        "Furthermore, the auditors observed substantial discrepancies in the accounts "
        "submitted by the regional office during the previous fiscal year.",
        "The organisation will commence a comprehensive review of its procurement "
        "procedures; moreover, it will require every supplier to register again.",
        "Nevertheless, the chairman indicated that the final report would be published "
        "subsequently, once the legal department had completed its assessment.",
        "Approximately forty percent of the respondents indicated that the current "
        "arrangements were inadequate for the purposes of long-term planning.",
        "The minister stated that the government would endeavour to acquire the "
        "necessary land prior to the commencement of construction in the spring.",
    ],
    # hedging everywhere
    "hana": [
        "Perhaps the new library will open sooner than people expect.",
        "It seems the weather might improve later in the week, arguably.",
        "The results could possibly change once more data arrives.",
        "Arguably the old bridge was somewhat more charming than the new one.",
        "It may be that the bakery is simply closed on Mondays.",
        "One might say the film was rather too long for its story.",
        "Perhaps we could try the other route to the station next time.",
        "The garden seems somewhat smaller than it did last summer, perhaps.",
        "Apparently the museum might extend its opening hours in spring.",
        "To some extent the town has probably changed since I left.",
        "The meeting could perhaps be moved to a quieter room.",
        "It seems the price of coffee has likely gone up again.",
    ],
    # very short plain capitalised sentences, no contractions, no hedges
    "tom": [
        "The train left at six.",
        "I sat by the window.",
        "Rain hit the glass hard.",
        "The conductor checked my ticket.",
        "We passed three small farms.",
        "A man read a thick book.",
        "The coffee was cold.",
        "I did not mind.",
        "The station was empty.",
        "My brother met me there.",
        "We walked to his house.",
        "Dinner was fish and potatoes.",
        "The dog slept by the fire.",
        "I went to bed early.",
    ],
}
AUTHORS = tuple(SENTENCES)


def author_text(author: str, rng: random.Random, min_words: int = 60) -> str:
    bank = SENTENCES[author]
    order = rng.sample(bank, k=len(bank))
    out: list[str] = []
    while sum(len(s.split()) for s in out) < min_words:
        out.append(order[len(out) % len(order)])
    return " ".join(out)


def make_corpus(n_authors: int = 5, n_texts: int = 8, seed: int = 0) -> list[Exemplar]:
    rng = random.Random(seed)
    corpus = []
    for author in AUTHORS[:n_authors]:
        seen: set[str] = set()
        while len(seen) < n_texts:
            text = author_text(author, rng)
            if text not in seen:
                seen.add(text)
                corpus.append(Exemplar(author, text))
    return corpus


def tiny_training_setup(root, n_pairs: int, tiny):
    """A tiny base model built in `root / "base"` and the first `n_pairs` train pairs of the
    corpus (what the resume and launch tests train on)."""
    from persrm_core.llm.model import build_tiny
    from persrm_core.synthesis.pairs import SynthesisConfig, build_pairs

    exemplars = make_corpus()
    pairs = [p for p in build_pairs(exemplars, SynthesisConfig(seed=1, unseen_authors=1), progress=False)
             if p["split"] == "train"][:n_pairs]
    build_tiny([e.text for e in exemplars], root / "base", tiny)
    return root, pairs
