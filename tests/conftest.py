"""Shared fixtures: one smoke-profile run of the whole chain, through Dagster, per test session."""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
# Test runs go to throw-away Dagster instances, not the user's DAGSTER_HOME that `make` sets nor the
# project's own .dagster/ that `persrm run` finds by itself (orchestration.runner.project_instance).
os.environ.pop("DAGSTER_HOME", None)
os.environ["PERSRM_EPHEMERAL_INSTANCE"] = "1"
# One embedding cache for the session's processes (the smoke chains of the in-process fixture, of
# `dvc repro` and of `dagster dev` encode the same bundled texts with the same encoders).
os.environ.setdefault("PERSRM_EMBEDDING_CACHE", os.path.join(tempfile.mkdtemp(prefix="persrm-emb-"), "emb.sqlite"))

if os.environ.get("PYTEST_XDIST_WORKER"):
    # `make test` runs pytest-xdist workers (one per core, at most four): the cores shared out among
    # them (and the processes they start), or torch's default of a thread per core in every worker
    # oversubscribes the cores (on two cores: 5 min 35 s against 3 min 25 s for one thread each).
    _threads = max(1, len(os.sched_getaffinity(0)) // int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1")))
    for _var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[_var] = str(_threads)

REPO = Path(__file__).resolve().parent.parent
# The bundled SmolLM2 is converted once per checkout (about a minute), not per session or per user
# home: an ignored folder in the repository.
os.environ.setdefault("PERSRM_MODEL_CACHE", str(REPO / ".cache" / "models"))


@pytest.fixture(scope="session")
def smoke_root(tmp_path_factory) -> Path:
    """A data root holding a copy of the bundled exemplars, materialized once on the smoke profile:
    once per `make test`, however many pytest-xdist workers ask for it (the first builds it under a
    file lock in the run's shared temporary folder; the others wait for it, then read it)."""
    if not os.environ.get("PYTEST_XDIST_WORKER"):  # a plain pytest run
        return _build_smoke_root(tmp_path_factory.mktemp("smoke"))
    from filelock import FileLock

    shared = tmp_path_factory.getbasetemp().parent / "smoke"
    with FileLock(str(shared) + ".lock"):
        if not (shared / "run_metadata.json").is_file():  # written last: a half-built root is built again
            shutil.rmtree(shared, ignore_errors=True)
            _build_smoke_root(shared)
    return shared


def _build_smoke_root(root: Path) -> Path:
    from orchestration.runner import run_chain

    root.mkdir(parents=True, exist_ok=True)
    shutil.copytree(REPO / "data" / "raw", root / "data" / "raw")
    result = run_chain(profile="smoke", root=str(root), progress=False)
    assert result.success
    root_result = root / "run_result.txt"
    root_result.write_text("\n".join(str(e.event_type_value) for e in result.all_events))
    (root / "run_jobs.txt").write_text("\n".join(r.dagster_run.job_name for r in result.results))
    metadata = {}  # asset -> metadata key -> [type of the value, the value where it is a number]
    for event in result.all_events:
        if event.is_step_materialization:
            mat = event.step_materialization_data.materialization
            metadata[mat.asset_key.path[-1]] = {
                k: [type(v).__name__, v.value if isinstance(v.value, (int, float)) else None]
                for k, v in mat.metadata.items()}
    (root / "run_metadata.json").write_text(json.dumps(metadata, indent=1))
    return root


def pytest_collection_modifyitems(items):
    """The `slow` tests run first and the tests on the shared smoke chain last: xdist's workers
    share out the long tests before the short ones, and the first worker to need the chain builds
    it while the others go on with the rest, instead of waiting for it."""
    items.sort(key=lambda item: ("smoke_root" in getattr(item, "fixturenames", ()),
                                 item.get_closest_marker("slow") is None))
