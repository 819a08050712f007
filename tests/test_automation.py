"""Jobs, the weekly schedule, the new-exemplars sensor and the run-failure recorder, evaluated with
Dagster's test utilities against a copy of params.yaml in tmp_path (the repo's data/ is never touched)."""

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

from orchestration import sensors
from orchestration.definitions import defs
from orchestration.schedules import build_weekly_retrain_schedule
from orchestration.sensors import new_exemplars_sensor, record_run_failures

REPO = Path(__file__).resolve().parent.parent
FULL = "persrm_full_retrain"


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


def _tick(cursor=None):
    return new_exemplars_sensor.evaluate_tick(build_sensor_context(cursor=cursor))


def _keys(job_name: str) -> set[str]:
    return {k.path[-1] for k in defs.resolve_job_def(job_name).asset_layer.selected_asset_keys}


def test_partial_jobs_select_their_assets():
    assert _keys("persrm_data_only") == {"raw_exemplars", "synthetic_pairs", "filtered_corpus"}
    assert _keys("persrm_eval_only") == {"eval_report"}
    assert len(_keys(FULL)) == 8  # the six contract assets, base_model, scalar_rm


def test_automation_is_registered_and_off_by_default():
    schedule = defs.resolve_schedule_def("persrm_weekly_full_retrain")
    assert schedule.job_name == FULL and schedule.cron_schedule == "0 3 * * 1"
    assert schedule.default_status == DefaultScheduleStatus.STOPPED
    sensor = defs.resolve_sensor_def("new_exemplars_sensor")
    assert sensor.job_name == FULL and sensor.minimum_interval_seconds == 60
    assert sensor.default_status == DefaultSensorStatus.STOPPED
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


def test_same_file_triggers_once_and_a_change_triggers_again(incoming):
    first = _tick()
    assert not first.run_requests and first.skip_message

    f = incoming / "alice" / "a1.txt"
    f.parent.mkdir()
    f.write_text("hello there, this is alice writing.\n")
    second = _tick(first.cursor)
    assert len(second.run_requests) == 1
    request = second.run_requests[0]
    assert new_exemplars_sensor.job_name == FULL and request.job_name in (None, FULL)
    assert request.run_key and request.tags["persrm/new_files"] == "alice/a1.txt"
    assert request.tags["persrm/profile"] == "default"
    assert json.loads(second.cursor) == {"alice/a1.txt": [f.stat().st_mtime_ns, f.stat().st_size]}
    validate_run_config(defs.resolve_job_def(FULL), request.run_config)

    # Same file, same cursor: nothing to do. Without the cursor the run_key repeats, so Dagster dedupes.
    again = _tick(second.cursor)
    assert not again.run_requests and again.skip_message
    assert _tick(None).run_requests[0].run_key == request.run_key

    f.write_text("hello there, this is alice writing, edited!\n")
    st = f.stat()
    os.utime(f, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000_000))
    changed = _tick(again.cursor)
    assert len(changed.run_requests) == 1
    assert changed.run_requests[0].run_key != request.run_key


def test_several_new_files_give_one_request_and_unwatched_files_are_ignored(incoming):
    for name in ("b.jsonl", "c.json", "d.txt", "skip.csv", ".hidden.txt"):
        (incoming / name).write_text("{}\n")
    result = _tick()
    assert len(result.run_requests) == 1
    assert set(json.loads(result.cursor)) == {"b.jsonl", "c.json", "d.txt"}


def test_weekly_schedule_requests_the_full_retrain(project, monkeypatch):
    monkeypatch.setenv("PERSRM_PROFILE", "smoke")
    schedule = build_weekly_retrain_schedule()
    context = build_schedule_context(scheduled_execution_time=datetime(2025, 1, 6, 3, tzinfo=timezone.utc))
    data = schedule.evaluate_tick(context)
    assert len(data.run_requests) == 1
    request = data.run_requests[0]
    assert schedule.job_name == FULL and request.job_name in (None, FULL)
    assert request.tags["persrm/profile"] == "smoke"
    assert request.run_config == {"resources": {"persrm": {"config": {"profile": "smoke"}}}}
    validate_run_config(defs.resolve_job_def(FULL), request.run_config)


def test_failure_sensor_appends_one_json_line(project):
    # No data/raw beside the copied params: raw_exemplars fails at once.
    instance = DagsterInstance.ephemeral()
    result = defs.resolve_job_def("persrm_data_only").execute_in_process(instance=instance, raise_on_error=False)
    assert not result.success
    context = build_run_status_sensor_context(
        sensor_name="record_run_failures", dagster_instance=instance, dagster_run=result.dagster_run,
        dagster_event=result.get_run_failure_event()).for_run_failure()
    record_run_failures(context)

    log = project / "data" / "reports" / "run_failures.jsonl"
    lines = log.read_text().splitlines()
    assert len(lines) == 1
    record = json.loads(lines[0])
    assert record["run_id"] == result.run_id and record["job_name"] == "persrm_data_only"
    assert record["failed_steps"] == ["raw_exemplars"]
    assert "no such file or directory" in record["error"]
