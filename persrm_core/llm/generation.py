"""Text generation behind one interface, and a request cache that makes long runs resumable.

A `Backend` turns chat requests into texts: `OpenAIBackend` (any OpenAI-compatible server: a
hosted API or a local `vllm serve`), `TransformersBackend` (any Hugging Face checkpoint, CPU or
CUDA) or `VLLMBackend` (in-process vLLM on a GPU). `generate_cached` sends only the requests whose
key (backend, model, template, messages, sampling parameters) has no answer yet in an append-only
JSONL cache, and appends each chunk's answers as soon as they arrive: a run killed half-way and
started again redoes only what is missing.

API keys are read from the environment at request time and never stored on a backend, so they
cannot appear in its repr, in an exception message or in a log line.
"""

from __future__ import annotations

import email.utils
import hashlib
import json
import logging
import os
import random
import threading
import time
from collections.abc import Sequence
from concurrent.futures import FIRST_EXCEPTION, ThreadPoolExecutor, wait
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Protocol

from tqdm.auto import tqdm

from persrm_core.errors import InputError

log = logging.getLogger(__name__)

RETRY_STATUSES = frozenset({408, 429}) | frozenset(range(500, 600))
MAX_RETRY_AFTER_S = 120.0  # a server asking for longer than this is waited for this long


@dataclass(frozen=True)
class SamplingParams:
    temperature: float = 0.8
    top_p: float = 0.95
    max_tokens: int = 256
    seed: int = 0


@dataclass(frozen=True)
class GenRequest:
    """One chat request. `template` names the prompt template that made it (part of the cache
    key); `meta` is the caller's bookkeeping and is part of neither the key nor equality."""

    messages: tuple[dict, ...]
    template: str
    meta: dict | None = field(default=None, compare=False)


class Backend(Protocol):
    name: str
    model: str

    def generate(self, requests: list[GenRequest], params: SamplingParams) -> list[str]: ...


class GenerationError(RuntimeError):
    """A generation request that failed for good (a client error, or retries used up)."""


# --- OpenAI-compatible servers --------------------------------------------------------------------

def _redact(text: str, secret: str | None) -> str:
    return text.replace(secret, "***") if secret else text


def _server_message(response: Any) -> str:
    """The error message a server put in its body (OpenAI's {"error": {"message"}} or vLLM's
    variants), else the start of the raw body."""
    try:
        body = response.json()
    except ValueError:
        return response.text[:300].strip()
    if isinstance(body, dict):
        err = body.get("error", body.get("detail", body.get("message")))
        if isinstance(err, dict):
            err = err.get("message", err)
        if err is not None:
            return str(err)[:300]
    return str(body)[:300]


def _retry_after(response: Any) -> float | None:
    """Seconds from a Retry-After header (delta-seconds, lenient to fractions, or an HTTP date)."""
    value = response.headers.get("retry-after")
    if not value:
        return None
    try:
        return max(float(value), 0.0)
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(when.timestamp() - time.time(), 0.0)


class OpenAIBackend:
    """Any OpenAI-compatible chat-completions server (`POST {base_url}/chat/completions`).

    Requests run `concurrency` at a time. Connection errors, timeouts, 408, 429 and 5xx are
    retried up to `max_retries` times with exponential backoff and jitter (or the server's
    Retry-After); any other 4xx fails at once, naming the status and the server's message.
    The key comes from `api_key_env` at each request; with the variable unset no Authorization
    header is sent (fine for a local `vllm serve`)."""

    name = "openai"

    def __init__(self, base_url: str, model: str, api_key_env: str = "OPENAI_API_KEY", concurrency: int = 8,
                 timeout_s: float = 60, max_retries: int = 5, backoff_s: float = 1.0):
        if concurrency < 1 or max_retries < 0:
            raise ValueError("concurrency must be >= 1 and max_retries >= 0")
        self.base_url = base_url.rstrip("/")
        self.model = model
        self.api_key_env = api_key_env
        self.concurrency = concurrency
        self.timeout_s = timeout_s
        self.max_retries = max_retries
        self.backoff_s = backoff_s

    def __repr__(self) -> str:
        return (f"OpenAIBackend(base_url={self.base_url!r}, model={self.model!r}, "
                f"api_key_env={self.api_key_env!r}, concurrency={self.concurrency})")

    @property
    def url(self) -> str:
        return f"{self.base_url}/chat/completions"

    def generate(self, requests: list[GenRequest], params: SamplingParams) -> list[str]:
        import httpx

        if not requests:
            return []
        key = os.environ.get(self.api_key_env) or None
        headers = {"Content-Type": "application/json"}
        if key:
            headers["Authorization"] = f"Bearer {key}"
        limits = httpx.Limits(max_connections=self.concurrency, max_keepalive_connections=self.concurrency)
        stop = threading.Event()  # set on the first failure: the other requests stop retrying
        with httpx.Client(timeout=self.timeout_s, limits=limits) as client, \
                ThreadPoolExecutor(max_workers=min(self.concurrency, len(requests))) as pool:
            futures = [pool.submit(self._one, client, headers, key, req, params, stop) for req in requests]
            try:
                done, _ = wait(futures, return_when=FIRST_EXCEPTION)
                failed = [f.exception() for f in futures if f in done and f.exception() is not None]
                if failed:
                    raise failed[0]
                return [f.result() for f in futures]
            except BaseException:
                stop.set()
                for f in futures:
                    f.cancel()
                raise

    def _one(self, client: Any, headers: dict, key: str | None, req: GenRequest, params: SamplingParams,
             stop: threading.Event) -> str:
        import httpx

        body = {"model": self.model, "messages": list(req.messages), "temperature": params.temperature,
                "top_p": params.top_p, "max_tokens": params.max_tokens, "seed": params.seed}
        problem = ""
        for attempt in range(self.max_retries + 1):
            if stop.is_set():
                raise GenerationError(f"{self.url}: abandoned after another request of the batch failed")
            delay = None
            try:
                response = client.post(self.url, headers=headers, json=body)
            except httpx.TransportError as exc:  # connection refused/reset, timeouts
                problem = _redact(f"{type(exc).__name__}: {exc}", key)
            else:
                if response.status_code < 400:
                    return self._content(response, key)
                problem = _redact(f"HTTP {response.status_code}: {_server_message(response)}", key)
                if response.status_code not in RETRY_STATUSES:
                    raise GenerationError(f"{self.url} refused the request ({problem})") from None
                delay = _retry_after(response)
            if attempt == self.max_retries:
                break
            if delay is None:
                delay = self.backoff_s * 2 ** attempt * (0.5 + random.random())
            delay = min(delay, MAX_RETRY_AFTER_S)
            log.warning("%s: %s; retry %d/%d in %.1fs", self.url, problem, attempt + 1, self.max_retries, delay)
            stop.wait(delay)
        raise GenerationError(f"{self.url} failed after {self.max_retries + 1} attempts (last: {problem})")

    def _content(self, response: Any, key: str | None) -> str:
        try:
            content = response.json()["choices"][0]["message"]["content"]
        except (ValueError, KeyError, IndexError, TypeError):
            raise GenerationError(f"{self.url} answered without choices[0].message.content: "
                                  f"{_redact(response.text[:200], key)!r}") from None
        return content or ""


# --- Hugging Face transformers -------------------------------------------------------------------

class TransformersBackend:
    """Any Hugging Face checkpoint (path or hub id), batched with left padding and the tokenizer's
    chat template. Greedy at temperature 0; otherwise sampled with the torch RNG seeded from
    `params.seed` and the batch index, inside a forked RNG state so the caller's is untouched
    (a sample therefore depends on which batch it was in, as batched sampling always does)."""

    name = "transformers"

    def __init__(self, model: str, dtype: str = "float32", batch_size: int = 8, trust_remote_code: bool = False):
        import torch

        from persrm_core.llm.model import load_model, load_tokenizer

        self.model = str(model)  # the name as configured: part of every cache key, so no machine path in it
        self.batch_size = batch_size
        self.device = "cuda" if torch.cuda.is_available() else "cpu"
        self.tokenizer = load_tokenizer(self.model, trust_remote_code=trust_remote_code)
        self.tokenizer.padding_side = "left"
        self.lm = load_model(self.model, dtype=dtype, trust_remote_code=trust_remote_code).to(self.device).eval()

    def __repr__(self) -> str:
        return f"TransformersBackend(model={self.model!r}, device={self.device!r}, batch_size={self.batch_size})"

    def prompt_text(self, messages) -> str:
        """The text the model continues for a chat: the tokenizer's chat template, generation prompt added."""
        return self.tokenizer.apply_chat_template(list(messages), tokenize=False, add_generation_prompt=True)

    def generate(self, requests: list[GenRequest], params: SamplingParams, desc: str | None = None) -> list[str]:
        """One answer per request, stripped; `desc` names a progress bar over the batches."""
        import torch
        from tqdm.auto import tqdm

        outputs: list[str] = []
        tok = self.tokenizer
        starts = range(0, len(requests), self.batch_size)
        for b, start in enumerate(tqdm(starts, desc=desc, unit="batch", disable=desc is None)):
            batch = requests[start:start + self.batch_size]
            prompts = [self.prompt_text(r.messages) for r in batch]
            enc = tok(prompts, return_tensors="pt", padding=True, add_special_tokens=False).to(self.device)
            # stop at the chat turn's end (the tokenizer's eos), whatever the model's generation_config says
            kwargs: dict[str, Any] = {"max_new_tokens": params.max_tokens, "pad_token_id": tok.pad_token_id,
                                      "eos_token_id": tok.eos_token_id}
            if params.temperature > 0:
                kwargs.update(do_sample=True, temperature=params.temperature, top_p=params.top_p)
            else:
                kwargs.update(do_sample=False, temperature=None, top_p=None, top_k=None)
            devices = [torch.cuda.current_device()] if self.device == "cuda" else []
            with torch.random.fork_rng(devices=devices), torch.inference_mode():
                torch.manual_seed(params.seed * 100_003 + b)
                out = self.lm.generate(**enc, **kwargs)
            new = out[:, enc["input_ids"].shape[1]:]
            outputs += [t.strip() for t in tok.batch_decode(new, skip_special_tokens=True)]
        return outputs


# --- vLLM in process ------------------------------------------------------------------------------

class VLLMBackend:
    """In-process vLLM (GPU only; vllm is the optional `gpu` extra)."""

    name = "vllm"

    def __init__(self, model: str, dtype: str = "bfloat16", tensor_parallel_size: int = 1,
                 gpu_memory_utilization: float = 0.85, trust_remote_code: bool = False):
        try:
            from vllm import LLM
        except ImportError as exc:
            raise RuntimeError("the vllm backend needs vLLM, which is not installed: install the gpu extra "
                               "(`pip install -e .[gpu]`) on a CUDA machine, or use the 'openai' backend "
                               f"against a `vllm serve` server ({type(exc).__name__}: {exc})") from None
        from persrm_core.llm.bundled_lm import locate

        self.model = str(model)  # the name as configured (cache keys); vLLM loads the located folder
        self.llm = LLM(model=locate(model), dtype=dtype, tensor_parallel_size=tensor_parallel_size,
                       gpu_memory_utilization=gpu_memory_utilization, trust_remote_code=trust_remote_code)

    def __repr__(self) -> str:
        return f"VLLMBackend(model={self.model!r})"

    def generate(self, requests: list[GenRequest], params: SamplingParams, desc: str | None = None) -> list[str]:
        """One answer per request, stripped; vLLM schedules the whole list itself (`desc`: its progress bar)."""
        from vllm import SamplingParams as VLLMSamplingParams

        if not requests:
            return []
        sampling = VLLMSamplingParams(temperature=params.temperature, top_p=params.top_p,
                                      max_tokens=params.max_tokens, seed=params.seed)
        results = self.llm.chat([list(r.messages) for r in requests], sampling_params=sampling,
                                use_tqdm=desc is not None)
        return [r.outputs[0].text.strip() for r in results]


BACKENDS = {"openai": OpenAIBackend, "rules": None, "transformers": TransformersBackend, "vllm": VLLMBackend}


def make_backend(kind: str, **options: Any) -> Backend | None:
    """The backend of `kind` built with `options`; None for `rules` (offline strategies only)."""
    if kind not in BACKENDS:
        raise ValueError(f"unknown generation backend {kind!r} (known: {', '.join(sorted(BACKENDS))})")
    cls = BACKENDS[kind]
    return None if cls is None else cls(**options)


# --- the request cache ----------------------------------------------------------------------------

def request_key(backend: Backend, req: GenRequest, params: SamplingParams) -> str:
    """sha256 of a canonical JSON of what decides an answer (not `meta`)."""
    payload = [backend.name, backend.model, req.template, list(req.messages), asdict(params)]
    canon = json.dumps(payload, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(canon.encode("utf-8")).hexdigest()


class GenerationCache:
    """An append-only JSONL file of {"key", "text"} records. A record counts once its newline is
    written: an unterminated last line (a run killed mid-write) is ignored on load and cut off
    before the next append. Any other bad line is an InputError. One writer at a time."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self._texts: dict[str, str] = {}
        self._valid_bytes = 0
        if self.path.exists():
            self._load()

    def _load(self) -> None:
        data = self.path.read_bytes()
        self._valid_bytes = data.rfind(b"\n") + 1
        try:
            text = data[: self._valid_bytes].decode("utf-8")
        except UnicodeDecodeError as exc:
            raise InputError(self.path, f"not valid UTF-8 (byte {exc.start})") from None
        for lineno, line in enumerate(text.split("\n")[:-1], start=1):
            if not line.strip():
                continue
            try:
                rec = json.loads(line)
                self._texts[rec["key"]] = rec["text"]
            except (ValueError, KeyError, TypeError):
                raise InputError(self.path, "not a cache record {\"key\", \"text\"}", f"line {lineno}") from None

    def __len__(self) -> int:
        return len(self._texts)

    def __contains__(self, key: str) -> bool:
        return key in self._texts

    def get(self, key: str) -> str | None:
        return self._texts.get(key)

    def put_many(self, items: Sequence[tuple[str, str]]) -> None:
        """Append records, then flush and fsync, so they survive a kill right after."""
        if not items:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        blob = "".join(json.dumps({"key": k, "text": t}, ensure_ascii=False) + "\n" for k, t in items).encode()
        with open(self.path, "ab") as f:
            if f.tell() > self._valid_bytes:  # drop a torn tail so the new records start on a line
                f.truncate(self._valid_bytes)
            f.write(blob)
            f.flush()
            os.fsync(f.fileno())
            self._valid_bytes = f.tell()
        self._texts.update(items)


def generate_cached(backend: Backend, requests: Sequence[GenRequest], params: SamplingParams,
                    cache_path: str | Path, progress: bool = True, chunk_size: int | None = None) -> list[str]:
    """Outputs in request order. Requests already answered in the cache are not sent; identical
    requests are sent once; the rest go in chunks of `chunk_size`, each appended to the cache as
    soon as it returns. By default a chunk is one batch of a local backend (`backend.batch_size`:
    on a CPU each batch takes a minute, and the bar and the cache move with it), else 64 requests
    (what a server's concurrency gets to work on at once)."""
    chunk_size = chunk_size or getattr(backend, "batch_size", None) or 64
    cache = GenerationCache(cache_path)
    keys = [request_key(backend, r, params) for r in requests]
    todo: dict[str, GenRequest] = {}
    for k, r in zip(keys, requests):
        if k not in cache and k not in todo:
            todo[k] = r
    uses: dict[str, int] = {}
    for k in keys:
        uses[k] = uses.get(k, 0) + 1
    pending = list(todo.items())
    with tqdm(total=len(keys), initial=len(keys) - sum(uses[k] for k in todo), desc=f"generating ({backend.name})",
              unit="req", disable=not progress, dynamic_ncols=True) as bar:
        for start in range(0, len(pending), chunk_size):
            chunk = pending[start:start + chunk_size]
            texts = backend.generate([r for _, r in chunk], params)
            if len(texts) != len(chunk):
                raise GenerationError(f"{backend.name} returned {len(texts)} outputs for {len(chunk)} requests")
            cache.put_many([(k, t) for (k, _), t in zip(chunk, texts)])
            bar.update(sum(uses[k] for k, _ in chunk))
    return [cache.get(k) or "" for k in keys]
