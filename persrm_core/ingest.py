"""Read exemplars from the three supported input formats into validated `Exemplar` records.

Formats (CONTRACTS.md): exemplar JSONL; the author-grouped JSON of the PersRM-R1 reference code
(`{"<author>": [{"prompt": ..., "output": ...}, ...]}`, text = prompt + output); and a directory
with one sub-directory per author holding `.txt` files, optionally below `train/` and `test/`.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

from persrm_core.atomic import write_jsonl
from persrm_core.errors import InputError
from persrm_core.records import Exemplar, check_unicode, exemplar_from_dict, jsonl_lines, parse_json

SPLIT_LEVELS = ("train", "test", "dev", "valid", "validation")
MAX_TEXT_CHARS = 200_000


def read_exemplars(src: str | Path, min_texts_per_author: int = 2) -> list[Exemplar]:
    """Read and validate exemplars from `src` in any supported format (chosen by its shape)."""
    src = Path(src)
    if src.is_dir():
        exemplars = _read_author_dirs(src)
    elif not src.exists():
        raise InputError(src, "no such file or directory")
    elif src.suffix == ".jsonl":
        exemplars = _read_jsonl(src)
    elif src.suffix == ".json":
        exemplars = _read_grouped_json(src)
    else:
        raise InputError(src, "unsupported input: expected a .jsonl file, a .json file or a directory")
    _check_collection(src, exemplars, min_texts_per_author)
    return exemplars


def ingest(src: str | Path, out: str | Path, min_texts_per_author: int = 2) -> list[Exemplar]:
    """Validate everything first, then write the exemplar JSONL atomically."""
    exemplars = read_exemplars(src, min_texts_per_author)
    write_jsonl(out, (e.to_dict() for e in exemplars))
    return exemplars


def _decode(path: Path, data: bytes) -> str:
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise InputError(path, f"not valid UTF-8 (byte {exc.start})", f"line {line}") from None


def _check_text(text: str, path: Path, record: str | int) -> str:
    text = text.replace("\r\n", "\n").strip()
    if not text:
        raise InputError(path, "text is empty or whitespace", record)
    if len(text) > MAX_TEXT_CHARS:
        raise InputError(path, f"text is {len(text)} characters, over the {MAX_TEXT_CHARS} limit", record)
    if "\x00" in text:
        raise InputError(path, "text contains NUL bytes", record)
    return check_unicode(text, path, record, "text")


def _read_jsonl(path: Path) -> list[Exemplar]:
    out = []
    for lineno, line in enumerate(jsonl_lines(path), start=1):
        if not line.strip():
            continue
        record = f"line {lineno}"
        ex = exemplar_from_dict(parse_json(line, path, record), path, record)
        out.append(Exemplar(ex.author_id, _check_text(ex.text, path, record), ex.source, ex.meta))
    return out


def _read_grouped_json(path: Path) -> list[Exemplar]:
    data = parse_json(_decode(path, path.read_bytes()), path, None)
    if not isinstance(data, dict):
        raise InputError(path, "expected an object mapping author ids to lists of {prompt, output}")
    out = []
    for author, items in data.items():
        if not author.strip():
            raise InputError(path, "empty author id", repr(author))
        ref = author if author.isprintable() else repr(author)  # keep the error on one line
        if not isinstance(items, list):
            raise InputError(path, "expected a list of {prompt, output} objects", ref)
        for i, item in enumerate(items):
            record = f"{ref}[{i}]"
            if not isinstance(item, dict):
                raise InputError(path, "expected an object with 'prompt' and 'output'", record)
            for key in ("prompt", "output"):
                if not isinstance(item.get(key), str):
                    raise InputError(path, f"field '{key}' must be a string", record)
            prompt, output = item["prompt"].strip(), item["output"].strip()
            text = _check_text(f"{prompt} {output}".strip(), path, record)
            out.append(Exemplar(author.strip(), text, source=f"{path.name}#{record}"))
    return out


def _author_dirs(root: Path) -> list[tuple[str, Path]]:
    subdirs = sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    if subdirs and all(p.name.lower() in SPLIT_LEVELS for p in subdirs):
        return [(a.name, a) for level in subdirs for a in sorted(level.iterdir())
                if a.is_dir() and not a.name.startswith(".")]
    return [(p.name, p) for p in subdirs]


def _read_author_dirs(root: Path) -> list[Exemplar]:
    out = []
    for author, folder in _author_dirs(root):
        for f in sorted(folder.glob("*.txt")):
            if not f.is_file():
                raise InputError(f, "is a directory, not a .txt file")
            text = _check_text(_decode(f, f.read_bytes()), f, None)
            out.append(Exemplar(author, text, source=str(f.relative_to(root))))
    if not out:
        raise InputError(root, "no .txt files found in author sub-directories (expected ROOT/<author>/*.txt)")
    return out


def _check_collection(src: Path, exemplars: list[Exemplar], min_texts: int) -> None:
    if not exemplars:
        raise InputError(src, "no exemplar records")
    counts = Counter(e.author_id for e in exemplars)
    for author, n in sorted(counts.items()):
        if n < min_texts:
            raise InputError(src, f"author has {n} text(s); at least {min_texts} are needed "
                                  "(one to judge, the rest as exemplars)", f"author {author!r}")
