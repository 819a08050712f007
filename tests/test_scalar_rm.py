"""persrm_core.training.scalar_rm: the Bradley-Terry scalar reward model baseline trains with TRL, publishes a
loadable checkpoint, judges in `baseline_judge`'s record shape, cannot depend on A/B position, and
learns a person-conditioned toy task that no response-only scorer can beat chance on."""

from __future__ import annotations

import json
import random

import pytest

from persrm_core.evaluation.metrics import judge_metrics
from persrm_core.judging.judge import baseline_judge, swapped
from persrm_core.llm.model import TinyModelConfig, build_tiny, load_tokenizer
from persrm_core.records import Pair
from persrm_core.training.scalar_rm import SETTINGS_FILE, ScalarRMConfig, ScalarRMJudge, render_ids, train_scalar_rm

TINY = TinyModelConfig(vocab_size=300, hidden_size=32, num_layers=1, num_heads=2, num_kv_heads=1,
                       intermediate_size=64, max_positions=256)
MARKERS = ("zorp", "quix")
FILLER = "the a small dog cat ran sat over under by near big old new red blue day night home park".split()


def toy_pairs(n: int, seed: int) -> list[dict]:
    """Each author writes with one marker word; the chosen response carries the author's marker, the
    rejected one the other marker. Each marker is chosen as often as rejected, so a scorer that reads
    the response alone is right exactly half the time: only reading the exemplars beats chance."""
    rng = random.Random(seed)

    def text(marker: str) -> str:
        words = [rng.choice(FILLER) for _ in range(2)] + [marker] * 4
        rng.shuffle(words)
        return " ".join(words)

    pairs = []
    for i in range(n):
        mine = MARKERS[i // 2 % 2]  # markers and labels both alternate, crossed: every combination alike
        other = MARKERS[1 - MARKERS.index(mine)]
        chosen, rejected = text(mine), text(other)
        label = "A" if i % 2 == 0 else "B"
        a, b = (chosen, rejected) if label == "A" else (rejected, chosen)
        pairs.append({"pair_id": f"toy-{seed}-{i}", "author_id": mine, "exemplars": [text(mine), text(mine)],
                      "prompt": "write one line", "response_a": a, "response_b": b, "label": label,
                      "negative_type": "cross_author"})
    return pairs


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    root = tmp_path_factory.mktemp("scalar_rm")
    train = toy_pairs(128, seed=1)
    build_tiny([" ".join(FILLER + list(MARKERS))] * 5 + [p["response_a"] for p in train], root / "base", TINY)
    cfg = ScalarRMConfig(max_steps=40, batch_size=8, learning_rate=3e-3, logging_steps=10, max_length=128)
    log = train_scalar_rm(root / "base", train, root / "rm", cfg)
    return root, log


def test_checkpoint_is_published_whole_without_pickles(trained):
    root, log = trained
    rm = root / "rm"
    assert (rm / "model.safetensors").is_file() and (rm / "tokenizer.json").is_file()
    assert not (rm / "training_args.bin").exists() and not (rm / "_work").exists()
    assert json.loads((rm / SETTINGS_FILE).read_text())["max_length"] == 128
    assert json.loads((rm / "training_log.json").read_text()) == log
    assert [h["step"] for h in log if "loss" in h] == [10, 20, 30, 40]
    assert log[-1] == {"stage": "scalar_rm", "train_pairs": 128}
    assert not [p for p in rm.parent.iterdir() if p.name.startswith(".rm.")]  # no temp dir left beside it


def test_judgments_have_the_baseline_judges_shape(trained):
    root, _ = trained
    pairs = [Pair(**p) for p in toy_pairs(8, seed=3)]
    judge = ScalarRMJudge(root / "rm", batch_size=3)
    for both in (False, True):
        rows = judge.judge(pairs, both_orders=both)
        ref = baseline_judge("length", pairs, both_orders=both)
        assert [r["pair_id"] for r in rows] == [p.pair_id for p in pairs]
        assert set(rows[0]) - {"scores_swapped"} == set(ref[0])  # plus the swapped scores ModelJudge gives
        assert all(r["choice"] in ("A", "B") and len(r["scores"]) == 2 for r in rows)
        metrics = judge_metrics(pairs, rows)
        assert metrics["format_valid_rate"] == 1.0
        assert (metrics["position_consistency"] == 1.0) if both else metrics["position_consistency"] is None


def test_scores_do_not_depend_on_position_or_batching(trained):
    root, _ = trained
    pairs = [Pair(**p) for p in toy_pairs(12, seed=4)]
    rows = ScalarRMJudge(root / "rm", batch_size=5).judge(pairs)
    flipped = ScalarRMJudge(root / "rm", batch_size=2).judge([swapped(p) for p in pairs])
    for r, f in zip(rows, flipped, strict=True):
        assert f["choice"] == {"A": "B", "B": "A"}[r["choice"]]
        assert f["scores"][::-1] == pytest.approx(r["scores"], abs=1e-4)


def test_training_learns_to_read_the_exemplars(trained):
    root, _ = trained
    pairs = [Pair(**p) for p in toy_pairs(64, seed=2)]  # held out: texts drawn afresh
    metrics = judge_metrics(pairs, ScalarRMJudge(root / "rm").judge(pairs))
    assert metrics["accuracy"] >= 0.85, metrics  # chance (any response-only scorer) is exactly 0.5


def test_render_cuts_to_the_token_budget_and_keeps_the_response(trained):
    root, _ = trained
    tok = load_tokenizer(root / "base")
    long = " ".join(["the small dog ran home"] * 40)  # 200 words, about 2.5 tokens a word here
    cfg = ScalarRMConfig(max_length=130, max_exemplars=3, max_exemplar_words=80, max_response_words=120)
    text = tok.decode(render_ids(tok, [long, long, long], "write one line", "zorp quix zorp", cfg))
    # three exemplars of 80 words do not fit, nor one of 80 or 40 words; one of 20 words does
    assert text.count("[") == 1 and f"[1] {' '.join(long.split()[:20])} ..." in text
    assert text.startswith("<|im_start|>user") and "zorp quix zorp<|im_end|>" in text
    last = render_ids(tok, [long], "write one line", "zorp quix zorp", ScalarRMConfig(max_length=60))
    assert len(last) == 60 and tok.decode(last).endswith("zorp quix zorp<|im_end|>\n")  # last resort: the tail
    short = render_ids(tok, ["the dog"], "p", "zorp", ScalarRMConfig(max_length=1024))
    assert "[1] the dog\nPrompt: p" in tok.decode(short)
