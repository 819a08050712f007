"""Jobs, the weekly schedule, the per-author new-exemplars sensor, the Declarative Automation that
retrains after ingests and the run-failure recorder, evaluated with Dagster's test utilities against a copy of params.yaml
in tmp_path (the repo's data/ is never touched)."""

from __future__ import annotations

import json
import os
import shutil
from datetime import datetime, timezone
from pathlib import Path

import pytest
from dagster import (
    DagsterInstance,
    DefaultScheduleStatus,
    DefaultSensorStatus,
    build_run_status_sensor_context,
    build_schedule_context,
    build_sensor_context,
    validate_run_config,
)

from assets.resources import ArtifactStore
from orchestration import sensors
from orchestration.definitions import defs
from orchestration.schedules import build_weekly_retrain_schedule
from orchestration.sensors import new_exemplars_sensor, record_run_failures

REPO = Path(__file__).resolve().parent.parent
FULL = "persrm_full_retrain"
INGEST = "persrm_ingest_authors"


@pytest.fixture
def project(tmp_path, monkeypatch) -> Path:
    """A project dir holding only a copy of params.yaml; PERSRM_PARAMS points at it."""
    shutil.copy(REPO / "params.yaml", tmp_path / "params.yaml")
    monkeypatch.setenv("PERSRM_PARAMS", str(tmp_path / "params.yaml"))
    monkeypatch.delenv("PERSRM_INCOMING", raising=False)
    monkeypatch.delenv("PERSRM_PROFILE", raising=False)
    return tmp_path


@pytest.fixture
def incoming(project, monkeypatch) -> Path:
    monkeypatch.setenv("PERSRM_INCOMING", "incoming")  # relative: resolved against the params file's dir
    folder = project / "incoming"
    folder.mkdir()
    return folder


@pytest.fixture
def instance():
    """A persistent throw-away instance: sensors resolve partitioned requests only with an instance ref."""
    from dagster._core.test_utils import instance_for_test

    with instance_for_test() as inst:
        yield inst


def _tick(cursor=None, instance=None):
    if instance is None:
        from dagster._core.test_utils import instance_for_test

        with instance_for_test() as inst:
            return _tick(cursor, inst)
    context = build_sensor_context(cursor=cursor, instance=instance, instance_ref=instance.get_ref(),
                                   resources={"store": ArtifactStore()}, definitions=defs)
    return new_exemplars_sensor.evaluate_tick(context)


def _keys(job_name: str) -> set[str]:
    return {k.path[-1] for k in defs.resolve_job_def(job_name).asset_layer.selected_asset_keys}


def test_partial_jobs_select_their_assets():
    assert _keys(INGEST) == {"raw_exemplars"}
    assert _keys("persrm_data_only") == {"synthetic_pairs", "filtered_corpus"}
    assert _keys("persrm_eval_only") == {"eval_report"}
    assert len(_keys(FULL)) == 9  # every asset downstream of the ingested exemplars


def test_automation_is_registered_and_off_by_default():
    schedule = defs.resolve_schedule_def("persrm_weekly_full_retrain")
    assert schedule.job_name == FULL and schedule.cron_schedule == "0 3 * * 1"
    assert schedule.default_status == DefaultScheduleStatus.STOPPED
    sensor = defs.resolve_sensor_def("new_exemplars_sensor")
    assert sensor.job_name == INGEST and sensor.minimum_interval_seconds == 60
    assert sensor.default_status == DefaultSensorStatus.STOPPED
    retrain = defs.resolve_sensor_def("retrain_on_new_exemplars")
    assert retrain.default_status == DefaultSensorStatus.STOPPED
    below = {k.path[-1] for k in retrain.asset_selection.resolve(defs.resolve_asset_graph())}
    assert below == _keys(FULL)  # everything below the ingested exemplars, each with an automation condition
    graph = defs.resolve_asset_graph()
    assert all(graph.get(k).automation_condition is not None for k in graph.get_all_asset_keys()
               if k.path[-1] in below)
    assert defs.resolve_sensor_def("record_run_failures").default_status == DefaultSensorStatus.RUNNING


def test_incoming_defaults_to_data_incoming_beside_params(project):
    assert sensors.incoming_dir() == project.resolve() / "data" / "incoming"


def test_sensor_skips_when_folder_missing_or_empty(project, monkeypatch):
    result = _tick()  # data/incoming does not exist in the project copy
    assert not result.run_requests and "does not exist" in result.skip_message
    monkeypatch.setenv("PERSRM_INCOMING", str(project / "empty"))  # absolute path
    (project / "empty").mkdir()
    (project / "empty" / "notes.md").write_text("not a watched suffix")
    result = _tick()
    assert not result.run_requests and result.skip_message


def test_same_file_triggers_once_and_a_change_triggers_again(incoming, instance):
    first = _tick(instance=instance)
    assert not first.run_requests and first.skip_message

    f = incoming / "alice" / "a1.txt"
    f.parent.mkdir()
    f.write_text("hello there, this is alice writing.\n")
    second = _tick(first.cursor, instance)
    assert len(second.run_requests) == 1
    request = second.run_requests[0]
    assert request.job_name in (None, INGEST) and request.partition_key == "alice"
    assert request.run_key and request.tags["persrm/new_files"] == "alice/a1.txt"
    assert request.tags["persrm/profile"] == "default"
    # alice is a newcomer: the tick registers her partition of raw_exemplars
    [add] = second.dynamic_partitions_requests
    assert add.partitions_def_name == "authors" and list(add.partition_keys) == ["alice"]
    assert json.loads(second.cursor) == {"alice/a1.txt": [f.stat().st_mtime_ns, f.stat().st_size]}
    validate_run_config(defs.resolve_job_def(INGEST), request.run_config)

    # Same file, same cursor: nothing to do. Without the cursor the run_key repeats, so Dagster dedupes.
    again = _tick(second.cursor, instance)
    assert not again.run_requests and again.skip_message
    assert _tick(None, instance).run_requests[0].run_key == request.run_key

    instance.add_dynamic_partitions("authors", ["alice"])
    f.write_text("hello there, this is alice writing, edited!\n")
    st = f.stat()
    os.utime(f, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000_000))
    changed = _tick(again.cursor, instance)
    assert len(changed.run_requests) == 1
    assert changed.run_requests[0].run_key != request.run_key
    assert not changed.dynamic_partitions_requests  # a known author: no new partition


def test_one_request_per_author_and_files_outside_author_folders_are_ignored(incoming):
    for name in ("bob/b1.txt", "bob/b2.txt", "cy/c1.txt", "top.txt", "bob/deep/d.txt", "bob/skip.csv",
                 "cy/.hidden.txt"):
        (incoming / name).parent.mkdir(parents=True, exist_ok=True)
        (incoming / name).write_text("some text\n")
    result = _tick()
    by_author = {r.partition_key: r for r in result.run_requests}
    assert set(by_author) == {"bob", "cy"}
    assert by_author["bob"].tags["persrm/new_files"] == "bob/b1.txt, bob/b2.txt"
    assert set(json.loads(result.cursor)) == {"bob/b1.txt", "bob/b2.txt", "cy/c1.txt", "top.txt", "bob/deep/d.txt"}
    only_stray = _tick(json.dumps({k: v for k, v in json.loads(result.cursor).items() if "/" in k}))
    assert not only_stray.run_requests and "outside author folders" in only_stray.skip_message


def test_the_store_resource_says_where_the_incoming_folder_is(project, tmp_path, instance):
    (tmp_path / "elsewhere" / "dee").mkdir(parents=True)
    (tmp_path / "elsewhere" / "dee" / "d.txt").write_text("text\n")
    context = build_sensor_context(instance=instance, instance_ref=instance.get_ref(), definitions=defs,
                                   resources={"store": ArtifactStore(incoming=str(tmp_path / "elsewhere"))})
    assert [r.partition_key for r in new_exemplars_sensor.evaluate_tick(context).run_requests] == ["dee"]


def test_weekly_schedule_requests_the_full_retrain(project, monkeypatch):
    monkeypatch.setenv("PERSRM_PROFILE", "smoke")
    schedule = build_weekly_retrain_schedule()
    context = build_schedule_context(scheduled_execution_time=datetime(2025, 1, 6, 3, tzinfo=timezone.utc))
    data = schedule.evaluate_tick(context)
    assert len(data.run_requests) == 1
    request = data.run_requests[0]
    assert schedule.job_name == FULL and request.job_name in (None, FULL)
    assert request.tags["persrm/profile"] == "smoke"
    assert request.run_config == {"resources": {"compute": {"config": {"profile": "smoke"}}}}
    validate_run_config(defs.resolve_job_def(FULL), request.run_config)


def test_failure_sensor_appends_one_json_line(project):
    # No data/raw beside the copied params: ingesting an author fails at once.
    instance = DagsterInstance.ephemeral()
    instance.add_dynamic_partitions("authors", ["ghost"])
    result = defs.resolve_job_def(INGEST).execute_in_process(instance=instance, partition_key="ghost",
                                                            raise_on_error=False)
    assert not result.success
    context = build_run_status_sensor_context(
        sensor_name="record_run_failures", dagster_instance=instance, dagster_run=result.dagster_run,
        dagster_event=result.get_run_failure_event()).for_run_failure()
    record_run_failures(context)

    log = project / "data" / "reports" / "run_failures.jsonl"
    lines = log.read_text().splitlines()
    assert len(lines) == 1
    record = json.loads(lines[0])
    assert record["run_id"] == result.run_id and record["job_name"] == INGEST
    assert record["failed_steps"] == ["raw_exemplars"]
    assert "no such file or directory" in record["error"]


def _ingest(instance, author: str, request=None):
    return defs.resolve_job_def(INGEST).execute_in_process(
        instance=instance, partition_key=author, run_config=request.run_config if request else None,
        tags=request.tags if request else None, raise_on_error=False)


def _automation(instance, cursor=None):
    """One evaluation of the assets' automation conditions (what `retrain_on_new_exemplars` does a tick):
    the asset names requested, and the cursor for the next one."""
    from dagster import evaluate_automation_conditions

    result = evaluate_automation_conditions(defs=defs, instance=instance, cursor=cursor)
    requested = {r.key.path[-1] for r in result.results if r.true_subset.size}
    return requested, result.cursor


def test_a_new_author_in_incoming_is_ingested_alone_then_one_retrain_is_requested(incoming, project, instance):
    """The whole arrival path with Dagster's own objects: sensor tick -> partition added -> ingest run
    of that author only -> the automation conditions request the chain below. Nobody else's shard is
    rewritten."""
    for author in ("terse_engineer", "teen_texter", "formal_academic"):
        shutil.copytree(REPO / "data" / "raw" / author, project / "data" / "raw" / author)
    instance.add_dynamic_partitions("authors", ["formal_academic", "teen_texter", "terse_engineer"])
    for author in ("formal_academic", "teen_texter", "terse_engineer"):
        assert _ingest(instance, author).success
    shards = project / "data" / "exemplars" / "authors"
    before = {p.name: p.stat().st_mtime_ns for p in shards.iterdir()}
    assert len(before) == 3
    # The chain below was built from those three (recorded here instead of trained): nothing to do.
    from dagster import AssetMaterialization

    for name in sorted(_keys(FULL)):
        instance.report_runless_asset_event(AssetMaterialization(name))
    requested, cursor = _automation(instance)
    assert requested == set(), requested

    (incoming / "zed").mkdir()
    for i, f in enumerate(sorted((REPO / "data" / "raw" / "terse_engineer").glob("*.txt"))[:5]):
        (incoming / "zed" / f"z{i}.txt").write_text(f.read_text(encoding="utf-8").upper(), encoding="utf-8")
    tick = _tick(instance=instance)
    [request] = tick.run_requests
    instance.add_dynamic_partitions("authors", list(tick.dynamic_partitions_requests[0].partition_keys))
    result = _ingest(instance, request.partition_key, request)
    assert result.success
    [mat] = result.asset_materializations_for_node("raw_exemplars")
    assert mat.partition == "zed" and mat.metadata["landed_files"].value == 5
    assert sorted(p.name for p in (project / "data" / "raw" / "zed").iterdir()) == [f"z{i}.txt" for i in range(5)]
    after = {p.name: p.stat().st_mtime_ns for p in shards.iterdir()}
    assert {k: v for k, v in after.items() if k in before} == before  # the others' shards are untouched
    union = (project / "data" / "exemplars" / "exemplars.jsonl").read_text(encoding="utf-8").splitlines()
    assert len(union) == 3 * 26 + 5 and sum('"zed"' in line for line in union) == 5

    # A newcomer's ingest updated raw_exemplars: the whole chain below is requested, in one evaluation.
    requested, cursor = _automation(instance, cursor)
    assert requested == _keys(FULL), requested
    assert _automation(instance, cursor)[0] == set()  # requested once, not on every tick


def test_a_bad_incoming_file_fails_the_authors_ingest_and_lands_nothing(incoming, project):
    shutil.copytree(REPO / "data" / "raw" / "terse_engineer", project / "data" / "raw" / "terse_engineer")
    (incoming / "terse_engineer").mkdir()
    (incoming / "terse_engineer" / "new.txt").write_text("a perfectly good new text\n")
    (incoming / "terse_engineer" / "zbad.txt").write_bytes(b"caf\xe9 latin-1 bytes\n")
    instance = DagsterInstance.ephemeral()
    instance.add_dynamic_partitions("authors", ["terse_engineer"])
    result = _ingest(instance, "terse_engineer")
    assert not result.success
    error = result.get_step_failure_events()[0].step_failure_data.error
    while error.cause is not None:
        error = error.cause
    assert "zbad.txt" in error.message and "not valid UTF-8" in error.message
    assert not (project / "data" / "raw" / "terse_engineer" / "new.txt").exists()
    assert not list((project / "data" / "exemplars").rglob("*.jsonl"))  # no shard, no union


def test_runs_land_in_the_project_instance_without_dagster_home(tmp_path, monkeypatch):
    """`persrm run` or `dvc repro` started without make still shows in `dagster dev` (issue: runs
    went to a throw-away instance unless DAGSTER_HOME was set)."""
    from dagster import DagsterInstance

    from orchestration.runner import EPHEMERAL_ENV, project_instance

    monkeypatch.delenv("DAGSTER_HOME", raising=False)
    monkeypatch.delenv(EPHEMERAL_ENV, raising=False)
    instance = project_instance(tmp_path)
    assert os.environ["DAGSTER_HOME"] == str((tmp_path / ".dagster").resolve())
    assert "enabled: false" in (tmp_path / ".dagster" / "dagster.yaml").read_text()
    assert not instance.is_ephemeral
    instance.add_dynamic_partitions("probe", ["x"])
    assert DagsterInstance.get().get_dynamic_partitions("probe") == ["x"]  # the same storage, found again
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path / "elsewhere"))
    (tmp_path / "elsewhere").mkdir()
    assert Path(project_instance(tmp_path).root_directory) == tmp_path / "elsewhere"  # an explicit home wins
