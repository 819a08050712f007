"""Every command refuses every malformed input in tests/bad_inputs/ cleanly (README, "Command line"):
exit status 2, exactly one stderr line naming the file, the record where one applies, and the
problem; no traceback; nothing (not even a temporary file) left at or beside the output path.

Each committed case is a folder `tests/bad_inputs/<case>/` holding the input; `CASES` below says
which path inside it is passed to the command and what the one error line must say. A few cases
are generated at test time instead of committed (a 250k-character line, a 5000-digit number,
100k levels of nesting, a path that does not exist). Cases that the code does not yet refuse
cleanly are kept, marked `xfail(strict=True)` with the bug they show.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from orchestration.cli import main

REPO = Path(__file__).resolve().parent.parent
BAD = Path(__file__).resolve().parent / "bad_inputs"


@dataclass(frozen=True)
class Case:
    name: str
    kind: str  # "ingest" (exemplar inputs) or "pairs" (judge/evaluate --pairs)
    src: str  # the path passed to the command, relative to the case folder
    problem: str | re.Pattern  # a phrase the error line contains (or a pattern it matches)
    where: str | None = None  # the offending file, relative to the case folder (default: src)
    record: str | None = None  # the record / line the error names, where one applies
    bug: str | None = None  # set when the code does not refuse it cleanly yet
    generate: Callable[[Path], None] | None = field(default=None, compare=False)  # writes the input


def _jl(*rows) -> str:
    return "".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows)


GOOD_EX = {"author_id": "ann", "text": "Ann wrote this first."}
GOOD_PAIR = {"pair_id": "p1", "author_id": "ann", "exemplars": ["Ann wrote this.", "Ann again."],
             "prompt": "Write a note.", "response_a": "A note, Ann style.", "response_b": "a note",
             "label": "A"}


def _gen_huge_line(d: Path) -> None:
    (d / "exemplars.jsonl").write_text(_jl({"author_id": "ann", "text": "x" * 250_000}, GOOD_EX))


def _gen_huge_integer(d: Path) -> None:  # Python's int-parsing limit is 4300 digits
    (d / "exemplars.jsonl").write_text(_jl(GOOD_EX, '{"author_id": "ann", "text": ' + "7" * 5000 + "}"))


def _gen_deep_nesting(d: Path) -> None:
    (d / "authors.json").write_text("[" * 100_000 + "]" * 100_000)


def _gen_pairs_huge_integer(d: Path) -> None:
    (d / "pairs.jsonl").write_text(_jl(GOOD_PAIR, json.dumps(dict(GOOD_PAIR, pair_id="p2"))[:-1]
                                       + ', "extra": ' + "7" * 5000 + "}"))


def _gen_pairs_deep_nesting(d: Path) -> None:
    (d / "pairs.jsonl").write_text(_jl(GOOD_PAIR, "[" * 100_000 + "]" * 100_000))


def _gen_nothing(d: Path) -> None:
    pass


BUG_BIG_INT = ("BUG: json.loads raises ValueError (not JSONDecodeError) past 4300 digits; "
               "persrm_core/data/ingest.py:72,82 and records.py:116 catch only JSONDecodeError")
BUG_DEEP = ("BUG: json.loads raises RecursionError on deep nesting; persrm_core/data/ingest.py:72,82 "
            "and records.py:116 catch only JSONDecodeError")
BUG_SURROGATE = ("BUG: a JSON \\ud83d escape decodes to a lone surrogate that passes validation, then "
                 "UnicodeEncodeError when the output is written (atomic.py:59); records.py:_require_str "
                 "and ingest.py:_check_text do not check the string encodes as UTF-8")
NOT_UTF8 = re.compile(r"surrogate|UTF-8|Unicode", re.I)
INVALID_JSON = re.compile(r"invalid JSON|number|integer|digits|nest|deep", re.I)

CASES = [
    # --- exemplar JSONL
    Case("jsonl_invalid_json", "ingest", "exemplars.jsonl", "invalid JSON", record="line 3"),
    Case("jsonl_text_not_string", "ingest", "exemplars.jsonl", "field 'text' must be a string, got int",
         record="line 2"),
    Case("jsonl_missing_author_id", "ingest", "exemplars.jsonl", "missing required field 'author_id'",
         record="line 2"),
    Case("jsonl_empty_text", "ingest", "exemplars.jsonl", "field 'text' is empty or whitespace", record="line 2"),
    Case("jsonl_whitespace_text", "ingest", "exemplars.jsonl", "field 'text' is empty or whitespace",
         record="line 2"),
    Case("jsonl_non_utf8", "ingest", "exemplars.jsonl", "not valid UTF-8", record="line 2"),
    Case("jsonl_array_not_object", "ingest", "exemplars.jsonl", "expected a JSON object, got list",
         record="line 2"),
    Case("jsonl_nul_in_text", "ingest", "exemplars.jsonl", "text contains NUL bytes", record="line 2"),
    Case("jsonl_meta_not_object", "ingest", "exemplars.jsonl", "field 'meta' must be an object", record="line 2"),
    Case("jsonl_empty_file", "ingest", "exemplars.jsonl", "no exemplar records"),
    Case("jsonl_lone_surrogate", "ingest", "exemplars.jsonl", NOT_UTF8, record="line 2"),
    Case("gen_huge_line", "ingest", "exemplars.jsonl", "over the 200000 limit", record="line 1",
         generate=_gen_huge_line),
    Case("gen_huge_integer", "ingest", "exemplars.jsonl", INVALID_JSON, record="line 2",
         generate=_gen_huge_integer),
    Case("gen_missing_path", "ingest", "no_such_exemplars.jsonl", "no such file or directory",
         generate=_gen_nothing),
    # --- author-grouped JSON
    Case("grouped_not_a_list", "ingest", "authors.json", "expected a list of {prompt, output} objects",
         record="bob"),
    Case("grouped_missing_output", "ingest", "authors.json", "field 'output' must be a string", record="ann[1]"),
    Case("grouped_truncated", "ingest", "authors.json", "invalid JSON", record="line 1"),
    Case("grouped_top_level_array", "ingest", "authors.json", "expected an object mapping author ids"),
    Case("grouped_item_not_object", "ingest", "authors.json", "expected an object with 'prompt' and 'output'",
         record="ann[0]"),
    Case("grouped_empty_text", "ingest", "authors.json", "text is empty or whitespace", record="ann[1]"),
    Case("grouped_empty_author", "ingest", "authors.json", "empty author id", record="'  '"),
    Case("grouped_author_newline", "ingest", "authors.json", "expected a list of {prompt, output} objects",
         record="'bob\\nsmith'"),
    Case("gen_deep_nesting", "ingest", "authors.json", INVALID_JSON, generate=_gen_deep_nesting),
    # --- directory per author
    Case("dir_no_txt", "ingest", "authors", "no .txt files found"),
    Case("dir_empty_txt", "ingest", "authors", "text is empty or whitespace", where="authors/ann/02.txt"),
    Case("dir_non_utf8_txt", "ingest", "authors", "not valid UTF-8", where="authors/ann/02.txt", record="line 2"),
    Case("dir_nul_byte_txt", "ingest", "authors", "text contains NUL bytes", where="authors/ann/02.txt"),
    Case("dir_jsonl_only", "ingest", "authors", "no .txt files found"),
    Case("dir_split_levels_blank_txt", "ingest", "authors", "text is empty or whitespace",
         where="authors/test/ann/03.txt"),
    Case("dir_txt_is_directory", "ingest", "authors", re.compile(r"directory|not a (regular )?file", re.I),
         where="authors/ann/extra.txt"),
    Case("unsupported_csv", "ingest", "exemplars.csv", "unsupported input"),
    # --- pair records (judge / evaluate --pairs)
    Case("pairs_label_c", "pairs", "pairs.jsonl", "field 'label' must be \"A\" or \"B\", got 'C'", record="line 2"),
    Case("pairs_label_lowercase", "pairs", "pairs.jsonl", "field 'label' must be \"A\" or \"B\", got 'b'",
         record="line 2"),
    Case("pairs_missing_response_b", "pairs", "pairs.jsonl", "missing required field 'response_b'",
         record="line 2"),
    Case("pairs_exemplars_not_list", "pairs", "pairs.jsonl", "field 'exemplars' must be a non-empty list",
         record="line 2"),
    Case("pairs_exemplars_empty", "pairs", "pairs.jsonl", "field 'exemplars' must be a non-empty list",
         record="line 2"),
    Case("pairs_blank_exemplar", "pairs", "pairs.jsonl", "exemplars[1] must be a non-empty string",
         record="line 2"),
    Case("pairs_duplicate_pair_id", "pairs", "pairs.jsonl", "duplicate pair_id 'p1'", record="line 3"),
    Case("pairs_invalid_json", "pairs", "pairs.jsonl", "invalid JSON", record="line 2"),
    Case("pairs_non_utf8", "pairs", "pairs.jsonl", "not valid UTF-8", record="line 2"),
    Case("pairs_array_line", "pairs", "pairs.jsonl", "expected a JSON object, got list", record="line 2"),
    Case("pairs_empty_file", "pairs", "pairs.jsonl", "no pair records"),
    Case("pairs_bad_parquet", "pairs", "pairs.parquet", "not a readable Parquet file"),
    Case("pairs_lone_surrogate", "pairs", "pairs.jsonl", NOT_UTF8, record="line 2"),
    Case("gen_pairs_huge_integer", "pairs", "pairs.jsonl", INVALID_JSON, record="line 2",
         generate=_gen_pairs_huge_integer),
    Case("gen_pairs_deep_nesting", "pairs", "pairs.jsonl", INVALID_JSON, record="line 2",
         generate=_gen_pairs_deep_nesting),
    Case("gen_pairs_missing_path", "pairs", "no_such_pairs.jsonl", "no such file", generate=_gen_nothing),
]
BY_NAME = {c.name: c for c in CASES}
COMMANDS = {"ingest": ["ingest"], "pairs": ["judge", "evaluate"]}


def _params():
    for case in CASES:
        for command in COMMANDS[case.kind]:
            marks = [pytest.mark.xfail(strict=True, reason=case.bug)] if case.bug else []
            yield pytest.param(case, command, id=f"{command}-{case.name}", marks=marks)


def _materialize(case: Case, tmp_path: Path) -> Path:
    """Copy (or generate) the case's input into tmp_path/in; return that folder."""
    dest = tmp_path / "in"
    if case.generate is not None:
        dest.mkdir()
        case.generate(dest)
    else:
        shutil.copytree(BAD / case.name, dest)
    return dest


def _argv(command: str, src: Path, out: Path) -> list[str]:
    if command == "ingest":
        return ["ingest", str(src), "--out", str(out)]
    return [command, "--baseline", "random", "--pairs", str(src), "--out", str(out)]


def _out_path(command: str, tmp_path: Path) -> Path:
    return tmp_path / "out" / ("report" if command == "evaluate" else "result.jsonl")


def _tree(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*"))


def _check_error_line(case: Case, case_dir: Path, stderr: str, command: str) -> None:
    lines = stderr.strip().splitlines()
    assert len(lines) == 1, f"expected one stderr line, got {len(lines)}: {stderr!r}"
    line = lines[0]
    assert "Traceback" not in stderr
    assert line.startswith(f"persrm {command}: error: "), line
    path = str(case_dir / (case.where or case.src))
    where = f"{path}:{case.record}: " if case.record else f"{path}: "
    assert where in line, f"expected {where!r} in {line!r}"
    if isinstance(case.problem, re.Pattern):
        assert case.problem.search(line), f"expected /{case.problem.pattern}/ in {line!r}"
    else:
        assert case.problem in line, f"expected {case.problem!r} in {line!r}"


@pytest.mark.parametrize(("case", "command"), _params())
def test_bad_input_is_refused_cleanly(case: Case, command: str, tmp_path, capsys):
    case_dir = _materialize(case, tmp_path)
    before = _tree(case_dir)
    out = _out_path(command, tmp_path)
    try:
        rc = main(_argv(command, case_dir / case.src, out))
    except BaseException as exc:  # noqa: BLE001 - a crash is what this test is about
        pytest.fail(f"{command} raised {exc.__class__.__name__}: {str(exc)[:200]}")
    captured = capsys.readouterr()
    assert rc == 2, f"exit status {rc}, stderr {captured.err!r}"
    _check_error_line(case, case_dir, captured.err, command)
    assert not out.exists(), "something was written at the output path"
    assert not out.parent.exists() or _tree(out.parent) == [], f"left over: {_tree(out.parent)}"
    assert _tree(case_dir) == before, "the input folder was changed"
    assert sorted(p.name for p in tmp_path.iterdir()) in (["in"], ["in", "out"])


SUBPROCESS_SAMPLE = ["jsonl_non_utf8", "grouped_truncated", "dir_empty_txt", "unsupported_csv",
                     "pairs_label_c", "pairs_duplicate_pair_id"]


@pytest.mark.parametrize("name", SUBPROCESS_SAMPLE)
def test_bad_input_refused_by_the_real_process(name: str, tmp_path):
    case = BY_NAME[name]
    command = COMMANDS[case.kind][0]
    case_dir = _materialize(case, tmp_path)
    out = _out_path(command, tmp_path)
    proc = subprocess.run([sys.executable, "-m", "orchestration.cli", *_argv(command, case_dir / case.src, out)],
                          capture_output=True, text=True, cwd=REPO, timeout=120)
    assert proc.returncode == 2, proc.stderr
    _check_error_line(case, case_dir, proc.stderr, command)
    assert not out.exists() and not out.parent.exists()


def test_every_committed_case_is_listed_and_documented():
    folders = {p.name for p in BAD.iterdir() if p.is_dir()}
    committed = {c.name for c in CASES if c.generate is None}
    assert folders == committed
    assert len(committed) >= 22
    readme = (BAD / "README.md").read_text(encoding="utf-8")
    missing = [c.name for c in CASES if f"`{c.name}`" not in readme]
    assert not missing, f"cases not described in tests/bad_inputs/README.md: {missing}"


def test_ingest_out_is_an_existing_directory_is_refused(tmp_path, capsys):
    src = tmp_path / "ex.jsonl"
    src.write_text(_jl(GOOD_EX, dict(GOOD_EX, text="Ann wrote this too.")))
    out = tmp_path / "out.jsonl"
    out.mkdir()
    try:
        rc = main(["ingest", str(src), "--out", str(out)])
    except BaseException as exc:  # noqa: BLE001
        pytest.fail(f"ingest raised {exc.__class__.__name__}: {exc}")
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1 and str(out) in err[0]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ex.jsonl", "out.jsonl"]


def test_ingest_output_reads_back_with_unicode_line_separators(tmp_path, capsys):
    src = tmp_path / "authors" / "ann"
    src.mkdir(parents=True)
    (src / "01.txt").write_text("one\u2028two", encoding="utf-8")
    (src / "02.txt").write_text("three \x85 four", encoding="utf-8")
    first, second = tmp_path / "first.jsonl", tmp_path / "second.jsonl"
    assert main(["ingest", str(tmp_path / "authors"), "--out", str(first)]) == 0
    assert main(["ingest", str(first), "--out", str(second)]) == 0, capsys.readouterr().err
    texts = [json.loads(line)["text"] for line in second.read_text(encoding="utf-8").split("\n") if line]
    assert texts == ["one\u2028two", "three \x85 four"]


def test_a_base_model_that_is_not_on_this_machine_fails_in_one_line(tmp_path):
    from persrm_core.errors import InputError
    from persrm_core.llm.model import resolve_model

    with pytest.raises(InputError, match="neither a model folder nor a hub id in the local Hugging Face cache"):
        resolve_model("no-such-org/no-such-model-7b")
    with pytest.raises(InputError, match="no config.json"):
        resolve_model(str(tmp_path))
    (tmp_path / "config.json").write_text("{}")
    assert resolve_model(str(tmp_path)) == tmp_path


def test_a_base_model_found_elsewhere_leaves_a_reference_at_the_stage_output(tmp_path):
    """DVC's base_model stage declares paths.base_model as its output, whatever the base."""
    import dataclasses

    from persrm_core.config import load_settings
    from persrm_core.pipeline.models import BASE_REF, base_model

    folder = tmp_path / "my-base"
    folder.mkdir()
    (folder / "config.json").write_text("{}")
    s = load_settings("smoke", root=tmp_path)
    s = dataclasses.replace(s, base_model=dataclasses.replace(s.base_model, name=str(folder)))
    out = base_model(s)
    assert out["built"] is False and out["found_at"] == str(folder)
    assert json.loads((s.paths.base_model / BASE_REF).read_text()) == out
