"""Read exemplars from the three supported input formats into validated `Exemplar` records.

Formats (README, "Record shapes"): exemplar JSONL; the author-grouped JSON of the PersRM-R1 reference code
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


def read_exemplars(src: str | Path, min_texts_per_author: int = 1) -> list[Exemplar]:
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


def ingest(src: str | Path, out: str | Path, min_texts_per_author: int = 1) -> list[Exemplar]:
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


def _split_levels(root: Path) -> list[Path]:
    """The `train/`, `test/`, ... levels when every sub-directory of `root` is one; else []."""
    subdirs = sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    return subdirs if subdirs and all(p.name.lower() in SPLIT_LEVELS for p in subdirs) else []


def _author_dirs(root: Path) -> list[tuple[str, Path]]:
    if levels := _split_levels(root):
        return [(a.name, a) for level in levels for a in sorted(level.iterdir())
                if a.is_dir() and not a.name.startswith(".")]
    return [(p.name, p) for p in sorted(root.iterdir()) if p.is_dir() and not p.name.startswith(".")]


def _read_folder(root: Path, author: str, folder: Path) -> list[Exemplar]:
    out = []
    for f in sorted(folder.glob("*.txt")):
        if not f.is_file():
            raise InputError(f, "is a directory, not a .txt file")
        text = _check_text(_decode(f, f.read_bytes()), f, None)
        out.append(Exemplar(author, text, source=str(f.relative_to(root))))
    return out


def _read_author_dirs(root: Path) -> list[Exemplar]:
    out = [e for author, folder in _author_dirs(root) for e in _read_folder(root, author, folder)]
    if not out:
        raise InputError(root, "no .txt files found in author sub-directories (expected ROOT/<author>/*.txt)")
    return out


def list_authors(src: str | Path) -> list[str]:
    """The author ids `src` holds, sorted. A directory is listed without reading its texts (an
    author is a sub-directory with at least one `.txt`); a file is read and validated."""
    src = Path(src)
    if src.is_dir():
        return sorted({a for a, folder in _author_dirs(src) if any(folder.glob("*.txt"))})
    return sorted({e.author_id for e in read_exemplars(src, min_texts_per_author=1)})


def read_authors(src: str | Path, authors: list[str], min_texts_per_author: int = 1) -> dict[str, list[Exemplar]]:
    """Read and validate the texts of `authors` only. In a directory only their sub-directories are
    read, so one author's texts can be ingested while another's are still being written; a file
    is read once. An author without texts is an error naming the source and the author."""
    src = Path(src)
    got: dict[str, list[Exemplar]] = {a: [] for a in authors}
    if src.is_dir():
        for author, folder in _author_dirs(src):
            if author in got:
                got[author] += _read_folder(src, author, folder)
    else:
        for e in read_exemplars(src, min_texts_per_author=1):
            if e.author_id in got:
                got[e.author_id].append(e)
    for author in authors:
        if not got[author]:
            raise InputError(src, "no texts by this author (expected a sub-directory <author>/ with .txt files)"
                             if src.is_dir() else "no records by this author", f"author {author!r}")
        _check_collection(src, got[author], min_texts_per_author)
    return got


def _incoming_files(folder: Path) -> list[Path]:
    """The `.txt` files (not hidden) an incoming author folder holds, sorted; [] without the folder."""
    if not folder.is_dir():
        return []
    return [f for f in sorted(folder.glob("*.txt")) if f.is_file() and not f.name.startswith(".")]


def incoming_authors(incoming: str | Path) -> list[str]:
    """The authors (sub-folders of the incoming folder, not hidden) with texts waiting to land."""
    incoming = Path(incoming)
    if not incoming.is_dir():
        return []
    return sorted(p.name for p in incoming.iterdir() if not p.name.startswith(".") and _incoming_files(p))


def land_incoming(incoming: str | Path, raw: str | Path, author: str) -> list[str]:
    """Copy the `.txt` files of `incoming/<author>/` into the raw directory's `<author>/` folder
    (every file is validated first, each copy is atomic; a file already there with the same bytes
    is skipped). Returns the names copied. `raw` must be a directory (the folder-per-author layout)."""
    from persrm_core.atomic import atomic_path

    folder = Path(incoming) / author
    files = _incoming_files(folder)
    raw = Path(raw)
    if files and raw.exists() and not raw.is_dir():
        raise InputError(raw, f"new texts for author {author!r} wait in {folder}, but paths.raw is a file; "
                              "incoming texts are landed only into a folder-per-author directory")
    contents = {f: f.read_bytes() for f in files}
    for f, data in contents.items():  # all or nothing: validate every file before copying any
        _check_text(_decode(f, data), f, None)
    levels = _split_levels(raw) if raw.is_dir() else []
    if levels:  # train/<author>/ layouts: where the author already is, else the first level
        dest = next((level / author for level in levels if (level / author).is_dir()), levels[0] / author)
    else:
        dest = raw / author
    landed = []
    for f, data in contents.items():
        target = dest / f.name
        if target.is_file() and target.read_bytes() == data:
            continue
        target.parent.mkdir(parents=True, exist_ok=True)
        with atomic_path(target) as tmp:
            tmp.write_bytes(data)
        landed.append(f.name)
    return landed


def _check_collection(src: Path, exemplars: list[Exemplar], min_texts: int) -> None:
    if not exemplars:
        raise InputError(src, "no exemplar records")
    counts = Counter(e.author_id for e in exemplars)
    for author, n in sorted(counts.items()):
        if n < min_texts:
            raise InputError(src, f"author has {n} text(s); at least {min_texts} are needed "
                                  "(one to judge, the rest as exemplars)", f"author {author!r}")
