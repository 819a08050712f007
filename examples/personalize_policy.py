"""Personalize a policy toward one author with GRPO, rewarded by a trained PersRM judge.

Each of the author's texts becomes a task: its opening is the prompt, its own continuation is
the reference the policy's completion is judged against, and up to `--num-exemplars` of the
author's OTHER texts are the exemplars the judge reads (never the text the reference comes from,
or the judge could match the reference word for word). The reward is
`persrm_core.judging.policy_reward.PersonalReward`: +1 when the judge prefers the completion over the
author's own continuation in both A/B orders, -1 when it prefers the reference in both, 0 when
the orders disagree or the judge's output is invalid.

The judge reads pairs cut by the `render` limits of params.yaml (`--params`, `--profile`), the
limits it was trained with, and texts are split into opening and continuation by the same
`synthesis` settings that built its training pairs.

    python examples/personalize_policy.py --judge data/models/rft --policy Qwen/Qwen2.5-0.5B-Instruct \\
        --exemplars data/exemplars/exemplars.jsonl --author lena --steps 50 --out data/models/policy-lena

Without `--exemplars`, a small built-in author is used. `--out` receives the policy checkpoint
(safetensors, tokenizer) and `training_log.json` (TRL's log: `reward`, `personal_reward/*`),
published whole or not at all. The run does not checkpoint midway: a killed run starts over.
"""

from __future__ import annotations

import argparse
import random
import shutil
import sys
from pathlib import Path

INSTRUCTION = "Continue the user's text in the same author's voice. Write only the continuation."

# A built-in author: lowercase, no apostrophes, plain everyday sentences.
BUILTIN_AUTHOR = "builtin"
BUILTIN_TEXTS = [
    "i got up late again because the alarm never went off. the kitchen was cold and the kettle took forever. "
    "i ate toast standing by the window and watched the rain come down on the empty street. by the time i left "
    "the bus was already pulling away so i walked the whole way in.",
    "my brother came round with a box of old photos from the attic. we sat on the floor and laughed at the "
    "haircuts for about an hour. there was one of our dad holding a fish that was way too small to be proud of. "
    "we put that one on the fridge where everyone can see it.",
    "the market was busy this morning and i only wanted bread. i ended up with apples and cheese and a plant "
    "i dont have room for. the woman at the flower stall said it needs sun but not too much. i have no idea "
    "what that means but i will try.",
    "we tried the new noodle place near the station last night. the soup was good but the chairs were so "
    "small that my knees hurt after ten minutes. i think we will go back anyway because it was cheap and warm. "
    "next time i will ask for a table by the wall.",
    "i finally fixed the bike that has been sitting in the hall since spring. it only needed air in the tires "
    "and a bit of oil on the chain. i rode it round the park twice and felt very pleased with myself. then it "
    "started to rain and i remembered why i stopped.",
]


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--judge", required=True, help="trained judge checkpoint (e.g. data/models/rft)")
    ap.add_argument("--policy", required=True, help="policy to train: HF id or local checkpoint")
    ap.add_argument("--out", required=True, help="directory for the trained policy and training_log.json")
    ap.add_argument("--exemplars", help="the author's texts (.jsonl, .json or author directories, as `persrm "
                                        "ingest` reads them); default: a small built-in author")
    ap.add_argument("--author", help="author_id to personalize toward (default: the one with most texts)")
    ap.add_argument("--params", help="params.yaml holding the judge's render limits (default: the project's)")
    ap.add_argument("--profile", help="params.yaml profile (default: its `profile`)")
    ap.add_argument("--steps", type=int, default=20, help="GRPO steps")
    ap.add_argument("--num-generations", type=int, default=4, help="completions per prompt (a GRPO group)")
    ap.add_argument("--batch-size", type=int, default=8, help="completions per step (a multiple of the above)")
    ap.add_argument("--max-completion-length", type=int, default=96, help="policy completion tokens")
    ap.add_argument("--learning-rate", type=float, default=1e-6)
    ap.add_argument("--temperature", type=float, default=1.0)
    ap.add_argument("--beta", type=float, default=0.0, help="KL coefficient toward the initial policy")
    ap.add_argument("--num-exemplars", type=int, default=3, help="exemplars shown to the judge per task")
    ap.add_argument("--judge-max-new-tokens", type=int, default=96, help="tokens the judge may write")
    ap.add_argument("--judge-batch-size", type=int, default=8)
    ap.add_argument("--one-order", action="store_true", help="judge A/B once (cheaper; position bias pays)")
    ap.add_argument("--logging-steps", type=int, default=1)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--bf16", action="store_true")
    return ap.parse_args(argv)


def author_texts(path: str | None, author: str | None) -> tuple[str, list[str]]:
    """The chosen author's texts, from `path` or the built-in author."""
    if path is None:
        return BUILTIN_AUTHOR, list(BUILTIN_TEXTS)
    from persrm_core.data.ingest import read_exemplars

    by_author: dict[str, list[str]] = {}
    for ex in read_exemplars(path):
        by_author.setdefault(ex.author_id, []).append(ex.text)
    if author is None:
        author = max(sorted(by_author), key=lambda a: len(by_author[a]))
    if author not in by_author:
        raise SystemExit(f"{path}: no author {author!r} (known: {', '.join(sorted(by_author))})")
    return author, by_author[author]


def task_rows(texts: list[str], num_exemplars: int, synthesis) -> list[dict]:
    """One GRPO row per text long enough to split: a conversational prompt (instruction, opening),
    the `reference` continuation and the `exemplars` (other texts, rotated so rows differ)."""
    from persrm_core.synthesis.splits import split_text

    rows = []
    for i, text in enumerate(texts):
        split = split_text(text, synthesis)
        others = texts[i + 1:] + texts[:i]
        if split is None or not others:
            continue
        opening, continuation = split
        rows.append({"prompt": [{"role": "system", "content": INSTRUCTION}, {"role": "user", "content": opening}],
                     "reference": continuation, "exemplars": others[:num_exemplars]})
    return rows


def main(argv: list[str] | None = None) -> list[dict]:
    """Train and publish the policy; return the training log."""
    args = parse_args(argv)
    from datasets import Dataset
    from trl import GRPOConfig, GRPOTrainer

    from persrm_core.atomic import atomic_dir
    from persrm_core.config import load_settings
    from persrm_core.judging.policy_reward import PersonalReward
    from persrm_core.llm.model import load_model, load_tokenizer
    from persrm_core.training.settings import _has_cuda
    from persrm_core.training.trainers import _save_log

    settings = load_settings(args.profile, args.params)
    author, texts = author_texts(args.exemplars, args.author)
    rows = task_rows(texts, args.num_exemplars, settings.synthesis)
    if not rows:
        raise SystemExit(f"author {author!r}: no text is long enough to split into an opening and a reference "
                         f"(needs {settings.synthesis.min_prompt_words + settings.synthesis.min_response_words}+ "
                         "words) with another text left as exemplar")
    random.Random(args.seed).shuffle(rows)
    reward = PersonalReward(args.judge, render=settings.render, both_orders=not args.one_order,
                            batch_size=args.judge_batch_size, max_new_tokens=args.judge_max_new_tokens)
    tokenizer = load_tokenizer(args.policy)
    model = load_model(args.policy, "bfloat16" if args.bf16 else "float32")
    with atomic_dir(args.out) as tmp:
        work = tmp / "_work"
        config = GRPOConfig(
            output_dir=str(work), learning_rate=args.learning_rate, max_steps=args.steps,
            per_device_train_batch_size=args.batch_size, num_generations=args.num_generations,
            max_completion_length=args.max_completion_length, temperature=args.temperature, beta=args.beta,
            logging_steps=args.logging_steps, save_strategy="no", report_to="none", seed=args.seed,
            use_cpu=not _has_cuda(), bf16=args.bf16, log_completions=False,
        )
        trainer = GRPOTrainer(model=model, reward_funcs=[reward], args=config, train_dataset=Dataset.from_list(rows),
                              processing_class=tokenizer)
        trainer.train()
        shutil.rmtree(work, ignore_errors=True)
        trainer.save_model(str(tmp))
        tokenizer.save_pretrained(tmp)
        (Path(tmp) / "training_args.bin").unlink(missing_ok=True)  # pickled; nothing here needs it
        log = _save_log(trainer, tmp, "personalize", author=author, tasks=len(rows), judge=str(args.judge))
    print(f"policy for {author!r} written to {args.out}")
    return log


if __name__ == "__main__":
    main(sys.argv[1:])
