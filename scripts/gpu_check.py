"""`make gpu-check`: measure what the judge's training and judging do on one CUDA GPU.

Meant for a bare CUDA machine (torch + transformers + accelerate preinstalled; trl and datasets as
wheels on PYTHONPATH; no project install, no dagster): run from the repository root as

    python3 scripts/gpu_check.py [--steps 20] [--json OUT.json] [--append BENCHMARKS.md] [--small]

It puts the repository root on sys.path itself and imports only `persrm_core.judging.judge_format`,
`persrm_core.training.rewards` and `persrm_core.llm.model` (which need nothing beyond the standard library at
import time, and tokenizers/transformers when called). `persrm_core.training.trainers` and `persrm_core.judging.judge`
are not imported: they pull in the evidence/signals modules (numpy, tqdm) at import time, so the
few lines of trainer set-up this check needs are written out here.

Each part runs in its own try/except, so one failure does not lose the others:

0. a bf16 matmul of 8192^3 (median of timed repeats): the GPU's measured matmul rate;
1. a randomly initialised Qwen2ForCausalLM (~213M parameters: hidden 1024, 16 layers, 16 heads,
   4 KV heads, intermediate 2816, tied embeddings, vocab = the byte-level BPE tokenizer trained
   here with `persrm_core.llm.model.train_tokenizer` on synthetic text, 32,000 asked);
2. SFT with TRL `SFTTrainer` (a plain torch loop if trl is missing) at batch 8 x 1024 tokens:
   median tokens/s over the steps after the warm-up ones, MFU = 6 * params * tokens/s / peak (H200
   dense bf16 spec 989.5 TFLOP/s) and the same model FLOP/s as a fraction of the measured matmul rate;
3. GRPO with TRL `GRPOTrainer` and `persrm_core.training.rewards.verdict_reward` on judge prompts rendered by
   `persrm_core.judging.judge_format.render_messages(..., limits=RenderLimits(evidence=False))`: s/step,
   generated tokens/s (of the whole step, and of the time inside `generate`);
4. judging: batched greedy `model.generate` of 256 rendered judge prompts at batch 32 and 64,
   64 new tokens: pairs/s;
5. vLLM: the same judging through `vllm.LLM`, only when `import vllm` works;
6. peak GPU memory (`torch.cuda.max_memory_allocated`) of each part.

`--small` is a ~1M-parameter model and a few steps, so the script can be smoke-tested on a CPU
(there it trains in float32: CPU bf16 is slow or unsupported in places, and the output says so).
"""

from __future__ import annotations

import argparse
import copy
import gc
import json
import os
import platform
import random
import statistics
import sys
import tempfile
import time
import traceback
from datetime import datetime, timezone
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))
for _k, _v in {"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1",
               "TOKENIZERS_PARALLELISM": "false", "WANDB_DISABLED": "true"}.items():
    os.environ.setdefault(_k, _v)

import torch  # noqa: E402

from persrm_core.judging.judge_format import RenderLimits, render_messages  # noqa: E402
from persrm_core.llm.model import train_tokenizer  # noqa: E402
from persrm_core.training.rewards import verdict_reward  # noqa: E402

H200_PEAK_BF16 = 989.5e12  # NVIDIA H200 SXM dense BF16 tensor-core peak (spec sheet, no sparsity)

FULL = dict(vocab=32000, hidden=1024, layers=16, heads=16, kv_heads=4, intermediate=2816, max_positions=4096,
            sft_batch=8, seq_len=1024, warmup=3, matmul_n=8192, matmul_reps=20,
            grpo_steps=5, grpo_prompts=2, num_generations=8, max_completion=128,
            judge_pairs=256, judge_batches=(32, 64), judge_new_tokens=64, tokenizer_words=400_000)
SMALL = dict(vocab=1024, hidden=128, layers=4, heads=4, kv_heads=2, intermediate=384, max_positions=2048,
             sft_batch=2, seq_len=128, warmup=1, matmul_n=512, matmul_reps=5,
             grpo_steps=2, grpo_prompts=1, num_generations=4, max_completion=16,
             judge_pairs=16, judge_batches=(4, 8), judge_new_tokens=8, tokenizer_words=20_000)


def log(msg: str) -> None:
    print(f"[gpu_check {time.strftime('%H:%M:%S')}] {msg}", flush=True)


# --- synthetic text and pairs -------------------------------------------------------------------

SYLLABLES = [c + v for c in "bcdfghjklmnprstvwz" for v in "aeiou"] + ["th", "sh", "ch", "qu", "str", "ing", "ed"]
COMMON = ("the a of to and in is it that was for on with as I you he she they we but not be at by this "
          "had have from or one all were there what so up out if about who get which go me when make can "
          "like time no just him know take people into year your good some could them see other than then "
          "now look only come its over think also back after use two how our work first well way even new "
          "want because any these give day most us honestly really lol tbh :) !!").split()


def synthetic_words(rng: random.Random, n_types: int = 30000) -> list[str]:
    """A lexicon of pseudo-words (1-4 syllables), so a 32k-token BPE has merges to learn."""
    lex = set()
    while len(lex) < n_types:
        lex.add("".join(rng.choice(SYLLABLES) for _ in range(rng.choice((1, 2, 2, 3, 3, 4)))))
    return sorted(lex)


def synthetic_text(rng: random.Random, lex: list[str], n_words: int) -> str:
    words = []
    for i in range(n_words):
        w = rng.choice(COMMON) if rng.random() < 0.45 else rng.choice(lex)
        if rng.random() < 0.08:
            w = w.capitalize()
        words.append(w + (rng.choice([".", ",", "!", "?", "..."]) if rng.random() < 0.1 else ""))
    return " ".join(words)


def synthetic_pairs(rng: random.Random, lex: list[str], n: int) -> list[dict]:
    pairs = []
    for i in range(n):
        label = rng.choice("AB")
        chosen, other = synthetic_text(rng, lex, 70), synthetic_text(rng, lex, 70)
        pairs.append({"pair_id": f"p{i}", "exemplars": [synthetic_text(rng, lex, 60) for _ in range(3)],
                      "prompt": synthetic_text(rng, lex, 20),
                      "response_a": chosen if label == "A" else other,
                      "response_b": other if label == "A" else chosen, "label": label})
    return pairs


def judge_messages(pairs: list[dict]) -> list[list[dict]]:
    limits = RenderLimits(evidence=False)
    return [render_messages(p["exemplars"], p["prompt"], p["response_a"], p["response_b"], limits=limits)
            for p in pairs]


# --- model ----------------------------------------------------------------------------------------

def qwen2_config(cfg: dict, tokenizer):
    from transformers import Qwen2Config

    return Qwen2Config(
        vocab_size=len(tokenizer), hidden_size=cfg["hidden"], num_hidden_layers=cfg["layers"],
        num_attention_heads=cfg["heads"], num_key_value_heads=cfg["kv_heads"],
        intermediate_size=cfg["intermediate"], max_position_embeddings=cfg["max_positions"],
        tie_word_embeddings=True, pad_token_id=tokenizer.pad_token_id, eos_token_id=tokenizer.eos_token_id,
        bos_token_id=None,
    )


def build_model(config, tokenizer, device: str, dtype, seed: int = 0):
    from transformers import Qwen2ForCausalLM

    torch.manual_seed(seed)
    with torch.device(device):
        # A copy per model: the trainers set `config.use_cache = False` on the model they train, and a
        # shared config would make every later `generate` run without its KV cache.
        model = Qwen2ForCausalLM(copy.deepcopy(config))
    model = model.to(dtype)
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    return model


def param_counts(model) -> dict:
    total = sum(p.numel() for p in model.parameters())  # tied input/output embedding counted once
    emb = model.get_input_embeddings().weight.numel()
    return {"params": total, "params_non_embedding": total - emb, "embedding_params": emb}


# --- measurement helpers -------------------------------------------------------------------------

def sync(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def reset_memory(device: str) -> None:
    gc.collect()
    if device == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()


def peak_memory_gib(device: str) -> float | None:
    return round(torch.cuda.max_memory_allocated() / 2**30, 2) if device == "cuda" else None


def step_timer(device: str):
    """A TrainerCallback recording the wall time of each optimizer step (synchronized on CUDA),
    from one step end to the next (the first from the start of training)."""
    from transformers import TrainerCallback

    class StepTimer(TrainerCallback):
        def __init__(self):
            self.times: list[float] = []
            self._last = None

        def on_train_begin(self, args, state, control, **kw):
            sync(device)
            self._last = time.perf_counter()

        def on_step_end(self, args, state, control, **kw):
            sync(device)
            now = time.perf_counter()
            self.times.append(now - self._last)
            self._last = now

    return StepTimer()


def part_matmul(ctx: dict) -> dict:
    device, dtype, n, reps = ctx["device"], ctx["dtype"], ctx["cfg"]["matmul_n"], ctx["cfg"]["matmul_reps"]
    a = torch.randn(n, n, device=device, dtype=dtype)
    b = torch.randn(n, n, device=device, dtype=dtype)
    for _ in range(3):
        a @ b
    sync(device)
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        a @ b
        sync(device)
        times.append(time.perf_counter() - t0)
    med = statistics.median(times)
    flops = 2 * n ** 3 / med
    del a, b
    out = {"n": n, "dtype": str(dtype).removeprefix("torch."), "repeats": reps, "median_s": round(med, 6),
           "tflops": round(flops / 1e12, 4)}
    if device == "cuda":
        out["fraction_of_h200_spec"] = round(flops / H200_PEAK_BF16, 4)
    return out


def part_sft(ctx: dict) -> dict:
    cfg, device, dtype = ctx["cfg"], ctx["device"], ctx["dtype"]
    bs, seq, warm, steps = cfg["sft_batch"], cfg["seq_len"], cfg["warmup"], ctx["steps"]
    model = build_model(ctx["config"], ctx["tokenizer"], device, dtype)
    n_params = param_counts(model)["params"]
    gen = torch.Generator().manual_seed(0)
    vocab = len(ctx["tokenizer"])
    rows = torch.randint(0, vocab, ((warm + steps) * bs, seq), generator=gen).tolist()
    try:
        import trl  # noqa: F401
        from datasets import Dataset
        from trl import SFTConfig, SFTTrainer
        engine = f"trl {trl.__version__} SFTTrainer"
    except ImportError as exc:
        engine = f"plain torch loop (trl/datasets missing: {exc})"
    log(f"SFT with {engine}: {warm} warm-up + {steps} timed steps at batch {bs} x {seq} tokens")
    if engine.startswith("trl"):
        timer = step_timer(device)
        with tempfile.TemporaryDirectory() as out:
            args = SFTConfig(
                output_dir=out, max_steps=warm + steps, per_device_train_batch_size=bs, max_length=seq,
                learning_rate=1e-4, lr_scheduler_type="constant", logging_steps=max(warm + steps, 1),
                save_strategy="no", report_to="none", seed=0, bf16=ctx["bf16"], use_cpu=device != "cuda",
                packing=False, dataloader_num_workers=0, disable_tqdm=True,
            )
            trainer = SFTTrainer(model=model, args=args, train_dataset=Dataset.from_dict({"input_ids": rows}),
                                 processing_class=ctx["tokenizer"], callbacks=[timer])
            trainer.train()
            step_times = timer.times
            del trainer
    else:
        opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
        model.train()
        step_times = []
        for i in range(warm + steps):
            batch = torch.tensor(rows[i * bs:(i + 1) * bs], device=device)
            sync(device)
            t0 = time.perf_counter()
            loss = model(input_ids=batch, labels=batch).loss
            loss.backward()
            opt.step()
            opt.zero_grad(set_to_none=True)
            sync(device)
            step_times.append(time.perf_counter() - t0)
    del model
    timed = step_times[warm:] or step_times
    med = statistics.median(timed)
    tps = bs * seq / med
    model_flops = 6 * n_params * tps
    out = {"engine": engine, "batch": bs, "seq_len": seq, "warmup_steps": warm, "timed_steps": len(timed),
           "median_step_s": round(med, 4), "tokens_per_s": round(tps, 1), "model_tflops": round(model_flops / 1e12, 2),
           "step_s_all": [round(t, 4) for t in step_times]}
    if device == "cuda":
        out["mfu_vs_h200_spec"] = round(model_flops / H200_PEAK_BF16, 4)
    mm = ctx["results"].get("matmul", {})
    if mm.get("tflops"):
        out["fraction_of_measured_matmul"] = round(model_flops / (mm["tflops"] * 1e12), 4)
    return out


def part_grpo(ctx: dict) -> dict:
    import transformers
    import trl
    from datasets import Dataset
    from trl import GRPOConfig, GRPOTrainer

    cfg, device, dtype, tok = ctx["cfg"], ctx["device"], ctx["dtype"], ctx["tokenizer"]
    steps, ng = cfg["grpo_steps"], cfg["num_generations"]
    bs = ng * cfg["grpo_prompts"]
    rng = random.Random(1)
    pairs = synthetic_pairs(rng, ctx["lexicon"], max(steps * cfg["grpo_prompts"], 8))
    rows = [{"prompt": m, "label": p["label"]} for m, p in zip(judge_messages(pairs), pairs)]
    prompt_tokens = [len(tok.apply_chat_template(r["prompt"], add_generation_prompt=True, tokenize=True,
                                                 return_dict=True)["input_ids"]) for r in rows]
    gen_tokens: list[int] = []

    def verdict(completions, label, completion_ids=None, **kwargs):
        gen_tokens.append(sum(len(ids) for ids in (completion_ids or [])))
        return verdict_reward(completions, label)

    gen_seconds: list[float] = []
    original = transformers.GenerationMixin.generate

    def timed_generate(self, *args, **kwargs):
        sync(device)
        t0 = time.perf_counter()
        try:
            return original(self, *args, **kwargs)
        finally:
            sync(device)
            gen_seconds.append(time.perf_counter() - t0)

    model = build_model(ctx["config"], tok, device, dtype)
    timer = step_timer(device)
    log(f"GRPO with trl {trl.__version__}: {steps} steps, {cfg['grpo_prompts']} prompts x {ng} generations, "
        f"max_completion_length {cfg['max_completion']}")
    transformers.GenerationMixin.generate = timed_generate
    try:
        with tempfile.TemporaryDirectory() as out:
            args = GRPOConfig(
                output_dir=out, max_steps=steps, per_device_train_batch_size=bs, num_generations=ng,
                max_completion_length=cfg["max_completion"], temperature=1.0, beta=0.0, learning_rate=1e-6,
                logging_steps=1, save_strategy="no", report_to="none", seed=0, bf16=ctx["bf16"],
                use_cpu=device != "cuda", use_vllm=False, log_completions=False, disable_tqdm=True,
            )
            trainer = GRPOTrainer(model=model, reward_funcs=[verdict], args=args, train_dataset=Dataset.from_list(rows),
                                  processing_class=tok, callbacks=[timer])
            trainer.train()
            del trainer
    finally:
        transformers.GenerationMixin.generate = original
    del model
    times = timer.times
    timed = times[1:] if len(times) > 1 else times  # the first step carries the CUDA/kernel warm-up
    per_step_tps = [g / t for g, t in zip(gen_tokens[1:] if len(times) > 1 else gen_tokens, timed)]
    gen_in_generate = [g / s for g, s in zip(gen_tokens, gen_seconds) if s > 0]
    gen_in_generate = gen_in_generate[1:] if len(gen_in_generate) > 1 else gen_in_generate
    return {"engine": f"trl {trl.__version__} GRPOTrainer (transformers generate, no vLLM)", "steps": len(times),
            "completions_per_step": bs, "num_generations": ng, "max_completion_length": cfg["max_completion"],
            "mean_prompt_tokens": round(statistics.mean(prompt_tokens), 1),
            "median_step_s": round(statistics.median(timed), 3),
            "generated_tokens_per_step": gen_tokens,
            "median_generated_tokens_per_s_of_step": round(statistics.median(per_step_tps), 1) if per_step_tps else None,
            "median_generate_s_per_step": round(statistics.median(gen_seconds[1:] or gen_seconds), 3)
            if gen_seconds else None,
            "median_generated_tokens_per_s_in_generate": round(statistics.median(gen_in_generate), 1)
            if gen_in_generate else None,
            "step_s_all": [round(t, 3) for t in times]}


def part_judge(ctx: dict) -> dict:
    cfg, device, dtype, tok = ctx["cfg"], ctx["device"], ctx["dtype"], ctx["tokenizer"]
    pairs = synthetic_pairs(random.Random(2), ctx["lexicon"], cfg["judge_pairs"])
    prompts = [tok.apply_chat_template(m, add_generation_prompt=True, tokenize=False) for m in judge_messages(pairs)]
    lengths = [len(tok(p, add_special_tokens=False)["input_ids"]) for p in prompts]
    model = build_model(ctx["config"], tok, device, dtype).eval()
    new_tokens = cfg["judge_new_tokens"]
    tok.padding_side = "left"

    def run(batch_size: int, todo: list[str]) -> int:
        generated = 0
        for start in range(0, len(todo), batch_size):
            batch = tok(todo[start:start + batch_size], return_tensors="pt", padding=True,
                        add_special_tokens=False).to(device)
            with torch.inference_mode():
                out = model.generate(**batch, max_new_tokens=new_tokens, do_sample=False, temperature=None,
                                     top_p=None, top_k=None, pad_token_id=tok.pad_token_id,
                                     eos_token_id=tok.eos_token_id)
            generated += int((out[:, batch["input_ids"].shape[1]:] != tok.pad_token_id).sum())
        return generated

    result = {"pairs": len(prompts), "max_new_tokens": new_tokens, "decoding": "greedy",
              "mean_prompt_tokens": round(statistics.mean(lengths), 1), "by_batch": {}}
    run(cfg["judge_batches"][0], prompts[:cfg["judge_batches"][0]])  # warm-up (kernels, allocator)
    for bs in cfg["judge_batches"]:
        sync(device)
        t0 = time.perf_counter()
        generated = run(bs, prompts)
        sync(device)
        secs = time.perf_counter() - t0
        result["by_batch"][str(bs)] = {"seconds": round(secs, 2), "pairs_per_s": round(len(prompts) / secs, 2),
                                       "generated_tokens": generated, "new_tokens_per_s": round(generated / secs, 1)}
        log(f"judging at batch {bs}: {len(prompts) / secs:.2f} pairs/s")
    del model
    return result


def part_vllm(ctx: dict) -> dict:
    try:
        import vllm
    except Exception as exc:  # noqa: BLE001 - ImportError or a broken install: either way, not usable
        return {"status": "vllm not installed", "detail": f"{type(exc).__name__}: {exc}"[:200]}
    if ctx["device"] != "cuda":
        return {"status": "skipped: vLLM needs CUDA"}
    cfg, tok = ctx["cfg"], ctx["tokenizer"]
    pairs = synthetic_pairs(random.Random(2), ctx["lexicon"], cfg["judge_pairs"])
    prompts = [tok.apply_chat_template(m, add_generation_prompt=True, tokenize=False) for m in judge_messages(pairs)]
    with tempfile.TemporaryDirectory() as ckpt:
        model = build_model(ctx["config"], tok, "cpu", torch.bfloat16)
        model.save_pretrained(ckpt, safe_serialization=True)
        tok.save_pretrained(ckpt)
        del model
        llm = vllm.LLM(model=ckpt, dtype="bfloat16", gpu_memory_utilization=0.5, enforce_eager=False)
        params = vllm.SamplingParams(temperature=0.0, max_tokens=cfg["judge_new_tokens"])
        llm.generate(prompts[:8], params)
        t0 = time.perf_counter()
        outs = llm.generate(prompts, params)
        secs = time.perf_counter() - t0
        generated = sum(len(o.outputs[0].token_ids) for o in outs)
        del llm
    return {"status": "ok", "version": vllm.__version__, "pairs": len(prompts), "seconds": round(secs, 2),
            "pairs_per_s": round(len(prompts) / secs, 2), "new_tokens_per_s": round(generated / secs, 1),
            "note": "peak memory of this part is vLLM's own pool (gpu_memory_utilization 0.5), not torch's"}


# --- report --------------------------------------------------------------------------------------

def fmt(v, nd=2) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:,.{nd}f}"
    if isinstance(v, int):
        return f"{v:,}"
    return str(v)


def markdown(res: dict) -> str:
    r = res["results"]
    mm, sft, grpo, judge, vl = (r.get(k, {}) for k in ("matmul", "sft", "grpo", "judge", "vllm"))
    rows = [("device", res["device"]), ("dtype", res["dtype"]),
            ("model", f"Qwen2, random init, {fmt(res['model'].get('params'))} parameters "
                      f"({fmt(res['model'].get('params_non_embedding'))} without the tied embedding), "
                      f"vocab {fmt(res['model'].get('vocab'))}")]

    def err(part):
        return f"failed: {r[part]['error']}" if "error" in r.get(part, {}) else None

    rows.append((f"matmul {mm.get('n', '')}^3 TFLOP/s", err("matmul") or fmt(mm.get("tflops"))))
    rows.append(("SFT engine", err("sft") or sft.get("engine")))
    rows.append((f"SFT tokens/s (batch {sft.get('batch', '-')} x {sft.get('seq_len', '-')})", fmt(sft.get("tokens_per_s"), 0)))
    rows.append(("SFT MFU vs H200 spec (989.5 TFLOP/s)", fmt(sft.get("mfu_vs_h200_spec"), 3)))
    rows.append(("SFT model FLOP/s / measured matmul", fmt(sft.get("fraction_of_measured_matmul"), 3)))
    rows.append(("SFT peak GPU memory (GiB)", fmt(sft.get("peak_memory_gib"))))
    rows.append((f"GRPO s/step ({grpo.get('completions_per_step', '-')} completions, "
                 f"{grpo.get('max_completion_length', '-')} tokens max)", err("grpo") or fmt(grpo.get("median_step_s"), 3)))
    rows.append(("GRPO generated tokens/s (whole step)", fmt(grpo.get("median_generated_tokens_per_s_of_step"), 0)))
    rows.append(("GRPO generated tokens/s (inside generate)", fmt(grpo.get("median_generated_tokens_per_s_in_generate"), 0)))
    rows.append(("GRPO peak GPU memory (GiB)", fmt(grpo.get("peak_memory_gib"))))
    for bs, v in judge.get("by_batch", {}).items():
        rows.append((f"judge pairs/s, batch {bs} ({judge.get('max_new_tokens')} new tokens)", fmt(v["pairs_per_s"])))
    if err("judge"):
        rows.append(("judge", err("judge")))
    rows.append(("judge peak GPU memory (GiB)", fmt(judge.get("peak_memory_gib"))))
    rows.append(("vLLM", err("vllm") or (f"{fmt(vl.get('pairs_per_s'))} pairs/s" if vl.get("status") == "ok"
                                         else vl.get("status"))))
    lines = [f"## GPU check, {res['date']}, {res['device']}", "",
             f"`python3 scripts/gpu_check.py {' '.join(res['argv'])}`; torch {res['versions'].get('torch')}, "
             f"transformers {res['versions'].get('transformers')}, trl {res['versions'].get('trl')}.", "",
             "| figure | value |", "|---|---|"]
    lines += [f"| {k} | {v} |" for k, v in rows]
    lines += ["", res["method"], ""]
    if res["notes"]:
        lines += [f"Note: {n}" for n in res["notes"]] + [""]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--steps", type=int, default=None, help="timed SFT steps after the warm-up ones (default 20; 2 with --small)")
    ap.add_argument("--small", action="store_true", help="a ~1M-parameter model and a few steps (CPU smoke test)")
    ap.add_argument("--json", default=None, help="write all figures as JSON to this path")
    ap.add_argument("--append", default=None, help="append a dated markdown section to this file (e.g. BENCHMARKS.md)")
    ap.add_argument("--parts", default="matmul,sft,grpo,judge,vllm",
                    help="comma-separated parts to run (default all: matmul,sft,grpo,judge,vllm)")
    args = ap.parse_args(argv)
    cfg = dict(SMALL if args.small else FULL)
    steps = args.steps if args.steps is not None else (2 if args.small else 20)

    notes: list[str] = []
    device = "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cuda":
        name = torch.cuda.get_device_name(0)
        bf16 = torch.cuda.is_bf16_supported()
        if not bf16:
            notes.append("this GPU does not support bf16: ran in float32")
    else:
        name = f"CPU ({platform.processor() or platform.machine()}, {os.cpu_count()} cores)"
        bf16 = False
        notes.append("no CUDA device: ran in float32 on the CPU (no bf16 there); MFU against the H200 spec is "
                     "not computed, only against the matmul measured here in float32")
    if device == "cpu" and args.small:
        # A CPU smoke test: one torch thread, so a busy machine's cores do not turn OpenMP's spin-waits
        # into 10x slower small ops.
        torch.set_num_threads(1)
        notes.append("CPU smoke test: one torch thread")
    if not args.small and device != "cuda":
        notes.append("full-size config on a CPU: this will be very slow")
    dtype = torch.bfloat16 if bf16 else torch.float32
    torch.backends.cuda.matmul.allow_tf32 = True

    versions = {"python": platform.python_version(), "torch": torch.__version__,
                "cuda": torch.version.cuda}
    for mod in ("transformers", "trl", "datasets", "accelerate", "peft", "vllm"):
        try:
            versions[mod] = __import__(mod).__version__
        except Exception:  # noqa: BLE001
            versions[mod] = None
    log(f"device {name}, dtype {dtype}, versions {versions}")
    if versions.get("datasets"):
        try:
            import pyarrow

            where = pyarrow.__file__ or ""
        except Exception:  # noqa: BLE001 - only a hint; the SFT/GRPO parts report the real error
            where = "site-packages"
        if "site-packages" not in where and not os.path.realpath(where).startswith(os.path.realpath(sys.prefix)):
            # The serializer behind datasets' fingerprint hasher pickles a module by reference only when its file is
            # under sys.prefix or a path containing "site-packages"; a pyarrow elsewhere makes
            # `Dataset.from_*` fail with "Can't pickle <class 'MonthDayNano'>".
            notes.append(f"pyarrow is imported from {where}, outside sys.prefix and any 'site-packages' path: "
                         "if building a Dataset fails with a pickling error, install the wheels into a "
                         "directory whose path contains site-packages")
            log(f"WARNING: {notes[-1]}")

    res = {"date": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"), "device": name,
           "dtype": str(dtype).removeprefix("torch."), "small": args.small, "argv": sys.argv[1:] if argv is None else argv,
           "versions": versions, "peak_bf16_flops_assumed": H200_PEAK_BF16, "notes": notes, "model": {},
           "results": {}}
    t_start = time.perf_counter()

    log("training the byte-level BPE tokenizer on synthetic text")
    rng = random.Random(0)
    lexicon = synthetic_words(rng, 30000 if not args.small else 2000)
    per = 200
    texts = [synthetic_text(rng, lexicon, per) for _ in range(cfg["tokenizer_words"] // per)]
    t0 = time.perf_counter()
    tokenizer = train_tokenizer(texts, cfg["vocab"])
    tokenizer.padding_side = "left"
    log(f"tokenizer: {len(tokenizer)} tokens (asked {cfg['vocab']}) in {time.perf_counter() - t0:.1f}s")
    config = qwen2_config(cfg, tokenizer)
    with torch.device("meta"):
        from transformers import Qwen2ForCausalLM

        counts = param_counts(Qwen2ForCausalLM(config))
    res["model"] = {"arch": "Qwen2ForCausalLM", "init": "random", "vocab": len(tokenizer), "vocab_asked": cfg["vocab"],
                    "hidden": cfg["hidden"], "layers": cfg["layers"], "heads": cfg["heads"], "kv_heads": cfg["kv_heads"],
                    "intermediate": cfg["intermediate"], "tied_embeddings": True,
                    "attn_implementation": "sdpa (transformers default)", **counts}
    log(f"model: {counts['params']:,} parameters ({counts['params_non_embedding']:,} non-embedding)")

    ctx = {"cfg": cfg, "device": device, "dtype": dtype, "bf16": bf16, "steps": steps, "tokenizer": tokenizer,
           "config": config, "lexicon": lexicon, "results": res["results"]}
    parts = [("matmul", part_matmul), ("sft", part_sft), ("grpo", part_grpo), ("judge", part_judge), ("vllm", part_vllm)]
    wanted = {p.strip() for p in args.parts.split(",") if p.strip()}
    unknown = wanted - {k for k, _ in parts}
    if unknown:
        ap.error(f"unknown parts {sorted(unknown)}")
    for key, fn in parts:
        if key not in wanted:
            continue
        log(f"--- {key}")
        reset_memory(device)
        t0 = time.perf_counter()
        try:
            out = fn(ctx)
        except Exception as exc:  # noqa: BLE001 - one part failing must not lose the others
            traceback.print_exc()
            out = {"error": f"{type(exc).__name__}: {exc}"[:500]}
        out["wall_s"] = round(time.perf_counter() - t0, 1)
        if key != "vllm":
            out["peak_memory_gib"] = peak_memory_gib(device)
        res["results"][key] = out
        log(f"{key}: {json.dumps(out)}")
        reset_memory(device)

    res["total_wall_s"] = round(time.perf_counter() - t_start, 1)
    res["method"] = (
        f"How measured: one run. Matmul: median of {cfg['matmul_reps']} timed {cfg['matmul_n']}^3 products after 3 "
        f"warm-up ones, 2n^3 FLOP each. SFT: {cfg['warmup']} warm-up + {steps} timed optimizer steps of batch "
        f"{cfg['sft_batch']} x {cfg['seq_len']} random tokens, step time between synchronized step ends, median; "
        f"MFU = 6 x params x tokens/s / {H200_PEAK_BF16 / 1e12:.1f}e12 (H200 dense bf16 spec; all parameters incl. "
        f"the tied embedding, attention-score FLOPs not counted). GRPO: {cfg['grpo_steps']} steps, median over all "
        f"but the first; generated tokens counted from the completion ids TRL passes to the reward, generate time "
        f"by wrapping `GenerationMixin.generate`. Judging: {cfg['judge_pairs']} rendered judge prompts "
        f"(evidence off), one warm-up batch first, then the whole set once per batch size. Peak memory: "
        f"`torch.cuda.max_memory_allocated`, reset before each part.")
    text = json.dumps(res, indent=2)
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(text + "\n")
        log(f"wrote {args.json}")
    md = markdown(res)
    if args.append:
        p = Path(args.append)
        prefix = "\n" if p.exists() and p.read_text().strip() else ""
        with p.open("a") as f:
            f.write(prefix + md)
        log(f"appended a section to {args.append}")
    print(md, flush=True)
    failed = [k for k, v in res["results"].items() if "error" in v]
    log(f"done in {res['total_wall_s']}s; failed parts: {failed or 'none'}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
