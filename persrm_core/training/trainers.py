"""SFT and RFT (GRPO) of the judge with TRL, plus the causal-LM warm-up of a tiny base.

Plain functions over pair frames and checkpoint paths: the Dagster assets and the CLI call
them; nothing here knows about orchestration. Each stage writes a Hugging Face checkpoint
(safetensors, tokenizer with chat template) and `training_log.json` with its curves.

Where training runs is `cfg.launcher`: "accelerate" (the default) trains in a process of its own
started with `accelerate launch` (`persrm_core.training.launch`, child `persrm_core.training.train_entry`), so
DeepSpeed, several processes and a clean GPU state come for free; "inprocess" trains in the
calling process (`run_sft` / `run_grpo`, which the child calls too). Either way the published
folder is a plain full model: with LoRA (`lora_r > 0`) the adapter is merged into the base
(`merge_and_unload`) and saved as safetensors, so every later stage loads it like any checkpoint.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import random
import shutil
from pathlib import Path

from tqdm.auto import tqdm

from persrm_core.judging.judge_format import RenderLimits, render_messages
from persrm_core.judging.rationale import write_trace
from persrm_core.training.rewards import verdict_correct, verdict_invalid, verdict_reward
from persrm_core.training.settings import (
    LAUNCH_ONLY_FIELDS,
    GRPOSettings,
    LaunchSettings,
    TrainConfig,
    _has_cuda,
    _report_setup,
    check_settings,
)

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def sft_rows(pairs: list[dict], limits: RenderLimits, count_tokens=None, rejection_sampling: bool = False,
             both_orders: bool = False) -> list[dict]:
    """Conversational prompt-completion rows: the judge input and the offline-written trace, from
    each pair's attached evidence (`evidence.attach_evidence`). With `rejection_sampling`, pairs
    whose weighed evidence contradicts the label are skipped (`rationale.consistent_with`); with
    `both_orders`, each offline trace is also written for the pair with A and B swapped (a
    teacher's trace is kept in the order it was written)."""
    from persrm_core.evidence.readings import evidence_of
    from persrm_core.judging.rationale import consistent_with

    if both_orders:
        pairs = [q for p in pairs for q in ((p,) if p.get("trace") else (p, swapped_pair(p)))]
    rows = []
    for p in tqdm(pairs, desc="writing traces", unit="pair", disable=len(pairs) < 200):
        ev = evidence_of(p)
        teacher = p.get("trace")  # a teacher's trace (persrm_core.training.teacher), already rejection-sampled
        if rejection_sampling and teacher is None and not consistent_with(ev, p["label"]):
            continue
        msgs = render_messages(p["exemplars"], p["prompt"], p["response_a"], p["response_b"], limits,
                               count_tokens, ev if limits.evidence else None)
        trace = teacher or write_trace(ev, p["label"], limits.rationale)
        rows.append({"prompt": msgs, "completion": [{"role": "assistant", "content": trace}]})
    return rows


def swapped_pair(p: dict) -> dict:
    """A pair dict with A and B swapped: responses, label and attached evidence."""
    from persrm_core.evidence.readings import evidence_from_dict, evidence_to_dict

    out = {**p, "response_a": p["response_b"], "response_b": p["response_a"],
           "label": {"A": "B", "B": "A"}.get(p.get("label"), p.get("label"))}
    if p.get("evidence"):
        out["evidence"] = evidence_to_dict(evidence_from_dict(p["evidence"]).swapped())
    return out


def prepare_work_dir(work_dir: Path, fingerprint: str) -> str | None:
    """The checkpoint to resume from: the newest `checkpoint-N` in `work_dir` if that directory
    was written by a run with the same fingerprint (model, data, settings); otherwise the
    directory is emptied and stamped for this run, and training starts from scratch."""
    stamp = work_dir / "persrm_run.json"
    if stamp.exists() and json.loads(stamp.read_text()).get("fingerprint") == fingerprint:
        return latest_checkpoint(work_dir, fingerprint)
    shutil.rmtree(work_dir, ignore_errors=True)
    work_dir.mkdir(parents=True)
    stamp.write_text(json.dumps({"fingerprint": fingerprint}))
    return None


def _work_and_resume(stage: str, model_dir, cfg, limits: RenderLimits, train_pairs: list[dict], out_dir,
                     work_dir) -> tuple[Path, str | None]:
    """The checkpoint directory of this training run and the checkpoint to resume from, if any."""
    work = Path(work_dir or Path(out_dir) / "_work")
    return work, prepare_work_dir(work, run_fingerprint(stage, model_dir, cfg, limits, train_pairs))


def run_fingerprint(stage: str, model_dir, cfg, limits: RenderLimits, train_pairs: list[dict]) -> str:
    """What a work dir's checkpoints were trained from: model, data and the settings that change
    the computation (not `LAUNCH_ONLY_FIELDS`)."""
    settings = {k: v for k, v in dataclasses.asdict(cfg).items() if k not in LAUNCH_ONLY_FIELDS}
    return fingerprint(stage, str(model_dir), settings, limits,
                       [(p["pair_id"], p["label"], p.get("trace"), p.get("evidence")) for p in train_pairs])


def latest_checkpoint(work_dir: Path, fingerprint_: str) -> str | None:
    """The newest `checkpoint-N` of `work_dir` if it was stamped with `fingerprint_`; read-only
    (the training process uses it to resume; `prepare_work_dir` stamped the directory)."""
    stamp = Path(work_dir) / "persrm_run.json"
    if not stamp.exists() or json.loads(stamp.read_text()).get("fingerprint") != fingerprint_:
        return None
    ckpts = sorted(Path(work_dir).glob("checkpoint-*"), key=lambda p: int(p.name.rsplit("-", 1)[1]))
    return str(ckpts[-1]) if ckpts else None


def fingerprint(*parts) -> str:
    blob = json.dumps([dataclasses.asdict(p) if dataclasses.is_dataclass(p) else p for p in parts],
                      sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def _training_args(cfg: TrainConfig | GRPOSettings, work: Path, stage: str) -> dict:
    """The TrainingArguments SFT and GRPO set alike: the step budget, checkpoint cadence (one kept),
    logging, seed, device, precision and DeepSpeed."""
    return dict(output_dir=str(work), learning_rate=cfg.learning_rate, max_steps=cfg.max_steps,
                per_device_train_batch_size=cfg.batch_size, logging_steps=cfg.logging_steps,
                save_strategy="steps", save_steps=cfg.save_steps, save_total_limit=1,
                report_to=_report_setup(cfg, stage), seed=cfg.seed, use_cpu=not _has_cuda(), bf16=cfg.bf16,
                deepspeed=cfg.deepspeed)


def _peft_config(cfg: LaunchSettings):
    if cfg.lora_r <= 0:
        return None
    from peft import LoraConfig

    return LoraConfig(r=cfg.lora_r, lora_alpha=cfg.lora_alpha, lora_dropout=cfg.lora_dropout,
                      target_modules=cfg.lora_target_modules, task_type="CAUSAL_LM")


def _join_deepspeed_comm(args) -> None:
    """Under a ZeRO-3 config, `from_pretrained` opens `deepspeed.zero.Init`, whose batch check reads
    the world size from DeepSpeed's own comm layer *before* that layer is set up; unset, it falls
    back to a world of 1 and fails ("train_batch_size 4 != 2 * 1 * 1") in every launched process.
    So set the process group up first (`args.device` makes accelerate do it) and hand it to
    DeepSpeed's comm. A no-op without DeepSpeed or with one process."""
    if not args.deepspeed or int(os.environ.get("WORLD_SIZE", "1")) < 2:
        return
    import deepspeed

    args.device  # noqa: B018 - the property sets up torch.distributed through accelerate
    deepspeed.init_distributed()

def _dtype(cfg: LaunchSettings) -> str:
    return "bfloat16" if cfg.bf16 else "float32"


def merge_lora(model_dir: str | Path, adapter_dir: str | Path, out_dir: str | Path, dtype: str = "float32") -> None:
    """Load the base at `model_dir`, apply the LoRA adapter, merge it (`merge_and_unload`) and save
    a plain model as safetensors in `out_dir`: no adapter files, loadable by
    `AutoModelForCausalLM.from_pretrained` like any other checkpoint. Done from the saved adapter
    (not the trainer's wrapped model) so it works the same after DeepSpeed ZeRO-3 or several
    processes."""
    from peft import PeftModel
    from transformers.integrations import deepspeed as hf_deepspeed

    from persrm_core.llm.model import load_model

    # Under ZeRO-3 the trainer's DeepSpeed config would make this one process's `from_pretrained`
    # shard the base (a collective the other ranks never join): load it whole instead.
    zero3 = hf_deepspeed._hf_deepspeed_config_weak_ref
    hf_deepspeed.unset_hf_deepspeed_config()
    try:
        merged = PeftModel.from_pretrained(load_model(model_dir, dtype), str(adapter_dir)).merge_and_unload()
    finally:
        hf_deepspeed._hf_deepspeed_config_weak_ref = zero3
    merged.save_pretrained(Path(out_dir), safe_serialization=True)


def _train_and_publish(trainer, tokenizer, resume: str | None, work: Path, out: Path, stage: str,
                       model_dir, cfg: LaunchSettings, **summary) -> list[dict]:
    """Train (resuming from `resume`), save model, tokenizer and curves to `out`, drop the
    checkpoints, and return the log. With LoRA the adapter is merged into the base first, so `out`
    is always a plain full checkpoint. Under several processes every rank takes part in saving
    (ZeRO-3 gathers the weights) and the main one writes the files."""
    if resume and trainer.is_world_process_zero():
        print(f"{stage}: resuming from checkpoint {Path(resume).name.removeprefix('checkpoint-')} "
              f"({resume})", flush=True)
    trainer.train(resume_from_checkpoint=resume)
    main = trainer.is_world_process_zero()
    if cfg.lora_r > 0:
        adapter = work / "adapter"
        trainer.save_model(str(adapter))
        trainer.accelerator.wait_for_everyone()
        if main:
            merge_lora(model_dir, adapter, out, _dtype(cfg))
    else:
        trainer.save_model(str(out))
    summary["resumed_from"] = Path(resume).name if resume else None
    if main:
        tokenizer.save_pretrained(out)
        log = _save_log(trainer, out, stage, **summary)
    else:
        log = _log_of(trainer, stage, **summary)
    trainer.accelerator.wait_for_everyone()
    if main:
        shutil.rmtree(work, ignore_errors=True)
    return log


def _log_of(trainer, stage: str, **summary) -> list[dict]:
    log = [dict(h, stage=stage) for h in trainer.state.log_history]
    if summary:
        log.append({"stage": stage, **summary})
    return log


def _save_log(trainer, out_dir: Path, stage: str, **summary) -> list[dict]:
    log = _log_of(trainer, stage, **summary)
    (out_dir / "training_log.json").write_text(json.dumps(log, indent=1))
    return log


def _in_process(cfg: LaunchSettings, callbacks: list | None) -> bool:
    check_settings(cfg)
    if cfg.launcher == "inprocess":
        return True
    if callbacks:
        raise ValueError("trainer callbacks live in this process and cannot follow training into the one "
                         "`accelerate launch` starts; use launcher='inprocess' to pass callbacks")
    return False


def _launch_or_run(stage: str, run, model_dir, train_pairs: list[dict], out_dir, cfg, limits: RenderLimits,
                   work_dir, callbacks: list | None, runner=None) -> list[dict]:
    """Where `cfg.launcher` says: a job for the `accelerate launch` child, or `run` in this
    process in the fingerprinted work dir, resuming from its newest checkpoint."""
    if not _in_process(cfg, callbacks):
        from persrm_core.training.launch import run_stage

        return run_stage(stage, model_dir, train_pairs, out_dir, cfg, limits, work_dir, runner)
    work, resume = _work_and_resume(stage, model_dir, cfg, limits, train_pairs, out_dir, work_dir)
    return run(model_dir, train_pairs, out_dir, cfg, limits, work, resume, callbacks)


def train_sft(model_dir: str | Path, train_pairs: list[dict], out_dir: str | Path, cfg: TrainConfig,
              limits: RenderLimits, work_dir: str | Path | None = None, callbacks: list | None = None,
              runner=None) -> list[dict]:
    """TRL SFTTrainer on (judge input -> rationale + verdict), loss on the completion only.
    Checkpoints go to `work_dir` every `save_steps`; a call after a crash (or a killed training
    process) resumes there. Runs where `cfg.launcher` says (`runner`: how a launched job runs,
    e.g. `launch.PipesRunner` from a Dagster asset; a plain subprocess when None); returns the
    training log."""
    return _launch_or_run("sft", run_sft, model_dir, train_pairs, out_dir, cfg, limits, work_dir, callbacks, runner)


def run_sft(model_dir: str | Path, train_pairs: list[dict], out_dir: str | Path, cfg: TrainConfig,
            limits: RenderLimits, work: Path, resume: str | None, callbacks: list | None = None) -> list[dict]:
    """SFT in this process, into the prepared `work` dir, resuming from `resume` (a checkpoint
    path or None). `train_sft` and the `accelerate launch` child (`train_entry`) call this."""
    trainer, tokenizer, summary = sft_trainer(model_dir, train_pairs, cfg, limits, work, callbacks)
    return _train_and_publish(trainer, tokenizer, resume, Path(work), Path(out_dir), "sft", model_dir, cfg,
                              **summary)


def sft_trainer(model_dir: str | Path, train_pairs: list[dict], cfg: TrainConfig, limits: RenderLimits,
                work: Path, callbacks: list | None = None):
    """The SFTTrainer of a run (not yet trained), its tokenizer, and the trace summary."""
    from datasets import Dataset
    from trl import SFTConfig, SFTTrainer

    from persrm_core.llm.model import load_model, load_tokenizer, token_counter

    # The rows first: their evidence loads the style encoder, which must happen before a ZeRO-3
    # config exists (it would shard the encoder too).
    tokenizer = load_tokenizer(model_dir)
    rows = sft_rows(train_pairs, limits, token_counter(tokenizer), cfg.rejection_sampling, cfg.both_orders)
    candidates = sum(1 if p.get("trace") or not cfg.both_orders else 2 for p in train_pairs)
    keep_rate = len(rows) / max(candidates, 1)
    random.Random(cfg.seed).shuffle(rows)
    if 0 < cfg.max_traces < len(rows):
        rows = rows[: cfg.max_traces]
    # Then the config, before the model: with a ZeRO-3 DeepSpeed JSON it makes `from_pretrained`
    # load the weights already sharded (zero.Init) instead of whole in every process.
    args = SFTConfig(
        **_training_args(cfg, work, "sft"), num_train_epochs=cfg.epochs,
        gradient_accumulation_steps=cfg.grad_accum, max_length=cfg.max_length,
        # Prompt-completion rows: loss on the completion only. With packing TRL 1.16 builds the
        # -100 labels from the completion mask before it packs (best-fit decreasing, padding-free,
        # sequences kept apart by their position ids), so prompts stay out of the loss.
        completion_only_loss=True, packing=cfg.packing,
        warmup_steps=cfg.warmup_ratio, lr_scheduler_type="cosine", weight_decay=cfg.weight_decay,
    )
    _join_deepspeed_comm(args)
    model = load_model(model_dir, _dtype(cfg))
    trainer = SFTTrainer(model=model, args=args, train_dataset=Dataset.from_list(rows),
                         processing_class=tokenizer, callbacks=callbacks, peft_config=_peft_config(cfg))
    return trainer, tokenizer, {"traces": len(rows), "trace_keep_rate": round(keep_rate, 4)}


def train_grpo(model_dir: str | Path, train_pairs: list[dict], out_dir: str | Path, cfg: GRPOSettings,
               limits: RenderLimits, work_dir: str | Path | None = None, callbacks: list | None = None,
               runner=None) -> list[dict]:
    """TRL GRPOTrainer from the SFT checkpoint with the verifiable verdict reward; checkpoints,
    resumption, launcher and runner as in `train_sft`."""
    return _launch_or_run("rft", run_grpo, model_dir, train_pairs, out_dir, cfg, limits, work_dir, callbacks, runner)


def run_grpo(model_dir: str | Path, train_pairs: list[dict], out_dir: str | Path, cfg: GRPOSettings,
             limits: RenderLimits, work: Path, resume: str | None, callbacks: list | None = None) -> list[dict]:
    """GRPO in this process (see `run_sft`)."""
    from datasets import Dataset
    from trl import GRPOConfig, GRPOTrainer

    from persrm_core.evidence.readings import evidence_of
    from persrm_core.llm.model import load_model, load_tokenizer, token_counter

    tokenizer = load_tokenizer(model_dir)  # rows, then config, then model: as in `sft_trainer`
    count = token_counter(tokenizer)
    rows = [{"prompt": render_messages(p["exemplars"], p["prompt"], p["response_a"], p["response_b"],
                                       limits, count, evidence_of(p) if limits.evidence else None),
             "label": p["label"]} for p in train_pairs]
    random.Random(cfg.seed).shuffle(rows)
    args = GRPOConfig(
        **_training_args(cfg, work, "rft"), num_generations=cfg.num_generations,
        max_completion_length=cfg.max_completion_length, temperature=cfg.temperature, beta=cfg.beta,
        use_vllm=cfg.use_vllm, vllm_mode=cfg.vllm_mode, log_completions=False,
        # accuracy and invalid rate ride along at weight 0: logged as curves, no part of the reward
        reward_weights=[1.0, 0.0, 0.0],
    )
    _join_deepspeed_comm(args)
    model = load_model(model_dir, _dtype(cfg))
    trainer = GRPOTrainer(model=model, reward_funcs=[verdict_reward, verdict_correct, verdict_invalid], args=args,
                          train_dataset=Dataset.from_list(rows), processing_class=tokenizer, callbacks=callbacks,
                          peft_config=_peft_config(cfg))
    return _train_and_publish(trainer, tokenizer, resume, Path(work), Path(out_dir), "rft", model_dir, cfg)
