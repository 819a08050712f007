"""Drive `dagster dev` the way a user does: start it in its own process group, talk to it only
through HTTP (GraphQL), and stop the whole group. Used by scripts/ui_check.py (`make ui-check`)
and tests/test_webserver.py; it imports nothing from the project, only what a client has."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from contextlib import closing
from pathlib import Path

import httpx
import yaml

REPO = Path(__file__).resolve().parent.parent
LOCATION = "orchestration.definitions"  # `dagster dev -m orchestration.definitions` names its location so
FULL_RETRAIN_JOB = "persrm_full_retrain"
INGEST_JOB = "persrm_ingest_authors"
AUTHORS_PARTITIONS = "authors"  # raw_exemplars: one dynamic partition per author
CHAIN = ["raw_exemplars", "synthetic_pairs", "filtered_corpus", "sft_checkpoint", "rft_checkpoint", "eval_report"]
CORPUS_CHECKS = ("corpus_schema", "corpus_not_empty", "corpus_has_no_leakage", "corpus_labels_balanced")  # blocking
OFFLINE_ENV = {"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1",
               "TOKENIZERS_PARALLELISM": "false"}


class DagsterUIError(RuntimeError):
    pass


def free_port() -> int:
    with closing(socket.socket(socket.AF_INET, socket.SOCK_STREAM)) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def write_dagster_home(home: Path) -> Path:
    """A DAGSTER_HOME with telemetry off (an existing dagster.yaml is left as it is)."""
    home.mkdir(parents=True, exist_ok=True)
    cfg = home / "dagster.yaml"
    if not cfg.exists():
        cfg.write_text("telemetry:\n  enabled: false\n")
    return home


def copy_project(dest: Path) -> Path:
    """A project directory at `dest`: a copy of data/raw and a params.yaml whose relative paths resolve
    under `dest` (the directory of the params file is the data root). The real-author corpus, which
    the repo's params name relative to the repo, is pointed at by absolute path so the run evaluates
    the same things as one in the checkout. Returns the params file (for $PERSRM_PARAMS)."""
    shutil.copytree(REPO / "data" / "raw", dest / "data" / "raw")
    params = yaml.safe_load((REPO / "params.yaml").read_text(encoding="utf-8"))
    real = params.get("defaults", {}).get("eval", {}).get("real_authors", {})
    if isinstance(real, dict) and str(real.get("dir") or "").strip():
        d = Path(str(real["dir"]).strip())
        real["dir"] = str(d if d.is_absolute() else (REPO / d).resolve())
    path = dest / "params.yaml"
    path.write_text(yaml.safe_dump(params, sort_keys=False), encoding="utf-8")
    return path


def group_members(pgid: int) -> list[tuple[int, str, str]]:
    """(pid, state, command) of every process in group `pgid` that is not a zombie (from /proc)."""
    members = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            cmd = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace").strip()
        except OSError:
            continue
        fields = stat[stat.rfind(")") + 2:].split()  # after "pid (comm) ": state ppid pgrp ...
        state, pgrp = fields[0], int(fields[2])
        if pgrp == pgid and state not in ("Z", "X"):
            members.append((int(entry.name), state, cmd[:160]))
    return members


def _dagster_bin() -> str:
    """The `dagster` next to this interpreter (the project venv's), else the one on PATH."""
    here = Path(sys.executable).parent / "dagster"
    return str(here) if here.exists() else (shutil.which("dagster") or "dagster")


class DagsterDev:
    """`dagster dev -m orchestration.definitions -h 127.0.0.1 -p PORT` in its own session/process group,
    with its output in `log_path`. Use as a context manager; `stop()` ends the whole group."""

    def __init__(self, dagster_home: Path, log_path: Path, env: dict[str, str] | None = None,
                 port: int | None = None, cwd: Path = REPO):
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = Path(log_path)
        self.env = {**os.environ, **OFFLINE_ENV, **(env or {}), "DAGSTER_HOME": str(dagster_home)}
        self.env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{self.env.get('PATH', '')}"
        self.cwd = cwd
        self.proc: subprocess.Popen | None = None
        self.pgid: int | None = None
        self.client = httpx.Client(base_url=self.url, timeout=60.0, trust_env=False)
        self.stop_report: dict = {}

    # -- process ---------------------------------------------------------------------------------
    def start(self) -> DagsterDev:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        log = open(self.log_path, "ab")  # noqa: SIM115 - the child keeps writing to it
        cmd = [_dagster_bin(), "dev", "-m", LOCATION, "-h", "127.0.0.1", "-p", str(self.port)]
        try:
            self.proc = subprocess.Popen(cmd, cwd=self.cwd, env=self.env, stdout=log, stderr=subprocess.STDOUT,
                                         stdin=subprocess.DEVNULL, start_new_session=True)
        finally:
            log.close()
        self.pgid = os.getpgid(self.proc.pid)
        assert self.pgid == self.proc.pid, "dagster dev must lead its own process group"
        return self

    def log_tail(self, chars: int = 6000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-chars:]
        except OSError:
            return "(no log)"

    def _check_alive(self) -> None:
        if self.proc is not None and self.proc.poll() is not None:
            raise DagsterUIError(f"dagster dev exited with {self.proc.returncode}:\n{self.log_tail()}")

    def stop(self, grace: float = 30.0) -> dict:
        """SIGTERM to the group, SIGKILL to what is left after `grace` s. Returns what happened;
        'left' lists any (non-zombie) member still alive at the end (empty = the group is gone)."""
        report = {"sigkill": False, "left": []}
        if self.proc is None or self.pgid is None:
            return report
        try:
            os.killpg(self.pgid, signal.SIGTERM)
        except ProcessLookupError:
            pass
        deadline = time.monotonic() + grace
        while time.monotonic() < deadline:
            self.proc.poll()  # reap the leader so it does not linger as a zombie
            if self.proc.returncode is not None and not group_members(self.pgid):
                break
            time.sleep(0.5)
        else:
            report["sigkill"] = True
            report["before_sigkill"] = group_members(self.pgid)
            try:
                os.killpg(self.pgid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                pass
            end = time.monotonic() + 10
            while group_members(self.pgid) and time.monotonic() < end:
                time.sleep(0.2)
        report["left"] = group_members(self.pgid)
        report["returncode"] = self.proc.returncode
        self.client.close()
        self.stop_report = report
        return report

    def __enter__(self) -> DagsterDev:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    # -- HTTP ------------------------------------------------------------------------------------
    def graphql(self, query: str, variables: dict | None = None) -> dict:
        resp = self.client.post("/graphql", json={"query": query, "variables": variables or {}})
        if resp.status_code != 200:
            raise DagsterUIError(f"POST /graphql -> {resp.status_code}: {resp.text[:2000]}")
        body = resp.json()
        if body.get("errors"):
            raise DagsterUIError(f"GraphQL errors: {body['errors']}")
        return body["data"]

    def wait_ready(self, timeout: float = 120.0) -> dict:
        """Until /server_info answers and the code location has loaded; returns the server info.
        Raises (with the server's log) on timeout, if the process dies, or if the location fails to load."""
        deadline = time.monotonic() + timeout
        info, last = None, ""
        while time.monotonic() < deadline:
            self._check_alive()
            try:
                if info is None:
                    r = self.client.get("/server_info", timeout=5.0)
                    if r.status_code == 200:
                        info = r.json()
                if info is not None:
                    entry = self.location_entry()
                    if entry is not None and entry["loadStatus"] == "LOADED":
                        loc = entry["locationOrLoadError"]
                        if loc["__typename"] == "PythonError":
                            raise DagsterUIError(f"code location failed to load: {loc['message']}\n"
                                                 + "".join(loc.get("stack") or []))
                        return info
            except httpx.HTTPError as e:
                last = repr(e)
            time.sleep(1.0)
        raise DagsterUIError(f"dagster dev not ready after {timeout:.0f} s ({last}):\n{self.log_tail()}")

    def location_entry(self) -> dict | None:
        data = self.graphql("""
            query { workspaceOrError { __typename
              ... on Workspace { locationEntries { name loadStatus
                locationOrLoadError { __typename
                  ... on RepositoryLocation { name repositories { name jobs { name } } }
                  ... on PythonError { message stack } } } }
              ... on PythonError { message } } }""")
        ws = data["workspaceOrError"]
        if ws["__typename"] != "Workspace":
            raise DagsterUIError(f"workspace error: {ws.get('message')}")
        return next((e for e in ws["locationEntries"] if e["name"] == LOCATION), None)

    def repository_name(self) -> str:
        loc = self.location_entry()["locationOrLoadError"]
        for repo in loc["repositories"]:
            if any(j["name"] == FULL_RETRAIN_JOB for j in repo["jobs"]):
                return repo["name"]
        raise DagsterUIError(f"no repository of {LOCATION} has the job {FULL_RETRAIN_JOB}: {loc}")

    def dismiss_nux(self) -> bool:
        """Dagster's 'Join the Dagster community' prompt covers every page served on localhost until it
        is dismissed; dismiss it as its Skip button does (setNuxSeen, kept in DAGSTER_HOME/.nux/).
        Returns whether it was showing."""
        if not self.graphql("query { shouldShowNux }")["shouldShowNux"]:
            return False
        self.graphql("mutation { setNuxSeen }")
        return True

    # -- partitions --------------------------------------------------------------------------------
    def add_partitions(self, keys: list[str], partitions_def: str = AUTHORS_PARTITIONS) -> None:
        """addDynamicPartition for each key (as the UI's "add partition" does); existing keys are fine."""
        selector = {"repositoryLocationName": LOCATION, "repositoryName": self.repository_name()}
        for key in keys:
            res = self.graphql("""
                mutation Add($r: RepositorySelector!, $d: String!, $k: String!) {
                  addDynamicPartition(repositorySelector: $r, partitionsDefName: $d, partitionKey: $k) {
                    __typename ... on PythonError { message } ... on UnauthorizedError { message } } }""",
                {"r": selector, "d": partitions_def, "k": key})["addDynamicPartition"]
            if res["__typename"] not in ("AddDynamicPartitionSuccess", "DuplicateDynamicPartitionError"):
                raise DagsterUIError(f"addDynamicPartition({key}) -> {res}")

    def ingest_authors(self, authors: list[str], run_config: dict | None = None,
                       tags: dict[str, str] | None = None) -> str:
        """Register `authors` as partitions and ingest them all in one run (a partition range, which
        raw_exemplars' single-run backfill policy takes in one step). Returns the run id."""
        self.add_partitions(sorted(authors))
        keys = [k for k in self.partition_keys() if k in set(authors)]
        if len(keys) != len(set(authors)):
            raise DagsterUIError(f"partitions of raw_exemplars {keys} lack some of {sorted(authors)}")
        range_tags = {"dagster/asset_partition_range_start": keys[0], "dagster/asset_partition_range_end": keys[-1]}
        return self.launch_job(INGEST_JOB, run_config=run_config, tags={**(tags or {}), **range_tags})

    def partition_keys(self, asset: str = "raw_exemplars") -> list[str]:
        """The asset's partition keys in the instance's order (dynamic partitions: the order added)."""
        data = self.graphql("""
            query($key: AssetKeyInput!) { assetNodeOrError(assetKey: $key) { __typename
              ... on AssetNode { partitionKeys } ... on Error { message } } }""", {"key": {"path": [asset]}})
        res = data["assetNodeOrError"]
        if res["__typename"] != "AssetNode":
            raise DagsterUIError(f"assetNodeOrError({asset}) -> {res}")
        return res["partitionKeys"]

    # -- runs ------------------------------------------------------------------------------------
    def launch_job(self, job: str = FULL_RETRAIN_JOB, run_config: dict | None = None,
                   tags: dict[str, str] | None = None) -> str:
        """launchRun of `job` (as the Launchpad does); returns the run id."""
        params = {
            "selector": {"repositoryLocationName": LOCATION, "repositoryName": self.repository_name(),
                         "jobName": job},
            "runConfigData": run_config or {},
            "executionMetadata": {"tags": [{"key": k, "value": v} for k, v in (tags or {}).items()]},
        }
        data = self.graphql("""
            mutation Launch($p: ExecutionParams!) { launchRun(executionParams: $p) { __typename
              ... on LaunchRunSuccess { run { runId status } }
              ... on RunConfigValidationInvalid { errors { message } }
              ... on PythonError { message stack }
              ... on Error { message } } }""", {"p": params})
        res = data["launchRun"]
        if res["__typename"] != "LaunchRunSuccess":
            raise DagsterUIError(f"launchRun -> {res}")
        return res["run"]["runId"]

    def run_status(self, run_id: str) -> str:
        run = self.graphql("query($id: ID!) { runOrError(runId: $id) { __typename ... on Run { status } "
                           "... on Error { message } } }", {"id": run_id})["runOrError"]
        if run["__typename"] != "Run":
            raise DagsterUIError(f"runOrError({run_id}) -> {run}")
        return run["status"]

    def run_errors(self, run_id: str) -> list[str]:
        """The run's failure events (step failures with their root cause, run failure, error logs)."""
        lines, cursor = [], None
        while True:
            data = self.graphql("""
                query($id: ID!, $after: String) { logsForRun(runId: $id, afterCursor: $after, limit: 1000) {
                  __typename
                  ... on EventConnection { cursor hasMore events { __typename
                    ... on MessageEvent { message level stepKey }
                    ... on ExecutionStepFailureEvent { error { message causes { message } } }
                    ... on RunFailureEvent { error { message causes { message } } } } } } }""",
                {"id": run_id, "after": cursor})["logsForRun"]
            if data["__typename"] != "EventConnection":
                return [f"logsForRun -> {data}"]
            for ev in data["events"]:
                if ev["__typename"] in ("ExecutionStepFailureEvent", "RunFailureEvent") or ev.get("level") == "ERROR":
                    err = ev.get("error") or {}
                    causes = " <- ".join(c["message"].strip() for c in err.get("causes") or [])
                    lines.append(f"[{ev['__typename']} {ev.get('stepKey') or ''}] {ev.get('message', '')} "
                                 f"{(err.get('message') or '').strip()} {causes}".strip())
            if not data["hasMore"]:
                return lines
            cursor = data["cursor"]

    def wait_for_run(self, run_id: str, timeout: float = 480.0, poll: float = 1.0,
                     on_status=None) -> str:
        """Poll runOrError until SUCCESS; raise with the run's error events on FAILURE/CANCELED/timeout."""
        deadline = time.monotonic() + timeout
        status = None
        while time.monotonic() < deadline:
            self._check_alive()
            new = self.run_status(run_id)
            if new != status and on_status:
                on_status(new)
            status = new
            if status == "SUCCESS":
                return status
            if status in ("FAILURE", "CANCELED"):
                raise DagsterUIError(f"run {run_id} ended {status}:\n" + "\n".join(self.run_errors(run_id))
                                     + f"\n--- dagster dev log ---\n{self.log_tail(3000)}")
            time.sleep(poll)
        raise DagsterUIError(f"run {run_id} still {status} after {timeout:.0f} s:\n"
                             + "\n".join(self.run_errors(run_id)) + f"\n--- dagster dev log ---\n{self.log_tail(3000)}")

    # -- assets ----------------------------------------------------------------------------------
    def asset_nodes(self) -> dict[str, dict]:
        """Asset key (last path part) -> its node: latest materialization (with metadata) and checks."""
        data = self.graphql("""
            query { assetNodes(loadMaterializations: true) {
              assetKey { path } groupName
              assetMaterializations(limit: 1) { runId timestamp
                metadataEntries { __typename label
                  ... on PathMetadataEntry { path }
                  ... on TextMetadataEntry { text }
                  ... on IntMetadataEntry { intValue }
                  ... on FloatMetadataEntry { floatValue }
                  ... on MarkdownMetadataEntry { mdStr }
                  ... on JsonMetadataEntry { jsonString } } }
              assetChecksOrError { __typename
                ... on AssetChecks { checks { name blocking
                  executionForLatestMaterialization { runId status
                    evaluation { success metadataEntries { label } } } } } } } }""")
        return {n["assetKey"]["path"][-1]: n for n in data["assetNodes"]}

    def latest_materialization(self, asset: str) -> dict | None:
        data = self.graphql("""
            query($key: AssetKeyInput!) { assetOrError(assetKey: $key) { __typename
              ... on Asset { assetMaterializations(limit: 1) { runId timestamp } } } }""",
            {"key": {"path": [asset]}})["assetOrError"]
        if data["__typename"] != "Asset" or not data["assetMaterializations"]:
            return None
        return data["assetMaterializations"][0]


def metadata(materialization: dict) -> dict[str, object]:
    """label -> value of a materialization's metadata entries (as queried in `asset_nodes`)."""
    out = {}
    for e in materialization["metadataEntries"]:
        value = next((e[k] for k in ("path", "text", "intValue", "floatValue", "mdStr", "jsonString") if k in e),
                     e["__typename"])
        out[e["label"]] = value
    return out
