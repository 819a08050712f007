"""A scalar Bradley-Terry reward model: the baseline PersRM-R1 compares its reasoning judge against.

A sequence classifier (`AutoModelForSequenceClassification`, one output) reads the author's
exemplars, the prompt and ONE response, and returns a number; TRL's `RewardTrainer` trains it so
that the labelled response scores above the other (-log sigmoid(r_chosen - r_rejected)). It gives
no rationale, and since each response is scored on its own it cannot have a position bias.

An example is rendered with the tokenizer's chat template: a user turn with the exemplars and the
prompt, an assistant turn with the response. That is the shape in which a reward model scores a
policy's (prompt, completion), the same conventions the generative judge's base model is read
with, and `load_tokenizer` installs ChatML on a base that has no template; the score is read at
the last token, the end of the assistant turn.
"""

from __future__ import annotations

import dataclasses
import json
import shutil
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from tqdm.auto import tqdm

from persrm_core.atomic import atomic_dir
from persrm_core.judging.judge import _scored
from persrm_core.records import Pair
from persrm_core.training.settings import _has_cuda
from persrm_core.training.trainers import _save_log

SETTINGS_FILE = "scalar_rm.json"  # the rendering the checkpoint was trained with; the judge reuses it
MIN_WORDS = 8


@dataclass
class ScalarRMConfig:
    learning_rate: float = 1e-3  # suits the tiny base trained from scratch; use ~1e-5 for a pretrained one
    epochs: float = 1.0
    max_steps: int = -1  # overrides epochs when > 0
    batch_size: int = 8  # pairs per step (each gives a chosen and a rejected sequence)
    max_length: int = 1024  # tokens per sequence, after the cutting rule of `render_ids`
    max_exemplars: int = 3
    max_exemplar_words: int = 80
    max_response_words: int = 120  # also the prompt's cut
    seed: int = 0
    bf16: bool = False
    logging_steps: int = 5


def _cut(text: str, n_words: int) -> str:
    words = text.split()
    return text.strip() if len(words) <= n_words else " ".join(words[:n_words]) + " ..."


def render_messages(exemplars: Sequence[str], prompt: str, response: str, n_exemplars: int, exemplar_words: int,
                    response_words: int) -> list[dict]:
    lines = ["Exemplars by the author:"]
    lines += [f"[{i}] {_cut(ex, exemplar_words)}" for i, ex in enumerate(exemplars[:n_exemplars], start=1)]
    lines.append(f"Prompt: {_cut(prompt, response_words)}")
    return [{"role": "user", "content": "\n".join(lines)},
            {"role": "assistant", "content": _cut(response, response_words)}]


def render_ids(tokenizer, exemplars: Sequence[str], prompt: str, response: str, cfg: ScalarRMConfig) -> list[int]:
    """Token ids of one (person, prompt, response) example, cut to fit `cfg.max_length` by a fixed
    rule (never an error, never a dropped example): at most `max_exemplars` exemplars of at most
    `max_exemplar_words` words each, prompt and response cut to `max_response_words` words; while
    still too long, exemplars are dropped from the end (one is always kept), then every word cut
    is halved (down to 8 words); as a last resort only the last `max_length` tokens are kept, so the
    response's end, where the score is read, always survives."""
    n_ex, ex_words, resp_words = min(cfg.max_exemplars, len(exemplars)), cfg.max_exemplar_words, cfg.max_response_words
    while True:
        msgs = render_messages(exemplars, prompt, response, n_ex, ex_words, resp_words)
        text = tokenizer.apply_chat_template(msgs, tokenize=False)
        ids = tokenizer(text, add_special_tokens=False)["input_ids"]
        if len(ids) <= cfg.max_length:
            return ids
        if n_ex > 1:
            n_ex -= 1
        elif ex_words > MIN_WORDS or resp_words > MIN_WORDS:
            ex_words, resp_words = max(ex_words // 2, MIN_WORDS), max(resp_words // 2, MIN_WORDS)
        else:
            return ids[-cfg.max_length:]


def preference_rows(tokenizer, pairs: list[dict], cfg: ScalarRMConfig) -> list[dict]:
    """TRL's pre-tokenized preference rows: chosen = the labelled response, rejected = the other."""
    rows = []
    for p in tqdm(pairs, desc="tokenizing pairs", unit="pair", disable=len(pairs) < 200):
        chosen, rejected = p["response_a"], p["response_b"]
        if p["label"] == "B":
            chosen, rejected = rejected, chosen
        rows.append({"chosen_ids": render_ids(tokenizer, p["exemplars"], p["prompt"], chosen, cfg),
                     "rejected_ids": render_ids(tokenizer, p["exemplars"], p["prompt"], rejected, cfg)})
    return rows


def _load_classifier(path: str | Path, bf16: bool, pad_token_id: int | None = None):
    import torch
    from transformers import AutoModelForSequenceClassification

    model = AutoModelForSequenceClassification.from_pretrained(
        str(path), num_labels=1, dtype=torch.bfloat16 if bf16 else torch.float32, use_safetensors=True)
    if pad_token_id is not None:  # the classifier reads the score at the last token that is not padding
        model.config.pad_token_id = pad_token_id
    return model


def train_scalar_rm(base_model_dir: str | Path, train_pairs: list[dict], out_dir: str | Path,
                    cfg: ScalarRMConfig = ScalarRMConfig()) -> list[dict]:
    """TRL RewardTrainer (Bradley-Terry loss) of a one-output sequence classifier on the base model;
    publishes safetensors, tokenizer, the rendering settings and `training_log.json` to `out_dir`
    atomically. The score head starts random (seeded by `cfg.seed`)."""
    from datasets import Dataset
    from transformers import set_seed
    from trl import RewardConfig, RewardTrainer

    from persrm_core.llm.model import load_tokenizer

    tokenizer = load_tokenizer(base_model_dir)
    set_seed(cfg.seed)
    model = _load_classifier(base_model_dir, cfg.bf16, tokenizer.pad_token_id)
    # TRL drops (does not cut) sequences over max_length; render_ids cuts to it, within the context
    cfg = dataclasses.replace(cfg, max_length=min(cfg.max_length, getattr(model.config, "max_position_embeddings",
                                                                          cfg.max_length)))
    rows = preference_rows(tokenizer, train_pairs, cfg)
    out = Path(out_dir)
    with atomic_dir(out) as tmp:
        args = RewardConfig(
            output_dir=str(tmp / "_work"), learning_rate=cfg.learning_rate, num_train_epochs=cfg.epochs,
            max_steps=cfg.max_steps, per_device_train_batch_size=cfg.batch_size, max_length=cfg.max_length,
            logging_steps=cfg.logging_steps, save_strategy="no", report_to="none", seed=cfg.seed,
            use_cpu=not _has_cuda(), bf16=cfg.bf16, dataloader_num_workers=0,
        )
        trainer = RewardTrainer(model=model, args=args, train_dataset=Dataset.from_list(rows),
                                processing_class=tokenizer)
        trainer.train()
        shutil.rmtree(tmp / "_work", ignore_errors=True)
        trainer.save_model(str(tmp))
        tokenizer.save_pretrained(tmp)
        (tmp / "training_args.bin").unlink(missing_ok=True)  # pickled; loading it would run arbitrary code
        (tmp / SETTINGS_FILE).write_text(json.dumps(dataclasses.asdict(cfg), indent=2))
        log = _save_log(trainer, tmp, "scalar_rm", train_pairs=len(train_pairs))
    return log


def _item(pair: Pair, response: str) -> tuple[tuple[str, ...], str, str]:
    return tuple(pair.exemplars), pair.prompt, response


class ScalarRMJudge:
    """Judge with a scalar RM checkpoint: score both responses, prefer the higher (`judge._scored`).

    The records match `baseline_judge`'s; with `both_orders` they also carry the swapped reading,
    identical by construction (an example's text holds one response and no A/B position)."""

    def __init__(self, model_dir: str | Path, batch_size: int = 16):
        import torch

        from persrm_core.llm.model import load_tokenizer

        settings = json.loads((Path(model_dir) / SETTINGS_FILE).read_text())
        self.cfg = ScalarRMConfig(**{f.name: settings[f.name] for f in dataclasses.fields(ScalarRMConfig)
                                     if f.name in settings})
        self.tokenizer = load_tokenizer(model_dir)
        self.model = _load_classifier(model_dir, self.cfg.bf16, self.tokenizer.pad_token_id).eval()
        self.device = "cuda" if torch.cuda.is_available() else "cpu"
        self.model.to(self.device)
        self.batch_size = batch_size

    def score(self, items: Sequence[tuple[Sequence[str], str, str]], desc: str = "scoring") -> list[float]:
        """Scalar rewards of (exemplars, prompt, response) items, in order. Sequences are padded
        on the right, as in training, and batched by length so that little padding is computed."""
        import torch

        ids = [render_ids(self.tokenizer, ex, prompt, resp, self.cfg) for ex, prompt, resp in items]
        order = sorted(range(len(ids)), key=lambda i: len(ids[i]))
        scores = [0.0] * len(ids)
        pad = self.tokenizer.pad_token_id
        for start in tqdm(range(0, len(order), self.batch_size), desc=desc, unit="batch", disable=not order):
            idx = order[start:start + self.batch_size]
            width = max(len(ids[i]) for i in idx)
            input_ids = torch.tensor([ids[i] + [pad] * (width - len(ids[i])) for i in idx], device=self.device)
            mask = torch.tensor([[1] * len(ids[i]) + [0] * (width - len(ids[i])) for i in idx], device=self.device)
            with torch.no_grad():
                logits = self.model(input_ids=input_ids, attention_mask=mask).logits[:, 0].float().cpu()
            for i, s in zip(idx, logits.tolist(), strict=True):
                scores[i] = s
        return scores

    def judge(self, pairs: Sequence[Pair], both_orders: bool = False) -> list[dict]:
        pairs = list(pairs)
        unique = list(dict.fromkeys(_item(p, r) for p in pairs for r in (p.response_a, p.response_b)))  # once each
        value = dict(zip(unique, self.score(unique), strict=True))
        rows = []
        for p in pairs:
            a, b = value[_item(p, p.response_a)], value[_item(p, p.response_b)]
            row = _scored(p, a, b, f"scalar reward A={a:.3f} B={b:.3f} (Bradley-Terry reward model)")
            if both_orders:  # the swapped reading scores the same two texts: same scores, same choice
                row.update(choice_swapped=row["choice"], scores_swapped=list(row["scores"]),
                           debiased_choice=row["choice"])
            rows.append(row)
        return rows
