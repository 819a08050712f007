"""persrm_core.data.real_authors: cross-author pairs from a directory-per-author corpus (train/ and test/
levels), the skip when the corpus is absent, and the report's "Real authors" section both ways."""

from __future__ import annotations

import json
import random
from collections import Counter
from pathlib import Path

import pytest

from persrm_core.config import load_settings
from persrm_core.data.real_authors import real_author_pairs
from persrm_core.evaluation.report import write_report

# Four writers with distinct habits, so every text is recognisably its author's.
STYLES = {
    "LowerCaseLou": dict(words="so we went down to the old pier and honestly the water was grey and calm and "
                               "nobody else was around which felt kind of nice", end=" lol", case=str.lower),
    "FormalFiona": dict(words="The committee reviewed the quarterly figures carefully and concluded that the "
                              "revised budget remained within the limits agreed last spring", end=".",
                        case=lambda s: s),
    "ShoutingSam": dict(words="THE GAME LAST NIGHT WAS UNBELIEVABLE AND THE CROWD WENT WILD WHEN THE "
                              "STRIKER SCORED IN THE FINAL MINUTE", end="!!!", case=str.upper),
    "HedgingHal": dict(words="perhaps the results might suggest that the method could possibly work although "
                             "it seems somewhat unclear whether", end="...", case=lambda s: s),
}
TOPICS = ["harbour", "budget", "football", "garden", "railway", "weather"]


def _text(author: str, k: int) -> str:
    style = STYLES[author]
    rng = random.Random(f"{author}-{k}")
    base = style["words"].split()
    sentences = []
    while sum(len(s.split()) for s in sentences) < 70:
        words = rng.sample(base, k=min(len(base), rng.randint(8, 12)))
        sentences.append(style["case"](" ".join([TOPICS[k % len(TOPICS)], *words])) + style["end"])
    return " ".join(sentences)


@pytest.fixture()
def corpus(tmp_path) -> Path:
    root = tmp_path / "corpus"
    for author in STYLES:
        for k in range(6):
            level = "train" if k < 3 else "test"
            folder = root / level / author
            folder.mkdir(parents=True, exist_ok=True)
            (folder / f"{k}.txt").write_text(_text(author, k), encoding="utf-8")
    return root


def _texts_by_author(root: Path) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for f in root.glob("*/*/*.txt"):
        out.setdefault(f.parent.name, []).append(f.read_text(encoding="utf-8"))
    return out


def test_pairs_pit_the_authors_own_text_against_another_authors_half_topic_matched(corpus):
    from persrm_core.data.real_authors import NEUTRAL_PROMPT, RANDOM_OTHER, TOPIC_MATCHED

    pairs = real_author_pairs(corpus, max_pairs=0, num_exemplars=2, seed=3)
    assert len(pairs) == 24  # one per text
    texts = _texts_by_author(corpus)
    for p in pairs:
        assert p.prompt == NEUTRAL_PROMPT
        assert p.label in ("A", "B")
        own = texts[p.author_id]
        others = [t for a, ts in texts.items() if a != p.author_id for t in ts]
        source = next(t for t in own if t.startswith(p.chosen))  # the opening of one of the author's texts
        assert any(t.startswith(p.rejected) for t in others)  # ... against the opening of another author's
        assert len(p.chosen.split()) == len(p.rejected.split())
        assert 1 <= len(p.exemplars) <= 2
        assert all(e in own and e != source for e in p.exemplars)  # other texts by the same author
    assert Counter(p.negative_type for p in pairs) == {RANDOM_OTHER: 12, TOPIC_MATCHED: 12}
    assert len({p.author_id for p in pairs}) == len(STYLES)


def test_topic_matched_negative_is_the_nearest_other_authors_text(corpus):
    from persrm_core.data.real_authors import TOPIC_MATCHED

    for p in real_author_pairs(corpus, max_pairs=0, num_exemplars=2, seed=3):
        if p.negative_type == TOPIC_MATCHED:  # the corpus's texts share a topic word by index: k % 6
            topic = p.chosen.split()[0].lower()
            assert p.rejected.split()[0].lower() == topic, (p.chosen[:40], p.rejected[:40])


def test_sample_is_deterministic_balanced_and_capped(corpus):
    first = real_author_pairs(corpus, max_pairs=4, num_exemplars=2, seed=5)
    again = real_author_pairs(corpus, max_pairs=4, num_exemplars=2, seed=5)
    assert first == again
    assert len(first) == 4
    assert Counter(p.label for p in first) == {"A": 2, "B": 2}
    assert len({p.author_id for p in first}) == 4  # round-robin over authors
    only = real_author_pairs(corpus, max_pairs=0, num_exemplars=2, seed=5, authors=["FormalFiona"])
    assert {p.author_id for p in only} == {"FormalFiona"} and len(only) == 6


def test_missing_folder_is_skipped_not_an_error(tmp_path):
    assert real_author_pairs(tmp_path / "nowhere", max_pairs=8, num_exemplars=2, seed=1) is None
    assert real_author_pairs(None, max_pairs=8) is None


def test_config_resolves_dir_against_params_folder_and_empty_turns_it_off(tmp_path):
    repo_params = Path(__file__).resolve().parent.parent / "params.yaml"
    params = tmp_path / "params.yaml"
    params.write_text(repo_params.read_text(encoding="utf-8"), encoding="utf-8")
    smoke = load_settings("smoke", params, root=tmp_path / "elsewhere").eval.real_authors
    assert smoke.dir == (tmp_path / "../shared/data/reuters_c50_dev").resolve()
    assert (smoke.max_pairs, smoke.num_exemplars) == (8, 2)
    assert load_settings("gpu", params).eval.real_authors.max_pairs == 200
    off = load_settings("smoke", params, overrides={"eval": {"real_authors": {"dir": ""}}})
    assert off.eval.real_authors.dir is None


def _judge(acc: float) -> dict:
    return {"accuracy": acc, "accuracy_ci95": [acc - 0.1, acc + 0.1], "n": 8, "format_valid_rate": 1.0,
            "position_consistency": 0.75, "debiased_accuracy": acc,
            "by_negative_type": {"cross_author": acc}, "by_split": {}}


def _metrics(real: dict) -> dict:
    judges = {"base": _judge(0.5), "sft": _judge(0.625), "rft": _judge(0.75), "random": _judge(0.5)}
    return {"judges": judges, "settings": {"profile": "test"}, "real_authors": real}


def test_report_renders_the_real_authors_section(tmp_path):
    real = {"source": "/data/reuters", "pairs": 8, "authors": 4,
            "judges": {"sft": _judge(0.625), "rft": _judge(0.875), "ngram": _judge(0.75)}}
    files = write_report(tmp_path, _metrics(real), {}, [])
    md = (tmp_path / "report.md").read_text()
    section = md.split("## Real authors", 1)[1].split("\n## ", 1)[0]
    assert "8 cross-author pairs by 4 authors from `/data/reuters`, answering a neutral prompt" in section
    assert "| judge | accuracy | ci95 | n | format_valid_rate | position_consistency |" in section
    assert "| rft | 0.875 | [0.78, 0.97] | 8 | 1.000 | 0.750 |" in section
    assert "RFT beat the best baseline, ngram (0.875 vs 0.750)" in section
    assert "![real authors](real_authors.png)" in section
    html = (tmp_path / "report.html").read_text()
    assert "<h2>Real authors</h2>" in html and 'alt="real_authors"' in html
    assert files["real_authors"].read_bytes()[:4] == b"\x89PNG"
    saved = json.loads((tmp_path / "metrics.json").read_text())
    assert saved["real_authors"]["judges"]["rft"]["accuracy"] == 0.875
    lead = md.split("## Does the trained judge beat every baseline on people it never saw?", 1)[1].split("\n## ", 1)[0]
    assert md.index("## Does the trained judge") < md.index("## Summary") < md.index("## Real authors")
    assert "RFT is at or above every baseline overall: 0.875" in lead and "the best, ngram, at 0.750" in lead
    assert "cross_author: RFT 0.875" in lead and "best baseline ngram 0.750 (at or above)" in lead
    assert "<h2>Does the trained judge beat every baseline on people it never saw?</h2>" in html


def test_report_says_why_the_real_authors_section_was_skipped(tmp_path):
    files = write_report(tmp_path, _metrics({"skipped": "no corpus at /nowhere"}), {}, [])
    md = (tmp_path / "report.md").read_text()
    assert "## Real authors\n\nThe real-authors evaluation was skipped: no corpus at /nowhere." in md
    assert "real_authors.png" not in md
    html = (tmp_path / "report.html").read_text()
    assert "<h2>Real authors</h2><p>The real-authors evaluation was skipped: no corpus at /nowhere.</p>" \
        in html.replace("\n", "")
    assert 'alt="real_authors"' not in html
    # the file still exists (a placeholder), so the eval_report stage's DVC outputs are always there
    assert files["real_authors"].read_bytes()[:4] == b"\x89PNG"


def test_report_without_real_authors_key_has_no_section(tmp_path):
    metrics = _metrics({})
    del metrics["real_authors"]
    files = write_report(tmp_path, metrics, {}, [])
    assert "Real authors" not in (tmp_path / "report.md").read_text()
    assert "real_authors" not in files and not (tmp_path / "real_authors.png").exists()
