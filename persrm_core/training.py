"""SFT and RFT (GRPO) of the judge with TRL, plus the causal-LM warm-up of a tiny base.

Plain functions over pair frames and checkpoint paths: the Dagster assets and the CLI call
them; nothing here knows about orchestration. Each stage writes a Hugging Face checkpoint
(safetensors, tokenizer with chat template) and `training_log.json` with its curves.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import random
import shutil
from dataclasses import dataclass
from pathlib import Path

from tqdm.auto import tqdm

from persrm_core.judge_format import RenderLimits, render_messages
from persrm_core.rationale import write_trace
from persrm_core.rewards import verdict_reward

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


@dataclass
class TrainConfig:
    learning_rate: float = 1e-3
    epochs: float = 1.0
    max_steps: int = -1  # overrides epochs when > 0
    batch_size: int = 8
    grad_accum: int = 1
    max_length: int = 1024
    warmup_ratio: float = 0.05
    weight_decay: float = 0.0
    seed: int = 0
    bf16: bool = False
    logging_steps: int = 5
    deepspeed: str | None = None  # path to a DeepSpeed JSON config (launched under accelerate)
    rejection_sampling: bool = True  # SFT only on traces whose evidence agrees with the label
    save_steps: int = 50  # checkpoint every N steps; a re-run after a crash resumes from the last


@dataclass
class GRPOSettings:
    learning_rate: float = 5e-5
    max_steps: int = 30
    batch_size: int = 8  # completions per device step (a multiple of num_generations)
    num_generations: int = 4
    max_completion_length: int = 96
    temperature: float = 1.0
    beta: float = 0.0
    seed: int = 0
    bf16: bool = False
    use_vllm: bool = False
    logging_steps: int = 2
    deepspeed: str | None = None
    save_steps: int = 10


def _has_cuda() -> bool:
    import torch

    return torch.cuda.is_available()


def sft_rows(pairs: list[dict], limits: RenderLimits, count_tokens=None, rejection_sampling: bool = False) -> list[dict]:
    """Conversational prompt-completion rows: the judge input and the offline-written trace.
    With `rejection_sampling`, pairs whose measured evidence contradicts the label are skipped
    (`rationale.consistent_with`); RFT later trains on every pair."""
    from persrm_core.evidence import read_pair
    from persrm_core.rationale import consistent_with

    rows = []
    for p in tqdm(pairs, desc="writing traces", unit="pair", disable=len(pairs) < 200):
        exemplars = list(p["exemplars"])[: limits.max_exemplars]
        readings = read_pair(exemplars, p["response_a"], p["response_b"])
        if rejection_sampling and not consistent_with(readings, p["label"]):
            continue
        msgs = render_messages(p["exemplars"], p["prompt"], p["response_a"], p["response_b"], limits,
                               count_tokens, readings if limits.evidence else None)
        trace = write_trace(exemplars, p["response_a"], p["response_b"], p["label"], readings=readings)
        rows.append({"prompt": msgs, "completion": [{"role": "assistant", "content": trace}]})
    return rows


def token_counter(tokenizer):
    def count(messages: list[dict]) -> int:
        text = tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
        return len(tokenizer(text, add_special_tokens=False)["input_ids"])
    return count


def prepare_work_dir(work_dir: Path, fingerprint: str) -> str | None:
    """The checkpoint to resume from: the newest `checkpoint-N` in `work_dir` if that directory
    was written by a run with the same fingerprint (model, data, settings); otherwise the
    directory is emptied and stamped for this run, and training starts from scratch."""
    stamp = work_dir / "persrm_run.json"
    if stamp.exists() and json.loads(stamp.read_text()).get("fingerprint") == fingerprint:
        ckpts = sorted(work_dir.glob("checkpoint-*"), key=lambda p: int(p.name.rsplit("-", 1)[1]))
        return str(ckpts[-1]) if ckpts else None
    shutil.rmtree(work_dir, ignore_errors=True)
    work_dir.mkdir(parents=True)
    stamp.write_text(json.dumps({"fingerprint": fingerprint}))
    return None


def _work_and_resume(stage: str, model_dir, cfg, limits: RenderLimits, train_pairs: list[dict], out_dir,
                     work_dir) -> tuple[Path, str | None]:
    """The checkpoint directory of this training run and the checkpoint to resume from, if any."""
    work = Path(work_dir or Path(out_dir) / "_work")
    run = fingerprint(stage, str(model_dir), cfg, limits, [(p["pair_id"], p["label"]) for p in train_pairs])
    return work, prepare_work_dir(work, run)


def fingerprint(*parts) -> str:
    blob = json.dumps([dataclasses.asdict(p) if dataclasses.is_dataclass(p) else p for p in parts],
                      sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def _train_and_publish(trainer, tokenizer, resume: str | None, work: Path, out: Path, stage: str,
                       **summary) -> list[dict]:
    """Train (resuming from `resume`), save model, tokenizer and curves to `out`, drop the
    checkpoints, and return the log."""
    trainer.train(resume_from_checkpoint=resume)
    trainer.save_model(str(out))
    tokenizer.save_pretrained(out)
    log = _save_log(trainer, out, stage, **summary, resumed_from=Path(resume).name if resume else None)
    shutil.rmtree(work, ignore_errors=True)
    return log


def _save_log(trainer, out_dir: Path, stage: str, **summary) -> list[dict]:
    log = [dict(h, stage=stage) for h in trainer.state.log_history]
    if summary:
        log.append({"stage": stage, **summary})
    (out_dir / "training_log.json").write_text(json.dumps(log, indent=1))
    return log


def train_sft(model_dir: str | Path, train_pairs: list[dict], out_dir: str | Path, cfg: TrainConfig,
              limits: RenderLimits, work_dir: str | Path | None = None, callbacks: list | None = None) -> list[dict]:
    """TRL SFTTrainer on (judge input -> rationale + verdict), loss on the completion only.
    Checkpoints go to `work_dir` every `save_steps`; a call after a crash resumes there."""
    from datasets import Dataset
    from trl import SFTConfig, SFTTrainer

    from persrm_core.model import load_model, load_tokenizer

    tokenizer = load_tokenizer(model_dir)
    model = load_model(model_dir, "bfloat16" if cfg.bf16 else "float32")
    rows = sft_rows(train_pairs, limits, token_counter(tokenizer), cfg.rejection_sampling)
    keep_rate = len(rows) / max(len(train_pairs), 1)
    random.Random(cfg.seed).shuffle(rows)
    work, resume = _work_and_resume("sft", model_dir, cfg, limits, train_pairs, out_dir, work_dir)
    args = SFTConfig(
        output_dir=str(work), learning_rate=cfg.learning_rate, num_train_epochs=cfg.epochs,
        max_steps=cfg.max_steps, per_device_train_batch_size=cfg.batch_size,
        gradient_accumulation_steps=cfg.grad_accum, max_length=cfg.max_length,
        completion_only_loss=True, logging_steps=cfg.logging_steps, save_strategy="steps",
        save_steps=cfg.save_steps, save_total_limit=1,
        report_to="none", seed=cfg.seed, use_cpu=not _has_cuda(), bf16=cfg.bf16,
        warmup_steps=cfg.warmup_ratio, lr_scheduler_type="cosine", weight_decay=cfg.weight_decay,
        deepspeed=cfg.deepspeed,
    )
    trainer = SFTTrainer(model=model, args=args, train_dataset=Dataset.from_list(rows),
                         processing_class=tokenizer, callbacks=callbacks)
    return _train_and_publish(trainer, tokenizer, resume, work, Path(out_dir), "sft", traces=len(rows),
                              trace_keep_rate=round(keep_rate, 4))


def train_grpo(model_dir: str | Path, train_pairs: list[dict], out_dir: str | Path, cfg: GRPOSettings,
               limits: RenderLimits, work_dir: str | Path | None = None, callbacks: list | None = None) -> list[dict]:
    """TRL GRPOTrainer from the SFT checkpoint with the verifiable verdict reward; checkpoints
    and resumption as in `train_sft`."""
    from datasets import Dataset
    from trl import GRPOConfig, GRPOTrainer

    from persrm_core.model import load_model, load_tokenizer

    tokenizer = load_tokenizer(model_dir)
    model = load_model(model_dir, "bfloat16" if cfg.bf16 else "float32")
    count = token_counter(tokenizer)
    rows = [{"prompt": render_messages(p["exemplars"], p["prompt"], p["response_a"], p["response_b"],
                                       limits, count),
             "label": p["label"]} for p in train_pairs]
    random.Random(cfg.seed).shuffle(rows)
    work, resume = _work_and_resume("rft", model_dir, cfg, limits, train_pairs, out_dir, work_dir)
    args = GRPOConfig(
        output_dir=str(work), learning_rate=cfg.learning_rate, max_steps=cfg.max_steps,
        per_device_train_batch_size=cfg.batch_size, num_generations=cfg.num_generations,
        max_completion_length=cfg.max_completion_length, temperature=cfg.temperature, beta=cfg.beta,
        logging_steps=cfg.logging_steps, save_strategy="steps", save_steps=cfg.save_steps,
        save_total_limit=1, report_to="none", seed=cfg.seed,
        use_cpu=not _has_cuda(), bf16=cfg.bf16, use_vllm=cfg.use_vllm,
        vllm_mode="colocate", deepspeed=cfg.deepspeed, log_completions=False,
    )
    trainer = GRPOTrainer(model=model, reward_funcs=[verdict_reward], args=args,
                          train_dataset=Dataset.from_list(rows), processing_class=tokenizer, callbacks=callbacks)
    return _train_and_publish(trainer, tokenizer, resume, work, Path(out_dir), "rft")
