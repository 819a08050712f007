"""Training checkpoints periodically and a run after a crash resumes from the last checkpoint.

In-process (`launcher="inprocess"`): the crash and the step counter are trainer callbacks, which
live in this process; across the `accelerate launch` boundary see tests/test_launch.py."""

from __future__ import annotations

import json

import pytest
from transformers import TrainerCallback

from persrm_core.judging.judge_format import RenderLimits
from persrm_core.llm.model import TinyModelConfig
from persrm_core.training.settings import GRPOSettings, TrainConfig
from persrm_core.training.trainers import prepare_work_dir, train_grpo, train_sft
from tests.synthetic_corpus import tiny_training_setup

TINY = TinyModelConfig(vocab_size=400, hidden_size=32, num_layers=1, num_heads=2, num_kv_heads=1,
                       intermediate_size=64, max_positions=1024)
LIMITS = RenderLimits(max_exemplars=2, max_exemplar_words=10, max_response_words=20)


class Crash(RuntimeError):
    pass


class StepCounter(TrainerCallback):
    def __init__(self):
        self.steps: list[int] = []

    def on_step_end(self, args, state, control, **kwargs):
        self.steps.append(state.global_step)


class CrashAt(TrainerCallback):
    def __init__(self, step: int):
        self.step = step

    def on_step_end(self, args, state, control, **kwargs):
        if state.global_step == self.step:
            raise Crash(f"simulated kill at step {self.step}")


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    return tiny_training_setup(tmp_path_factory.mktemp("resume"), 24, TINY)


def test_sft_resumes_from_the_last_checkpoint_after_a_crash(setup, capsys):
    root, pairs = setup
    cfg = TrainConfig(max_steps=6, batch_size=2, save_steps=2, logging_steps=1, rejection_sampling=False,
                      launcher="inprocess")
    work = root / "sft-work"
    with pytest.raises(Crash):
        train_sft(root / "base", pairs, root / "sft-1", cfg, LIMITS, work_dir=work, callbacks=[CrashAt(5)])
    assert (work / "checkpoint-4").is_dir()  # saved at step 4; the crash came before step 6
    counter = StepCounter()
    log = train_sft(root / "base", pairs, root / "sft", cfg, LIMITS, work_dir=work, callbacks=[counter])
    assert log[-1]["resumed_from"] == "checkpoint-4"
    assert "sft: resuming from checkpoint 4" in capsys.readouterr().out
    assert counter.steps == [5, 6]  # only the steps after the checkpoint were run again
    assert [h["step"] for h in log if "loss" in h] == [1, 2, 3, 4, 5, 6]  # the curve is whole
    assert not work.exists()  # cleaned up once the checkpoint is published
    assert (root / "sft" / "model.safetensors").is_file()


def test_changed_settings_start_over_instead_of_resuming(setup):
    root, pairs = setup
    work = root / "changed-work"
    cfg = TrainConfig(max_steps=4, batch_size=2, save_steps=2, logging_steps=1, rejection_sampling=False,
                      launcher="inprocess")
    with pytest.raises(Crash):
        train_sft(root / "base", pairs, root / "x", cfg, LIMITS, work_dir=work, callbacks=[CrashAt(3)])
    other = TrainConfig(max_steps=4, batch_size=2, save_steps=2, logging_steps=1, learning_rate=5e-4,
                        rejection_sampling=False, launcher="inprocess")
    counter = StepCounter()
    log = train_sft(root / "base", pairs, root / "y", other, LIMITS, work_dir=work, callbacks=[counter])
    assert log[-1]["resumed_from"] is None
    assert counter.steps == [1, 2, 3, 4]


def test_prepare_work_dir_resumes_newest_checkpoint_only_for_the_same_fingerprint(tmp_path):
    work = tmp_path / "w"
    assert prepare_work_dir(work, "abc") is None
    for n in (2, 10, 4):
        (work / f"checkpoint-{n}").mkdir()
    assert prepare_work_dir(work, "abc").endswith("checkpoint-10")
    assert prepare_work_dir(work, "other") is None
    assert json.loads((work / "persrm_run.json").read_text()) == {"fingerprint": "other"}
    assert not list(work.glob("checkpoint-*"))


def test_grpo_resumes_after_a_crash(setup):
    root, pairs = setup
    sft_cfg = TrainConfig(max_steps=2, batch_size=2, save_steps=10, rejection_sampling=False,
                          launcher="inprocess")
    train_sft(root / "base", pairs, root / "sft-for-rft", sft_cfg, LIMITS, work_dir=root / "w0")
    cfg = GRPOSettings(max_steps=4, batch_size=2, num_generations=2, max_completion_length=12, save_steps=2,
                       logging_steps=1, launcher="inprocess")
    work = root / "rft-work"
    with pytest.raises(Crash):
        train_grpo(root / "sft-for-rft", pairs, root / "rft-1", cfg, LIMITS, work_dir=work, callbacks=[CrashAt(3)])
    counter = StepCounter()
    log = train_grpo(root / "sft-for-rft", pairs, root / "rft", cfg, LIMITS, work_dir=work, callbacks=[counter])
    assert log[-1]["resumed_from"] == "checkpoint-2"
    assert counter.steps == [3, 4]
