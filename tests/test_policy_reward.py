"""persrm_core.judging.policy_reward.PersonalReward (the judge as a TRL reward) and the GRPO example that
personalizes a policy with it: the reward mapping pays only order-robust wins, reads string and chat
completions and prompts alike, takes exemplars from the dataset row, and drives two GRPO steps."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

from persrm_core.judging.judge_format import RenderLimits
from persrm_core.judging.policy_reward import LOSS, UNSURE, WIN, PersonalReward, prompt_text
from persrm_core.llm.model import TinyModelConfig, build_tiny
from persrm_core.records import Pair
from tests.synthetic_corpus import make_corpus

REPO = Path(__file__).resolve().parent.parent
TINY = TinyModelConfig(vocab_size=400, hidden_size=32, num_layers=1, num_heads=2, num_kv_heads=1,
                       intermediate_size=64, max_positions=1024)
EXEMPLARS = ["i dont know why the bus was late.", "the cat knocked my coffee over."]


class FakeJudge:
    """Answers by a rule on the texts: A/B readings chosen by the word in the completion (slot A).

    'better' wins in both orders, 'worse' loses in both, 'biased' always gets A (a position bias:
    A in the first order, B once mapped back from the swapped order), 'broken' is invalid in the
    swapped reading only."""

    def __init__(self):
        self.seen: list[Pair] = []

    def judge(self, pairs, both_orders=False):
        self.seen += pairs
        rows = []
        for p in pairs:
            word = p.response_a.split()[0]
            first, second = {"better": ("A", "A"), "worse": ("B", "B"), "biased": ("A", "B"),
                             "broken": ("A", None)}[word]
            row = {"pair_id": p.pair_id, "choice": first, "scores": None, "rationale": ""}
            if both_orders:
                row.update(choice_swapped=second, scores_swapped=None, debiased_choice=first)
            rows.append(row)
        return rows


def chat(text: str, role: str = "assistant") -> list[dict]:
    return [{"role": role, "content": text}]


def test_reward_pays_only_order_robust_verdicts_for_string_and_chat_completions():
    judge = FakeJudge()
    reward = PersonalReward(None, exemplars=EXEMPLARS, judge=judge)
    words = ["better", "worse", "biased", "broken"]
    prompts = ["write about your morning"] * 4
    refs = ["the reference text"] * 4
    expected = [WIN, LOSS, UNSURE, UNSURE]
    assert reward(prompts, [f"{w} text" for w in words], reference=refs) == expected
    assert reward(prompts, [chat(f"{w} text") for w in words], reference=refs) == expected
    assert reward.__name__ == "personal_reward"
    pair = judge.seen[0]
    assert (pair.response_a, pair.response_b, pair.exemplars) == ("better text", "the reference text", EXEMPLARS)


def test_one_order_pays_the_single_reading():
    reward = PersonalReward(None, exemplars=EXEMPLARS, both_orders=False, judge=FakeJudge())
    out = reward(["p"] * 4, ["better x", "worse x", "biased x", "broken x"], reference=["r"] * 4)
    assert out == [WIN, LOSS, WIN, WIN]  # one order cannot see the bias: why both orders is the default


def test_exemplars_and_prompt_come_from_the_dataset_row():
    judge = FakeJudge()
    reward = PersonalReward(None, exemplars=EXEMPLARS, judge=judge)
    logged = {}
    prompts = [[{"role": "system", "content": "be the author"}, *chat("first opening", "user")],
               [*chat("old", "user"), *chat("ok", "assistant"), *chat("second opening", "user")]]
    out = reward(prompts, [chat("better a"), chat("worse b")], reference=["r1", "r2"],
                 exemplars=[["row one exemplar"], None], completion_ids=[[1], [2]], trainer_state=None,
                 log_metric=lambda k, v: logged.__setitem__(k, v), log_extra=lambda *a: None)
    assert out == [WIN, LOSS]
    assert [p.prompt for p in judge.seen] == ["first opening", "second opening"]
    assert judge.seen[0].exemplars == ["row one exemplar"] and judge.seen[1].exemplars == EXEMPLARS
    assert logged == {"personal_reward/judge_valid_rate": 1.0, "personal_reward/win_rate": 0.5}


def test_missing_reference_or_exemplars_is_a_clear_error():
    with pytest.raises(ValueError, match="reference"):
        PersonalReward(None, exemplars=EXEMPLARS, judge=FakeJudge())(["p"], ["better"])
    with pytest.raises(ValueError, match="exemplars"):
        PersonalReward(None, judge=FakeJudge())(["p"], ["better"], reference=["r"])
    with pytest.raises(ValueError, match="judge"):
        PersonalReward(None)


def test_prompt_text_reads_strings_messages_and_content_parts():
    assert prompt_text("plain") == "plain"
    assert prompt_text([{"role": "user", "content": [{"type": "text", "text": "hi"}, {"type": "image"}]}]) == "hi"
    assert prompt_text([{"role": "system", "content": "s"}]) == ""


@pytest.fixture(scope="module")
def example():
    """examples/personalize_policy.py, loaded as a module (examples/ is not a package)."""
    spec = importlib.util.spec_from_file_location("personalize_policy", REPO / "examples" / "personalize_policy.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def tiny(tmp_path_factory, example):
    """An untrained tiny model: the judge (its output is never a valid verdict) and the policy."""
    return build_tiny([e.text for e in make_corpus()] + example.BUILTIN_TEXTS,
                      tmp_path_factory.mktemp("policy") / "tiny", TINY)


def test_untrained_checkpoint_judge_gives_zero_reward(tiny):
    reward = PersonalReward(tiny, exemplars=EXEMPLARS, max_new_tokens=8,
                            render=RenderLimits(max_exemplars=1, max_exemplar_words=10, max_response_words=20))
    assert reward(["p", "q"], [chat("some words"), chat("other words")], reference=["r", "s"]) == [UNSURE, UNSURE]


def test_example_script_runs_two_grpo_steps(tmp_path, example, tiny):
    out = tmp_path / "policy"
    log = example.main(["--judge", str(tiny), "--policy", str(tiny), "--out", str(out), "--steps", "2",
                        "--num-generations", "2", "--batch-size", "2", "--max-completion-length", "16",
                        "--judge-max-new-tokens", "16", "--learning-rate", "1e-4"])
    assert (out / "model.safetensors").is_file() and (out / "tokenizer.json").is_file()
    assert not (out / "training_args.bin").exists() and not (out / "_work").exists()
    saved = json.loads((out / "training_log.json").read_text())
    assert saved == log
    steps = [h for h in log if "reward" in h]
    assert [h["step"] for h in steps] == [1, 2]
    assert all(h["reward"] == 0.0 and "personal_reward/judge_valid_rate" in h for h in steps)  # untrained judge
    assert log[-1]["author"] == "builtin" and log[-1]["tasks"] == len(example.BUILTIN_TEXTS)
