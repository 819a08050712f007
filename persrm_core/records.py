"""Record shapes (exemplar, pair, judgment; README, "Record shapes") and their strict validation."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from persrm_core.errors import InputError

LABELS = ("A", "B")


@dataclass(frozen=True)
class Exemplar:
    author_id: str
    text: str
    source: str | None = None
    meta: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {"author_id": self.author_id, "text": self.text}
        if self.source is not None:
            d["source"] = self.source
        if self.meta:
            d["meta"] = self.meta
        return d


@dataclass(frozen=True)
class Pair:
    pair_id: str
    author_id: str
    exemplars: list[str]
    prompt: str
    response_a: str
    response_b: str
    label: str | None  # None: an unlabelled pair (`persrm judge`); evaluation needs it
    negative_type: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @property
    def chosen(self) -> str:
        return self.response_a if self.label == "A" else self.response_b

    @property
    def rejected(self) -> str:
        return self.response_b if self.label == "A" else self.response_a


def parse_json(text: str, path: str | Path, record: str | int | None) -> Any:
    """json.loads that turns every way a text can fail to be JSON (syntax, a number over
    Python's digit limit, nesting past the recursion limit) into one InputError."""
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise InputError(path, f"invalid JSON ({exc.msg})", record if record is not None else f"line {exc.lineno}") \
            from None
    except (ValueError, RecursionError) as exc:
        raise InputError(path, f"invalid JSON ({type(exc).__name__}: {str(exc)[:80]})", record) from None


def check_unicode(value: str, path: str | Path, record: str | int | None, what: str) -> str:
    """Refuse strings that cannot be written back as UTF-8 (lone surrogates from \\ud83d escapes)."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise InputError(path, f"{what} is not valid Unicode (lone surrogate)", record) from None
    return value


def jsonl_lines(path: Path) -> list[str]:
    """The lines of a UTF-8 JSONL file, split on newlines only (str.splitlines would also split
    inside a record at U+2028 and other separators that JSON strings may hold raw)."""
    data = path.read_bytes()
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise InputError(path, f"not valid UTF-8 (byte {exc.start})", f"line {line}") from None
    return [ln[:-1] if ln.endswith("\r") else ln for ln in text.split("\n")]


def _require_str(obj: dict, key: str, path: str | Path, record: str | int, *, nonblank: bool = True,
                 optional: bool = False) -> str | None:
    if key not in obj or obj[key] is None:
        if optional:
            return None
        raise InputError(path, f"missing required field '{key}'", record)
    value = obj[key]
    if not isinstance(value, str):
        raise InputError(path, f"field '{key}' must be a string, got {type(value).__name__}", record)
    if nonblank and not value.strip():
        raise InputError(path, f"field '{key}' is empty or whitespace", record)
    return check_unicode(value, path, record, f"field '{key}'")


def exemplar_from_dict(obj: Any, path: str | Path, record: str | int) -> Exemplar:
    if not isinstance(obj, dict):
        raise InputError(path, f"expected a JSON object, got {type(obj).__name__}", record)
    author = _require_str(obj, "author_id", path, record)
    text = _require_str(obj, "text", path, record)
    source = _require_str(obj, "source", path, record, nonblank=False, optional=True)
    meta = obj.get("meta") or {}
    if not isinstance(meta, dict):
        raise InputError(path, "field 'meta' must be an object", record)
    return Exemplar(author_id=author.strip(), text=text.strip(), source=source, meta=meta)


def pair_from_dict(obj: Any, path: str | Path, record: str | int, require_label: bool = True) -> Pair:
    if not isinstance(obj, dict):
        raise InputError(path, f"expected a JSON object, got {type(obj).__name__}", record)
    fields = {k: _require_str(obj, k, path, record)
              for k in ("pair_id", "author_id", "prompt", "response_a", "response_b")}
    label = obj.get("label")
    if label not in LABELS and (require_label or label is not None):
        raise InputError(path, f"field 'label' must be \"A\" or \"B\", got {label!r}", record)
    exemplars = obj.get("exemplars")
    if not isinstance(exemplars, list) or not exemplars:
        raise InputError(path, "field 'exemplars' must be a non-empty list of strings", record)
    for i, ex in enumerate(exemplars):
        if not isinstance(ex, str) or not ex.strip():
            raise InputError(path, f"exemplars[{i}] must be a non-empty string", record)
        check_unicode(ex, path, record, f"exemplars[{i}]")
    neg = _require_str(obj, "negative_type", path, record, nonblank=False, optional=True)
    return Pair(exemplars=list(exemplars), label=label, negative_type=neg, **fields)  # type: ignore[arg-type]


def read_pairs(path: str | Path, require_label: bool = True) -> list[Pair]:
    """Read pair records from JSONL or Parquet, refusing the first bad record by file and line.
    With `require_label=False` a record may leave `label` out (or null): judging needs no label."""
    path = Path(path)
    if not path.is_file():
        raise InputError(path, "no such file")
    if path.suffix == ".parquet":
        import polars as pl

        try:
            rows = pl.read_parquet(path).to_dicts()
        except Exception as exc:  # noqa: BLE001 - polars raises many types for a bad file
            raise InputError(path, f"not a readable Parquet file ({exc.__class__.__name__})") from None
        return [pair_from_dict(r, path, f"row {i}", require_label) for i, r in enumerate(rows)]
    pairs, seen = [], set()
    for lineno, line in enumerate(jsonl_lines(path), start=1):
        if not line.strip():
            continue
        pair = pair_from_dict(parse_json(line, path, f"line {lineno}"), path, f"line {lineno}", require_label)
        if pair.pair_id in seen:
            raise InputError(path, f"duplicate pair_id {pair.pair_id!r}", f"line {lineno}")
        seen.add(pair.pair_id)
        pairs.append(pair)
    if not pairs:
        raise InputError(path, "no pair records")
    return pairs
