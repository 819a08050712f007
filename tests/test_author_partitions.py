"""Per-author ingest from the command line: `persrm run --select raw_exemplars [--authors ...]
[--no-incoming]` against a copy of params.yaml and three bundled authors in tmp_path (runs go to
an ephemeral Dagster instance). The ingest helpers are tested on their own first."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from orchestration.cli import main
from persrm_core.data.ingest import land_incoming, list_authors, read_authors
from persrm_core.errors import InputError

REPO = Path(__file__).resolve().parent.parent
AUTHORS = ("formal_academic", "teen_texter", "terse_engineer")


@pytest.fixture
def project(tmp_path, monkeypatch) -> Path:
    shutil.copy(REPO / "params.yaml", tmp_path / "params.yaml")
    for author in AUTHORS:
        shutil.copytree(REPO / "data" / "raw" / author, tmp_path / "data" / "raw" / author)
    monkeypatch.setenv("PERSRM_PARAMS", str(tmp_path / "params.yaml"))
    monkeypatch.delenv("PERSRM_INCOMING", raising=False)
    monkeypatch.delenv("PERSRM_PROFILE", raising=False)
    return tmp_path


def _newcomer(project: Path, name: str = "zed", n: int = 4) -> Path:
    folder = project / "data" / "incoming" / name
    folder.mkdir(parents=True)
    for i, f in enumerate(sorted((REPO / "data" / "raw" / "teen_texter").glob("*.txt"))[:n]):
        (folder / f"{name}{i}.txt").write_text(f.read_text(encoding="utf-8").upper(), encoding="utf-8")
    return folder


def _union(project: Path) -> list[dict]:
    lines = (project / "data" / "exemplars" / "exemplars.jsonl").read_text(encoding="utf-8").splitlines()
    return [json.loads(line) for line in lines]


def _shards(project: Path) -> dict[str, int]:
    return {p.name: p.stat().st_mtime_ns for p in (project / "data" / "exemplars" / "authors").glob("*.jsonl")}


def test_list_and_read_authors_read_only_the_named_authors(project):
    raw = project / "data" / "raw"
    assert list_authors(raw) == list(AUTHORS)
    (raw / "broken").mkdir()
    (raw / "broken" / "x.txt").write_bytes(b"\xff\xfe not utf-8")
    got = read_authors(raw, ["teen_texter"])  # the broken folder is never read
    assert set(got) == {"teen_texter"} and len(got["teen_texter"]) == 26
    with pytest.raises(InputError, match="no texts by this author"):
        read_authors(raw, ["nobody"])
    with pytest.raises(InputError, match="x.txt"):
        read_authors(raw, ["broken"])


def test_land_incoming_copies_new_or_changed_files_once(project):
    raw = project / "data" / "raw"
    incoming = _newcomer(project, n=2)
    assert land_incoming(incoming.parent, raw, "zed") == ["zed0.txt", "zed1.txt"]
    assert land_incoming(incoming.parent, raw, "zed") == []  # same bytes: nothing to copy
    (incoming / "zed1.txt").write_text("AN EDITED TEXT, WRITTEN IN CAPITALS AS ZED DOES.\n")
    assert land_incoming(incoming.parent, raw, "zed") == ["zed1.txt"]
    assert land_incoming(incoming.parent, raw, "nobody") == []


def test_run_ingests_every_author_then_only_the_named_one(project, capsys):
    assert main(["run", "--select", "raw_exemplars"]) == 0
    before = _shards(project)
    assert len(before) == 3 and len(_union(project)) == 3 * 26

    _newcomer(project)
    assert main(["run", "--select", "raw_exemplars", "--authors", "zed"]) == 0
    after = _shards(project)
    assert {k: v for k, v in after.items() if k in before} == before  # nobody else's shard rewritten
    assert len(after) == 4
    union = _union(project)
    assert len(union) == 3 * 26 + 4 and {r["author_id"] for r in union} == {*AUTHORS, "zed"}
    assert sorted(p.name for p in (project / "data" / "raw" / "zed").iterdir()) == [f"zed{i}.txt" for i in range(4)]


def test_no_incoming_reads_data_raw_only(project):
    _newcomer(project)
    assert main(["run", "--select", "raw_exemplars", "--no-incoming"]) == 0
    assert not (project / "data" / "raw" / "zed").exists()
    assert {r["author_id"] for r in _union(project)} == set(AUTHORS)
    assert main(["run", "--select", "raw_exemplars"]) == 0  # without the flag the waiting author lands
    assert {r["author_id"] for r in _union(project)} == {*AUTHORS, "zed"}


def test_a_removed_author_leaves_the_union_and_its_shard_goes(project):
    assert main(["run", "--select", "raw_exemplars"]) == 0
    shutil.rmtree(project / "data" / "raw" / "teen_texter")
    assert main(["run", "--select", "raw_exemplars"]) == 0
    assert {r["author_id"] for r in _union(project)} == {"formal_academic", "terse_engineer"}
    assert len(_shards(project)) == 2


def test_an_unknown_author_fails_with_one_line_naming_it(project, capsys):
    assert main(["run", "--select", "raw_exemplars", "--authors", "nobody"]) == 1
    err = capsys.readouterr().err
    assert "asset raw_exemplars failed" in err and "'nobody'" in err and "no texts by this author" in err
    assert not (project / "data" / "exemplars" / "exemplars.jsonl").exists()


def test_no_raw_folder_is_one_clear_error(project, capsys):
    shutil.rmtree(project / "data" / "raw")
    assert main(["run", "--select", "raw_exemplars"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "no such file or directory" in err[0] and "raw" in err[0]


def test_an_author_too_short_to_make_pairs_is_named_at_ingest(project):
    """A newcomer whose texts are shorter than synthesis can cut is ingested (their texts can still
    be exemplars and negatives) but the ingest result says they will yield no pairs, and why."""
    from persrm_core import pipeline
    from persrm_core.config import load_settings

    short = project / "data" / "raw" / "shorty"
    short.mkdir(parents=True)
    for i in range(3):
        (short / f"s{i}.txt").write_text(" ".join(["brief"] * (18 + 4 * i)) + ".\n", encoding="utf-8")
    single = project / "data" / "raw" / "solo"
    single.mkdir()
    shutil.copy(sorted((REPO / "data" / "raw" / "teen_texter").glob("*.txt"))[0], single / "only.txt")
    s = load_settings(None, project / "params.yaml")
    out = pipeline.raw_exemplars(s, ["shorty", "solo", "teen_texter"])
    assert set(out["no_own_pairs"]) == {"shorty", "solo"}
    assert "none of its 3 texts is long enough" in out["no_own_pairs"]["shorty"]
    assert "the longest has 26 words" in out["no_own_pairs"]["shorty"]
    assert "a single text" in out["no_own_pairs"]["solo"]
    assert {r["author_id"] for r in _union(project)} >= {"shorty", "solo"}  # ingested all the same
