"""persrm_core.data.ingest: the three input formats, and bad input refused by file and record with
nothing (half-)written at the output path."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from persrm_core.data.ingest import ingest, read_exemplars
from persrm_core.errors import InputError


def write_jsonl(path: Path, rows: list) -> Path:
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows),
                    encoding="utf-8")
    return path


def good_rows() -> list[dict]:
    return [
        {"author_id": "alice", "text": "Alice writes the first text."},
        {"author_id": "alice", "text": "Alice writes a second text.", "source": "blog"},
        {"author_id": "bob", "text": "bob writes in lowercase.", "meta": {"year": 2020}},
        {"author_id": "bob", "text": "bob again, still lowercase."},
    ]


def make_author_dirs(root: Path, layout: dict[str, dict[str, str]]) -> Path:
    for rel_dir, files in layout.items():
        d = root / rel_dir
        d.mkdir(parents=True, exist_ok=True)
        for name, text in files.items():
            (d / name).write_text(text, encoding="utf-8")
    return root


def read_out(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


# --- the three formats -----------------------------------------------------------------------

def test_jsonl_exemplars_are_read_in_order_with_source_and_meta(tmp_path):
    src = write_jsonl(tmp_path / "ex.jsonl", good_rows())
    exs = read_exemplars(src)
    assert [(e.author_id, e.text) for e in exs] == [(r["author_id"], r["text"]) for r in good_rows()]
    assert exs[1].source == "blog"
    assert exs[2].meta == {"year": 2020}


def test_jsonl_blank_lines_are_skipped_and_text_is_stripped(tmp_path):
    src = write_jsonl(tmp_path / "ex.jsonl", [
        {"author_id": " alice ", "text": "  one  "}, "", "   ", {"author_id": "alice", "text": "two\n"}])
    exs = read_exemplars(src)
    assert [(e.author_id, e.text) for e in exs] == [("alice", "one"), ("alice", "two")]


def test_jsonl_with_utf8_bom_is_accepted(tmp_path):
    src = tmp_path / "ex.jsonl"
    src.write_bytes(b"\xef\xbb\xbf" + "".join(json.dumps(r) + "\n" for r in good_rows()).encode())
    assert len(read_exemplars(src)) == 4


def test_grouped_json_text_is_prompt_space_output(tmp_path):
    src = tmp_path / "grouped.json"
    src.write_text(json.dumps({
        "alice": [{"prompt": "Dear diary,", "output": "today was long."},
                  {"prompt": " Hello ", "output": " world "}],
        "bob": [{"prompt": "Q1", "output": "A1"}, {"prompt": "Q2", "output": "A2"}],
    }), encoding="utf-8")
    exs = read_exemplars(src)
    assert [(e.author_id, e.text) for e in exs] == [
        ("alice", "Dear diary, today was long."), ("alice", "Hello world"),
        ("bob", "Q1 A1"), ("bob", "Q2 A2")]
    assert exs[0].source == "grouped.json#alice[0]"


def test_author_directories_become_authors_and_ignore_non_txt_files(tmp_path):
    root = make_author_dirs(tmp_path / "corpus", {
        "alice": {"1.txt": "Alice one.\r\n", "2.txt": "Alice two.", "notes.md": "not a text"},
        "bob": {"a.txt": "Bob one.", "b.txt": "Bob two.", "c.txt": "Bob three."},
    })
    exs = read_exemplars(root)
    assert [(e.author_id, e.text) for e in exs] == [
        ("alice", "Alice one."), ("alice", "Alice two."),
        ("bob", "Bob one."), ("bob", "Bob two."), ("bob", "Bob three.")]
    assert exs[0].source == str(Path("alice") / "1.txt")


def test_train_and_test_levels_merge_the_same_author(tmp_path):
    root = make_author_dirs(tmp_path / "c50", {
        "train/alice": {"1.txt": "Alice train text."},
        "test/alice": {"2.txt": "Alice test text."},
        "train/bob": {"1.txt": "Bob train text."},
        "test/bob": {"9.txt": "Bob test text."},
    })
    exs = read_exemplars(root)
    by_author: dict[str, set[str]] = {}
    for e in exs:
        by_author.setdefault(e.author_id, set()).add(e.text)
    assert by_author == {"alice": {"Alice train text.", "Alice test text."},
                         "bob": {"Bob train text.", "Bob test text."}}
    assert {e.source for e in exs if e.author_id == "alice"} == {
        str(Path("train/alice/1.txt")), str(Path("test/alice/2.txt"))}


def test_ingest_writes_exemplar_jsonl_that_reads_back_identically(tmp_path):
    src = write_jsonl(tmp_path / "ex.jsonl", good_rows())
    out = tmp_path / "out" / "exemplars.jsonl"
    exs = ingest(src, out)
    assert read_out(out) == [e.to_dict() for e in exs]
    assert [(e.author_id, e.text) for e in read_exemplars(out)] == [(e.author_id, e.text) for e in exs]


def test_ingest_of_directory_writes_one_line_per_txt_file(tmp_path):
    root = make_author_dirs(tmp_path / "corpus", {"a": {"1.txt": "x one", "2.txt": "x two"},
                                                  "b": {"1.txt": "y one", "2.txt": "y two"}})
    out = tmp_path / "ex.jsonl"
    ingest(root, out)
    assert [(r["author_id"], r["text"]) for r in read_out(out)] == [
        ("a", "x one"), ("a", "x two"), ("b", "y one"), ("b", "y two")]


# --- bad input ---------------------------------------------------------------------------------

def _bad_jsonl(tmp_path, bad_line: str) -> tuple[Path, str]:
    rows = [json.dumps(r) for r in good_rows()]
    rows.insert(2, bad_line)  # the bad record is on line 3
    path = tmp_path / "bad.jsonl"
    path.write_text("\n".join(rows) + "\n", encoding="utf-8")
    return path, "line 3"


BAD_JSONL_LINES = {
    "invalid_json": ('{"author_id": "alice", "text": ', "invalid JSON"),
    "text_not_a_string": ('{"author_id": "alice", "text": 42}', "'text' must be a string"),
    "text_is_list": ('{"author_id": "alice", "text": ["a"]}', "'text' must be a string"),
    "missing_author_id": ('{"text": "orphan text"}', "missing required field 'author_id'"),
    "blank_author_id": ('{"author_id": "  ", "text": "x"}', "'author_id' is empty or whitespace"),
    "whitespace_text": ('{"author_id": "alice", "text": " \\n\\t "}', "'text' is empty or whitespace"),
    "not_an_object": ('["alice", "text"]', "expected a JSON object"),
}


@pytest.mark.parametrize("case", sorted(BAD_JSONL_LINES))
def test_bad_jsonl_record_raises_input_error_naming_file_and_line(tmp_path, case):
    line, problem = BAD_JSONL_LINES[case]
    path, record = _bad_jsonl(tmp_path, line)
    with pytest.raises(InputError) as info:
        read_exemplars(path)
    msg = str(info.value)
    assert msg.startswith(f"{path}:{record}: ")
    assert problem in msg
    assert "\n" not in msg


def test_non_utf8_jsonl_names_the_line_with_the_bad_byte(tmp_path):
    path = tmp_path / "latin1.jsonl"
    path.write_bytes(json.dumps(good_rows()[0]).encode() + b"\n"
                     + '{"author_id": "alice", "text": "caf\xe9"}\n'.encode("latin-1"))
    with pytest.raises(InputError) as info:
        read_exemplars(path)
    assert str(info.value).startswith(f"{path}:line 2: ")
    assert "UTF-8" in str(info.value)


def test_non_utf8_txt_file_names_that_file(tmp_path):
    root = make_author_dirs(tmp_path / "corpus", {"a": {"1.txt": "fine", "2.txt": "fine too"}})
    (root / "a" / "3.txt").write_bytes(b"ok line\nbad \xff\xfe byte")
    with pytest.raises(InputError) as info:
        read_exemplars(root)
    assert str(info.value).startswith(f"{root / 'a' / '3.txt'}:line 2: ")


def test_empty_txt_file_names_that_file(tmp_path):
    root = make_author_dirs(tmp_path / "corpus", {"a": {"1.txt": "fine", "2.txt": "  \n\n "}})
    with pytest.raises(InputError) as info:
        read_exemplars(root)
    assert str(info.value) == f"{root / 'a' / '2.txt'}: text is empty or whitespace"


def test_directory_without_txt_files_is_refused(tmp_path):
    root = make_author_dirs(tmp_path / "corpus", {"a": {"1.md": "x"}, "b": {"notes.doc": "y"}})
    with pytest.raises(InputError) as info:
        read_exemplars(root)
    assert str(info.value).startswith(f"{root}: ")
    assert ".txt" in str(info.value)


def test_empty_directory_is_refused(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match=r"no \.txt files"):
        read_exemplars(tmp_path / "empty")


def test_author_with_a_single_text_is_refused_by_name(tmp_path):
    rows = good_rows() + [{"author_id": "carol", "text": "Carol's only text."}]
    src = write_jsonl(tmp_path / "ex.jsonl", rows)
    with pytest.raises(InputError) as info:
        read_exemplars(src, min_texts_per_author=2)
    assert str(info.value).startswith(f"{src}:author 'carol': ")
    assert "1 text" in str(info.value)


def test_single_text_author_is_accepted_by_default(tmp_path):
    rows = good_rows() + [{"author_id": "carol", "text": "Carol's only text."}]
    src = write_jsonl(tmp_path / "ex.jsonl", rows)
    assert [e.author_id for e in read_exemplars(src)].count("carol") == 1


def test_a_file_with_one_text_per_author_ingests(tmp_path):
    rows = [{"author_id": a, "text": f"{a} wrote this one text, and only this one."} for a in ("ann", "bob", "cy")]
    out = tmp_path / "exemplars.jsonl"
    assert [e.author_id for e in ingest(write_jsonl(tmp_path / "ex.jsonl", rows), out)] == ["ann", "bob", "cy"]
    assert len(out.read_text().splitlines()) == 3


def test_grouped_json_output_of_wrong_type_names_author_and_index(tmp_path):
    src = tmp_path / "grouped.json"
    src.write_text(json.dumps({"alice": [{"prompt": "p", "output": "o"}, {"prompt": "p", "output": 7}]}))
    with pytest.raises(InputError) as info:
        read_exemplars(src)
    assert str(info.value) == f"{src}:alice[1]: field 'output' must be a string"


def test_grouped_json_empty_prompt_and_output_is_refused(tmp_path):
    src = tmp_path / "grouped.json"
    src.write_text(json.dumps({"alice": [{"prompt": "p", "output": "o"}, {"prompt": " ", "output": ""}]}))
    with pytest.raises(InputError) as info:
        read_exemplars(src)
    assert str(info.value) == f"{src}:alice[1]: text is empty or whitespace"


def test_grouped_json_that_is_not_an_object_is_refused(tmp_path):
    src = tmp_path / "grouped.json"
    src.write_text(json.dumps([{"prompt": "p", "output": "o"}]))
    with pytest.raises(InputError, match="expected an object mapping author ids"):
        read_exemplars(src)


def test_grouped_json_invalid_json_names_the_line(tmp_path):
    src = tmp_path / "grouped.json"
    src.write_text('{\n"alice": [\n{"prompt": "p", "output": }\n]}')
    with pytest.raises(InputError) as info:
        read_exemplars(src)
    assert str(info.value).startswith(f"{src}:line 3: invalid JSON")


def test_unsupported_extension_is_refused(tmp_path):
    src = tmp_path / "exemplars.csv"
    src.write_text("author_id,text\na,b\n")
    with pytest.raises(InputError) as info:
        read_exemplars(src)
    assert str(info.value).startswith(f"{src}: unsupported input")


def test_missing_path_is_refused(tmp_path):
    src = tmp_path / "nope.jsonl"
    with pytest.raises(InputError) as info:
        read_exemplars(src)
    assert str(info.value) == f"{src}: no such file or directory"


def test_empty_jsonl_is_refused(tmp_path):
    src = tmp_path / "ex.jsonl"
    src.write_text("\n\n")
    with pytest.raises(InputError, match="no exemplar records"):
        read_exemplars(src)


# --- failing ingest leaves nothing behind --------------------------------------------------------

def _bad_sources(tmp_path: Path) -> dict[str, Path]:
    bad_json = tmp_path / "bad.jsonl"
    bad_json.write_text(json.dumps(good_rows()[0]) + "\n{not json\n")
    no_txt = make_author_dirs(tmp_path / "notxt", {"a": {"x.md": "y"}})
    bad_bytes = tmp_path / "bytes.jsonl"
    bad_bytes.write_bytes(b'{"author_id": "a", "text": "\xff"}\n')
    return {"bad_json": bad_json, "no_txt": no_txt,
            "non_utf8": bad_bytes, "missing": tmp_path / "missing.jsonl"}


@pytest.mark.parametrize("case", ["bad_json", "no_txt", "non_utf8", "missing"])
def test_failed_ingest_leaves_no_file_at_out_path(tmp_path, case):
    src = _bad_sources(tmp_path)[case]
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    out = out_dir / "exemplars.jsonl"
    with pytest.raises(InputError):
        ingest(src, out)
    assert not out.exists()
    assert list(out_dir.iterdir()) == []  # no temporary leftovers either


@pytest.mark.parametrize("case", ["bad_json", "no_txt", "non_utf8", "missing"])
def test_failed_ingest_keeps_existing_good_out_file_intact(tmp_path, case):
    out = tmp_path / "exemplars.jsonl"
    ingest(write_jsonl(tmp_path / "good.jsonl", good_rows()), out)
    before = out.read_bytes()
    with pytest.raises(InputError):
        ingest(_bad_sources(tmp_path)[case], out)
    assert out.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".")) == []
