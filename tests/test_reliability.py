"""Nothing lost: atomic publication survives a kill, concurrent materializations are refused,
and the same seed and inputs give byte-identical data artifacts."""

from __future__ import annotations

import hashlib
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from filelock import FileLock

from orchestration.runner import failures, run_chain
from persrm_core import pipeline
from persrm_core.config import load_settings

REPO = Path(__file__).resolve().parent.parent


def _killed_writer(kind: str, target: Path) -> subprocess.CompletedProcess:
    """A writer that SIGKILLs itself halfway through publishing `target`."""
    code = textwrap.dedent(f"""
        import os, signal
        from persrm_core.atomic import atomic_dir, atomic_path
        target = {str(target)!r}
        if {kind!r} == "dir":
            with atomic_dir(target) as tmp:
                (tmp / "model.safetensors").write_text("half-written new checkpoint")
                os.kill(os.getpid(), signal.SIGKILL)
        else:
            with atomic_path(target) as tmp:
                tmp.write_text("half-written new table")
                os.kill(os.getpid(), signal.SIGKILL)
    """)
    return subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True)


def test_killed_checkpoint_write_leaves_the_previous_checkpoint_intact(tmp_path):
    target = tmp_path / "models" / "sft"
    target.mkdir(parents=True)
    (target / "model.safetensors").write_text("previous checkpoint")
    proc = _killed_writer("dir", target)
    assert proc.returncode == -9
    assert (target / "model.safetensors").read_text() == "previous checkpoint"
    assert sorted(p.name for p in target.iterdir()) == ["model.safetensors"]


def test_killed_file_write_leaves_the_previous_file_intact(tmp_path):
    target = tmp_path / "pairs.parquet"
    target.write_text("previous table")
    proc = _killed_writer("file", target)
    assert proc.returncode == -9
    assert target.read_text() == "previous table"


def test_a_second_materialization_of_the_same_asset_is_refused(smoke_root):
    s = load_settings("smoke", root=smoke_root)
    lock = FileLock(str(s.paths.corpus.parent / f".{s.paths.corpus.name}.lock"))
    before = (s.paths.corpus / "train.parquet").read_bytes()
    with lock:  # another run holds the corpus
        result = run_chain(profile="smoke", root=str(smoke_root), select=["filtered_corpus"], progress=False)
        assert not result.success
        assert any("another materialization is writing this artifact" in line for line in failures(result))
        assert (s.paths.corpus / "train.parquet").read_bytes() == before
    result = run_chain(profile="smoke", root=str(smoke_root), select=["filtered_corpus"], progress=False)
    assert result.success
    assert [r.dagster_run.job_name for r in result.results] == ["persrm_full_retrain"]  # a subset of the named job


def test_persrm_run_makes_named_job_runs_never_the_ephemeral_job(smoke_root):
    """The UI's run history groups `persrm run` (and `dvc repro`) runs under the project's jobs."""
    from orchestration.runner import job_for

    assert (smoke_root / "run_jobs.txt").read_text().split() == ["persrm_ingest_authors", "persrm_full_retrain"]
    assert job_for(["raw_exemplars"]) == "persrm_ingest_authors"
    assert job_for(["filtered_corpus", "synthetic_pairs"]) == "persrm_data_only"
    assert job_for(["eval_report"]) == "persrm_eval_only"
    assert job_for(["sft_checkpoint", "rft_checkpoint"]) == "persrm_full_retrain"
    with pytest.raises(ValueError, match="raw_exemplars runs on its own"):
        job_for(["raw_exemplars", "eval_report"])


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_same_seed_and_inputs_give_byte_identical_pairs_and_corpus(tmp_path):
    digests = []
    for run in ("one", "two"):
        root = tmp_path / run
        shutil.copytree(REPO / "data" / "raw", root / "data" / "raw")
        s = load_settings("smoke", root=root)
        pipeline.raw_exemplars(s)
        pipeline.synthetic_pairs(s, progress=False)
        pipeline.filtered_corpus(s)
        digests.append([_sha(p) for p in (s.paths.exemplars, s.paths.pairs, s.paths.corpus / "train.parquet",
                                          s.paths.corpus / "eval.parquet")])
    assert digests[0] == digests[1]
