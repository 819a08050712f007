"""Keep secrets out of logs, Dagster metadata and reports.

API keys are read from the environment at the moment of use (`persrm_core.llm.generation`), never from
params.yaml, so they should not reach any output; this module is the second line of defence:
whatever is about to be published (metadata, metrics, a log record) passes through `redact`, which
blanks values stored under secret-looking keys and any secret environment value that turns up
inside a string (an error message that echoed a header, a URL with a token).
"""

from __future__ import annotations

import logging
import os
import re
from typing import Any

# "token" is a secret only as the last word of a name (HF_TOKEN, access_token): metric and setting
# names that merely mention tokens (mean_token_accuracy_first, train_tokens_per_second,
# max_new_tokens, pad_token_id) stay visible.
SECRET_NAME = re.compile(r"(api[_-]?key|secret|token$|passw(or)?d|authorization|credential)", re.IGNORECASE)
NOT_SECRET = re.compile(r"(^max_|^num_|_tokens$|tokenizer|(pad|eos|bos|unk|sep|cls|mask)_token$)", re.IGNORECASE)
MASK = "***"
MIN_SECRET_LEN = 8  # shorter env values (e.g. "1", "true") would mask ordinary text


def secret_name(name: str) -> bool:
    """Whether a key or variable name looks like it holds a secret (`OPENAI_API_KEY`, `hf_token`),
    excluding the ML vocabulary that merely mentions tokens (`max_new_tokens`, `pad_token_id`)."""
    return bool(SECRET_NAME.search(name)) and not NOT_SECRET.search(name)


def secret_values(environ: dict[str, str] | None = None) -> list[str]:
    env = os.environ if environ is None else environ
    return sorted({v for k, v in env.items() if secret_name(k) and len(v) >= MIN_SECRET_LEN}, key=len, reverse=True)


def redact(obj: Any, secrets: list[str] | None = None) -> Any:
    """A copy of `obj` (dicts, lists, tuples, strings) with secrets masked."""
    secrets = secret_values() if secrets is None else secrets
    if isinstance(obj, dict):
        return {k: (MASK if isinstance(k, str) and secret_name(k) and v not in (None, "") else redact(v, secrets))
                for k, v in obj.items()}
    if type(obj) in (list, tuple):  # plain ones only: a NamedTuple would not rebuild from a generator
        return type(obj)(redact(v, secrets) for v in obj)
    if isinstance(obj, str):
        for s in secrets:
            obj = obj.replace(s, MASK)
        return re.sub(r"(?i)(bearer\s+)[A-Za-z0-9._\-]{8,}", r"\1" + MASK, obj)
    return obj


class RedactingFilter(logging.Filter):
    """A logging filter that masks secrets in a record's rendered message."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        cleaned = redact(message)
        if cleaned != message:
            record.msg, record.args = cleaned, ()
        return True


def install_log_redaction(logger_names: tuple[str, ...] = ("persrm_core", "orchestration", "assets", "httpx")) -> None:
    for name in logger_names:
        logger = logging.getLogger(name)
        if not any(isinstance(f, RedactingFilter) for f in logger.filters):
            logger.addFilter(RedactingFilter())
