"""The Dagster UI server as a user drives it: `dagster dev` on a free loopback port (in its own process
group, on a throw-away DAGSTER_HOME, with PERSRM_PARAMS pointing at a copy of the project in tmp_path),
the authors registered as partitions and ingested in one run, then the full retrain launched and
watched through GraphQL on the smoke profile, the six contract assets' materializations (one per
author for raw_exemplars) and the corpus checks read back through GraphQL, and the server's process group
gone after SIGTERM (SIGKILL after a grace period)."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from scripts.dagster_ui import (
    CHAIN,
    CORPUS_CHECKS,
    FULL_RETRAIN_JOB,
    DagsterDev,
    copy_project,
    metadata,
    write_dagster_home,
)

ARTIFACTS = [
    "data/exemplars/exemplars.jsonl",
    "data/pairs/pairs.parquet",
    "data/corpus/train.parquet",
    "data/corpus/eval.parquet",
    "data/models/sft/model.safetensors",
    "data/models/rft/model.safetensors",
    "data/reports/eval/metrics.json",
    "data/reports/eval/report.md",
    "data/reports/eval/report.html",
]


@pytest.fixture
def ui_project(tmp_path) -> Path:
    return copy_project(tmp_path / "project").parent


@pytest.fixture
def dagster_dev(tmp_path, ui_project):
    server = DagsterDev(
        dagster_home=write_dagster_home(tmp_path / "dagster_home"),
        log_path=tmp_path / "dagster_dev.log",
        env={"PERSRM_PROFILE": "smoke", "PERSRM_PARAMS": str(ui_project / "params.yaml"),
             "PERSRM_INCOMING": str(ui_project / "incoming")},
    )
    server.start()
    try:
        yield server
    finally:
        report = server.stop(grace=30)
        print(f"dagster dev stopped: {report}")
        assert report["left"] == [], f"process group {server.pgid} survived SIGTERM+SIGKILL: {report}"


@pytest.mark.slow  # about a minute: ~25 s to serve, the rest for the GraphQL-launched run (a process per step)
def test_dagster_dev_materializes_the_chain_through_graphql(dagster_dev, ui_project):
    info = dagster_dev.wait_ready(timeout=120)
    assert info.get("dagster_webserver_version") or info.get("dagster_version"), info

    smoke = {"resources": {"compute": {"config": {"profile": "smoke"}}}}
    tags = {"persrm/profile": "smoke", "persrm/launched_by": "test_webserver"}
    authors = sorted(p.name for p in (ui_project / "data" / "raw").iterdir() if p.is_dir())
    started = time.monotonic()
    ingest_id = dagster_dev.ingest_authors(authors, run_config=smoke, tags=tags)
    assert dagster_dev.wait_for_run(ingest_id, timeout=120) == "SUCCESS"
    assert dagster_dev.partition_keys() == authors
    # the ingest ran on the default executor (a process per step); the retrain runs its steps in one
    # process (`execution: in_process`, as a Launchpad user may pick): the server and GraphQL paths are
    # the same, without ten Python start-ups
    # One process for the retrain: the run's steps in-process, and SFT in the run's own process through
    # the asset's typed op config (the launchpad's override; `accelerate launch` + Pipes is the shared
    # smoke chain's, tests/test_chain.py), so the run config's route through GraphQL is tested too.
    in_process = {**smoke, "execution": {"config": {"in_process": {}}},
                  "ops": {"sft_checkpoint": {"config": {"launcher": "inprocess"}}}}
    run_id = dagster_dev.launch_job(FULL_RETRAIN_JOB, run_config=in_process, tags=tags)
    assert dagster_dev.wait_for_run(run_id, timeout=900) == "SUCCESS"
    print(f"ingest {ingest_id} and retrain {run_id} succeeded in {time.monotonic() - started:.0f} s")

    nodes = dagster_dev.asset_nodes()
    for asset in CHAIN:
        assert asset in nodes, f"{asset} is not in the UI's asset graph"
        mats = nodes[asset]["assetMaterializations"]
        assert mats, f"{asset} has no materialization in the UI"
        assert mats[0]["runId"] == (ingest_id if asset == "raw_exemplars" else run_id)
        meta = metadata(mats[0])
        assert meta, f"{asset}'s materialization carries no metadata"
        # every path it publishes lies in the temporary project, never in the repo's data/, and
        # is written relative to that project (the UI shows data/..., not a checkout's absolute path)
        for label, value in meta.items():
            if label in ("path", "report", "report_html", "checkpoint"):
                assert not Path(str(value)).is_absolute() and str(value).startswith("data/"), (asset, label, value)
                assert (ui_project / str(value)).exists(), (asset, label, value)
    assert metadata(nodes["raw_exemplars"]["assetMaterializations"][0])["profile"] == "smoke"
    # the launchpad's `launcher: inprocess` reached the stage: no training process reported through Pipes
    assert "steps" not in metadata(nodes["sft_checkpoint"]["assetMaterializations"][0])
    assert any(k.startswith("accuracy_") for k in metadata(nodes["eval_report"]["assetMaterializations"][0]))

    # every check of the chain was evaluated in this run and shows in the UI; the blocking ones (which
    # gate the corpus, named in assets/checks.py) passed; warn-only ones may report a failure
    checks = {}
    for asset in CHAIN:
        checks_or_error = nodes[asset]["assetChecksOrError"]
        assert checks_or_error["__typename"] == "AssetChecks", (asset, checks_or_error)
        checks.update({(asset, c["name"]): c for c in checks_or_error["checks"]})
    assert {("filtered_corpus", name) for name in CORPUS_CHECKS} <= set(checks)
    for (asset, name), check in checks.items():
        execution = check["executionForLatestMaterialization"]
        assert execution is not None, f"check {asset}/{name} has no evaluation in the UI"
        assert execution["runId"] == run_id, (asset, name, execution)
        assert execution["status"] in ("SUCCEEDED", "FAILED"), (asset, name, execution)
        if check["blocking"]:
            assert execution["status"] == "SUCCEEDED", (asset, name, execution)
            assert execution["evaluation"]["success"] is True, (asset, name, execution)
    for name in CORPUS_CHECKS:
        assert checks[("filtered_corpus", name)]["blocking"]

    missing = [f for f in ARTIFACTS if not (ui_project / f).is_file()]
    assert missing == []
    metrics = json.loads((ui_project / "data/reports/eval/metrics.json").read_text())
    assert {"base", "sft", "rft"} <= set(metrics["judges"])
    assert not (ui_project / "data/reports/run_failures.jsonl").exists()
