"""Training in its own process under `accelerate launch`, its configs, LoRA and packing.

Each launch pays for a fresh interpreter importing torch, transformers and TRL (~10-20 s on
2 cores), so only three tests start one; LoRA and packing train in-process through the same
training functions the child calls."""

from __future__ import annotations

import dataclasses
import json
import os
import sys

import pytest

from persrm_core.judging.judge_format import RenderLimits
from persrm_core.llm.model import TinyModelConfig
from persrm_core.training.launch import REPO_ROOT, default_accelerate_config, launch_command
from persrm_core.training.settings import GRPOSettings, TrainConfig
from persrm_core.training.train_entry import FAULT_ENV, curve_summary
from persrm_core.training.trainers import sft_trainer, train_sft
from tests.synthetic_corpus import tiny_training_setup

TINY = TinyModelConfig(vocab_size=400, hidden_size=32, num_layers=1, num_heads=2, num_kv_heads=1,
                       intermediate_size=64, max_positions=1024)
LIMITS = RenderLimits(max_exemplars=2, max_exemplar_words=10, max_response_words=20)
ACCELERATE = REPO_ROOT / "configs" / "accelerate"
DEEPSPEED = REPO_ROOT / "configs" / "deepspeed"


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    return tiny_training_setup(tmp_path_factory.mktemp("launch"), 16, TINY)


def _cfg(**kw) -> TrainConfig:
    return TrainConfig(**{"max_steps": 4, "batch_size": 2, "save_steps": 2, "logging_steps": 1,
                          "rejection_sampling": False, **kw})


def _streamed_steps(out: str) -> list[int]:
    return [json.loads(line.split("persrm-log ", 1)[1])["step"] for line in out.splitlines()
            if "persrm-log " in line and '"loss"' in line]


# --- through `accelerate launch` ---------------------------------------------------------------

@pytest.mark.slow  # two `accelerate launch` start-ups and a kill: about 35 s
def test_killed_child_resumes_when_launched_again_and_publishes_a_checkpoint(setup, monkeypatch, capsys):
    from transformers import AutoModelForCausalLM

    from persrm_core.llm.model import load_tokenizer

    root, pairs = setup
    cfg, work, out = _cfg(max_steps=6), root / "kill-work", root / "kill-out"
    monkeypatch.setenv(FAULT_ENV, "5")  # the child dies (exit 137, no cleanup) when step 5 ends
    with pytest.raises(RuntimeError, match="exited with code 137") as err:
        train_sft(root / "base", pairs, root / "kill-first", cfg, LIMITS, work_dir=work)
    assert "persrm-log" in str(err.value)  # the tail of the child's output is in the message
    assert (work / "checkpoint-4").is_dir()  # saved at step 4, killed before step 6's save
    assert _streamed_steps(capsys.readouterr().out) == [1, 2, 3, 4]  # step 5 died before its log

    monkeypatch.delenv(FAULT_ENV)
    log = train_sft(root / "base", pairs, out, cfg, LIMITS, work_dir=work)
    assert _streamed_steps(capsys.readouterr().out) == [5, 6]  # only the steps after the checkpoint
    assert log[-1]["resumed_from"] == "checkpoint-4"
    assert [h["step"] for h in log if "loss" in h] == [1, 2, 3, 4, 5, 6]  # the curve is whole
    assert json.loads((out / "training_log.json").read_text()) == log
    assert not work.exists()
    model = AutoModelForCausalLM.from_pretrained(str(out))
    assert model.config.model_type == "qwen2"
    assert load_tokenizer(out).chat_template


def test_a_failing_child_raises_with_its_error(setup):
    root, pairs = setup
    missing = root / "no-such-model"
    with pytest.raises(RuntimeError) as err:
        train_sft(missing, pairs, root / "fail-out", _cfg(), LIMITS, work_dir=root / "fail-work")
    msg = str(err.value)
    assert "exited with code" in msg
    assert "FileNotFoundError" in msg and str(missing) in msg  # the child's own traceback line


@pytest.mark.distributed  # `make test-distributed`: DeepSpeed's first CPU run compiles its communication op
def test_zero2_on_cpu_through_accelerate_launch(setup):
    root, pairs = setup
    out = root / "zero2-out"
    log = train_sft(root / "base", pairs, out, _cfg(deepspeed="configs/deepspeed/zero2.json"), LIMITS,
                    work_dir=root / "zero2-work")
    assert [h["step"] for h in log if "loss" in h] == [1, 2, 3, 4]
    assert (out / "model.safetensors").is_file()


def test_callbacks_cannot_cross_the_process_boundary(setup):
    root, pairs = setup
    with pytest.raises(ValueError, match="inprocess"):
        train_sft(root / "base", pairs, root / "cb", _cfg(), LIMITS, callbacks=[object()])


# --- LoRA and packing (in-process: the same functions the child runs) ---------------------------

def test_lora_publishes_a_merged_plain_model_that_changed(setup):
    import torch
    from safetensors import safe_open
    from transformers import AutoModelForCausalLM

    root, pairs = setup
    out = root / "lora-out"
    cfg = _cfg(max_steps=3, save_steps=100, learning_rate=1e-2, lora_r=4, launcher="inprocess")
    log = train_sft(root / "base", pairs, out, cfg, LIMITS, work_dir=root / "lora-work")
    assert [h["step"] for h in log if "loss" in h] == [1, 2, 3]
    names = {p.name for p in out.iterdir()}
    assert "model.safetensors" in names and not {n for n in names if "adapter" in n}, names
    with safe_open(str(out / "model.safetensors"), "pt") as st:
        keys = list(st.keys())
    assert not [k for k in keys if "lora" in k or "base_layer" in k], keys
    base = AutoModelForCausalLM.from_pretrained(str(root / "base"))
    tuned = AutoModelForCausalLM.from_pretrained(str(out))  # a plain checkpoint, no peft involved
    b, t = dict(base.named_parameters()), dict(tuned.named_parameters())
    assert b.keys() == t.keys()
    q = "model.layers.0.self_attn.q_proj.weight"
    assert not torch.equal(b[q], t[q])  # the merged LoRA delta
    assert torch.equal(b["model.embed_tokens.weight"], t["model.embed_tokens.weight"])  # not a target


def test_report_to_tensorboard_writes_the_curves_offline(setup, monkeypatch, capsys):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    root, pairs = setup
    monkeypatch.setenv("TENSORBOARD_LOGGING_DIR", "restored-after-the-test")
    cfg = _cfg(max_steps=2, save_steps=100, launcher="inprocess", report_to="tensorboard",
               logging_dir=str(root / "tb"))
    train_sft(root / "base", pairs, root / "tb-out", cfg, LIMITS, work_dir=root / "tb-work")
    [run] = (root / "tb").iterdir()
    assert run.name.startswith("sft-") and f"TensorBoard logs in {run}" in capsys.readouterr().out
    events = EventAccumulator(str(run))
    events.Reload()
    loss = events.Scalars("train/loss")
    assert [e.step for e in loss] == [1, 2] and all(e.value > 0 for e in loss)


def test_a_report_to_whose_package_is_missing_is_one_clear_error(monkeypatch):
    import importlib.util

    from persrm_core.training.settings import check_settings

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda n, *a: None if n in ("tensorboard", "tensorboardX") else real(n, *a))
    with pytest.raises(ValueError, match=r"report_to: tensorboard needs the tensorboard package.*pip install"):
        check_settings(_cfg(report_to=["tensorboard"]))
    with pytest.raises(ValueError, match="'tensorbord' is not one of"):
        check_settings(GRPOSettings(report_to="tensorbord"))
    check_settings(_cfg(report_to="none"))


def test_packing_keeps_the_loss_on_completions_and_trains(setup):
    import math

    root, pairs = setup
    # Each row is ~600 tokens: 4096-token bins hold several (positions restart in every sequence).
    cfg = _cfg(max_steps=2, packing=True, max_length=4096, launcher="inprocess")
    packed, _, _ = sft_trainer(root / "base", pairs, cfg, LIMITS, root / "pack-work")
    plain, _, _ = sft_trainer(root / "base", pairs, dataclasses.replace(cfg, packing=False), LIMITS,
                              root / "plain-work")
    pds, uds = packed.train_dataset, plain.train_dataset
    assert "seq_lengths" in pds.column_names and len(pds) < len(uds)  # rows really were packed

    def trained(ds):
        return sum(sum(label != -100 for label in row) for row in ds["labels"])

    total = sum(len(row) for row in pds["input_ids"])
    assert sum(len(row) for row in uds["input_ids"]) == total  # nothing cut by packing
    assert trained(pds) == trained(uds) < total / 2  # the same completion tokens, prompts masked
    packed.train()
    losses = [h["loss"] for h in packed.state.log_history if "loss" in h]
    assert len(losses) == 2 and all(math.isfinite(x) for x in losses)


# --- configs and the command ----------------------------------------------------------------------

@pytest.mark.parametrize("name", ["cpu", "single_gpu", "multi_gpu_zero2", "multi_gpu_zero3"])
def test_accelerate_configs_load_with_accelerates_own_loader(name):
    from accelerate.commands.config.config_args import load_config_from_file
    from accelerate.commands.launch import _validate_launch_command, launch_command_parser

    path = ACCELERATE / f"{name}.yaml"
    loaded = load_config_from_file(str(path))  # refuses unknown top-level keys
    parser = launch_command_parser()
    dests = {a.dest for a in parser._actions}
    assert set(loaded.deepspeed_config) <= dests  # nested keys become launch options
    args, _, _ = _validate_launch_command(parser.parse_args(["--config_file", str(path), "train.py"]))
    if name.startswith("multi_gpu"):
        assert args.use_deepspeed and args.num_processes == 8
        ds = REPO_ROOT / args.deepspeed_config_file
        assert ds.is_file() and ds.parent == DEEPSPEED
        assert loaded.mixed_precision is None  # the DeepSpeed JSON owns it; accelerate refuses both
    else:
        assert not args.use_deepspeed and args.num_processes == 1


@pytest.mark.parametrize("stage", ["zero2", "zero3"])
def test_deepspeed_configs_have_only_values_the_trainer_fills(stage):
    from transformers import Qwen2Config, Qwen2ForCausalLM, TrainingArguments
    from transformers.integrations.deepspeed import HfTrainerDeepSpeedConfig

    raw = json.loads((DEEPSPEED / f"{stage}.json").read_text())
    assert raw["zero_optimization"]["stage"] == int(stage[-1])
    assert raw["bf16"]["enabled"] == "auto" and raw["optimizer"]["params"]["lr"] == "auto"
    if stage == "zero3":
        assert raw["zero_optimization"]["stage3_gather_16bit_weights_on_model_save"] is True
    ds = HfTrainerDeepSpeedConfig(str(DEEPSPEED / f"{stage}.json"))
    args = TrainingArguments(output_dir="unused", use_cpu=True, report_to="none", per_device_train_batch_size=2)
    model = Qwen2ForCausalLM(Qwen2Config(vocab_size=64, hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                                         num_attention_heads=2, num_key_value_heads=1))
    ds.trainer_config_process(args)
    ds.trainer_config_finalize(args, model, num_training_steps=10)
    assert "auto" not in json.dumps(ds.config)  # every "auto" is one the HF integration resolves


def test_launch_command_default_config(tmp_path):
    from accelerate.commands.config.config_args import load_config_from_file

    job = tmp_path / "job.json"
    argv, env = launch_command("sft", job, TrainConfig())
    config = tmp_path / "accelerate_config.yaml"
    assert argv == [sys.executable, "-m", "accelerate.commands.launch", "--config_file", str(config),
                    "--num_processes", "1", "-m", "persrm_core.training.train_entry", str(job)]
    loaded = load_config_from_file(str(config))
    assert loaded.distributed_type.value == "NO" and loaded.num_processes == 1 and loaded.mixed_precision == "no"
    assert env["PERSRM_STAGE"] == "sft" and str(REPO_ROOT) in env["PYTHONPATH"].split(os.pathsep)
    assert env["PYTHONUNBUFFERED"] == "1"
    assert default_accelerate_config(TrainConfig(bf16=True))["mixed_precision"] == "bf16"


def test_launch_command_with_zero3_on_eight_processes(tmp_path):
    cfg = GRPOSettings(accelerate_config="configs/accelerate/multi_gpu_zero3.yaml", num_processes=8)
    argv, _ = launch_command("rft", tmp_path / "job.json", cfg)
    opts = dict(zip(argv[3:-3:2], argv[4:-3:2]))
    assert opts["--config_file"] == str(ACCELERATE / "multi_gpu_zero3.yaml")
    assert opts["--num_processes"] == "8"
    assert opts["--deepspeed_config_file"] == str(DEEPSPEED / "zero3.json")  # absolute: cwd-proof
    assert int(opts["--main_process_port"]) > 0  # a free port, not the shared default 29500
    assert argv[-3:] == ["-m", "persrm_core.training.train_entry", str(tmp_path / "job.json")]
    assert not (tmp_path / "accelerate_config.yaml").exists()  # the given yaml is used as is


def test_deepspeed_alone_generates_a_deepspeed_config_and_mismatches_are_refused(tmp_path):
    from accelerate.commands.config.config_args import load_config_from_file

    argv, _ = launch_command("sft", tmp_path / "job.json", TrainConfig(deepspeed="configs/deepspeed/zero2.json"))
    loaded = load_config_from_file(str(tmp_path / "accelerate_config.yaml"))
    assert loaded.distributed_type.value == "DEEPSPEED" and loaded.mixed_precision is None
    assert loaded.deepspeed_config["deepspeed_config_file"] == str(DEEPSPEED / "zero2.json")
    assert "--deepspeed_config_file" in argv
    clash = TrainConfig(deepspeed="configs/deepspeed/zero2.json",
                        accelerate_config="configs/accelerate/multi_gpu_zero3.yaml")
    with pytest.raises(ValueError, match="differs"):
        launch_command("sft", tmp_path / "job.json", clash)
    plain = TrainConfig(deepspeed="configs/deepspeed/zero2.json", accelerate_config="configs/accelerate/cpu.yaml")
    with pytest.raises(ValueError, match="DEEPSPEED"):
        launch_command("sft", tmp_path / "job.json", plain)
    with pytest.raises(ValueError, match="launcher"):
        train_sft("x", [], tmp_path, TrainConfig(launcher="torchrun"), LIMITS)


def test_curve_summary_for_pipes_metadata():
    log = [{"loss": 2.0, "mean_token_accuracy": 0.1, "step": 1, "stage": "sft"},
           {"loss": 1.5, "mean_token_accuracy": 0.3, "step": 2, "stage": "sft"},
           {"train_runtime": 1.0, "step": 2, "stage": "sft"},
           {"stage": "sft", "traces": 8, "trace_keep_rate": 1.0, "resumed_from": None}]
    assert curve_summary("sft", log) == {"loss_first": 2.0, "loss_last": 1.5, "mean_token_accuracy_first": 0.1,
                                         "mean_token_accuracy_last": 0.3, "steps": 2, "traces": 8,
                                         "trace_keep_rate": 1.0}

