"""`make ui-check`: start `dagster dev` on a free loopback port against the project's DAGSTER_HOME,
make sure `eval_report` has a materialization to show, and take headless-Chromium screenshots of the
asset graph, the per-author partitions of raw_exemplars, the synthetic_pairs, sft_checkpoint and
eval_report asset pages, and the HTML report itself into data/reports/ui/.

If the project's instance has no materialization of eval_report yet (or with --materialize), the smoke
profile is run first through GraphQL (the bundled authors registered as partitions of raw_exemplars and
ingested in one run, then the full retrain) with the `store` resource's root pinned to
data/reports/ui/smoke_root (a copy of data/raw is put there), so the artifacts in data/ that `make demo` wrote are never
overwritten and the paths the UI shows stay valid after this script exits.

Each page is loaded twice by Chromium with the same virtual-time budget: once for the PNG, once with
--dump-dom, whose text must name what the page is about (not a loading spinner). Each PNG must be
non-trivial: big enough, the window's size, and not (nearly) one colour. The server's whole process
group is stopped at the end, whatever happened."""

from __future__ import annotations

import argparse
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from urllib.parse import quote

from dagster_ui import CHAIN, FULL_RETRAIN_JOB, LOCATION, DagsterDev, DagsterUIError, write_dagster_home

REPO = Path(__file__).resolve().parent.parent

GROUP = "persrm"  # the asset group of the chain (assets/chain.py)
WINDOW = (1600, 1000)
TALL = (1600, 2600)  # an asset page: its metadata table runs well below the first screen


def log(msg: str) -> None:
    print(f"[ui-check {time.strftime('%H:%M:%S')}] {msg}", flush=True)


def find_chromium() -> str:
    for name in ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable"):
        if path := shutil.which(name):
            return path
    raise SystemExit("ui-check: no chromium on PATH (the Makefile target installs it: apt-get install -y chromium)")


def chromium(browser: str, url: str, budget_ms: int, *, screenshot: Path | None = None, timeout: float = 180.0,
             window: tuple[int, int] = WINDOW) -> str:
    """One headless Chromium load of `url` in a fresh profile; returns stdout (the DOM with --dump-dom)."""
    with tempfile.TemporaryDirectory(prefix="ui-check-chromium-") as profile:
        cmd = [browser, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
               "--disable-background-networking", "--disable-component-update", "--disable-sync",
               "--disable-dev-shm-usage", "--hide-scrollbars", f"--user-data-dir={profile}",
               f"--window-size={window[0]},{window[1]}", f"--virtual-time-budget={budget_ms}"]
        cmd += [f"--screenshot={screenshot}"] if screenshot else ["--dump-dom"]
        proc = subprocess.Popen([*cmd, url], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                start_new_session=True)
        try:
            out, err = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.communicate()
            raise DagsterUIError(f"chromium did not finish {url} in {timeout:.0f} s") from None
        finally:
            try:  # renderer/zygote helpers that outlived the browser
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        if proc.returncode != 0:
            raise DagsterUIError(f"chromium exited {proc.returncode} on {url}:\n{err[-3000:]}")
        return out


def dom_text(html: str) -> str:
    html = re.sub(r"(?is)<(script|style)\b.*?</\1>", " ", html)
    return re.sub(r"\s+", " ", re.sub(r"(?s)<[^>]+>", " ", html))


def check_png(path: Path, window: tuple[int, int] = WINDOW) -> dict:
    """Size, dimensions and colour spread of a screenshot; raises if it looks blank."""
    from PIL import Image

    size = path.stat().st_size if path.is_file() else 0
    if size < 20_000:
        raise DagsterUIError(f"{path}: {size} bytes, too small for a rendered page")
    with Image.open(path) as im:
        rgb = im.convert("RGB")
        dims = rgb.size
        colours = rgb.getcolors(maxcolors=dims[0] * dims[1])
    top = max(c for c, _ in colours) / (dims[0] * dims[1])
    stats = {"bytes": size, "size": dims, "colours": len(colours), "top_colour_share": round(top, 3)}
    if dims != window:
        raise DagsterUIError(f"{path}: {dims}, expected {window}")
    if len(colours) < 64 or top > 0.97:
        raise DagsterUIError(f"{path} is (nearly) one colour: {stats}")
    return stats


def materialize_smoke(server: DagsterDev, smoke_root: Path, timeout: float) -> str:
    if smoke_root.exists():
        shutil.rmtree(smoke_root)
    shutil.copytree(REPO / "data" / "raw", smoke_root / "data" / "raw")
    config = {"resources": {"compute": {"config": {"profile": "smoke", "progress": False}},
                            "store": {"config": {"root": str(smoke_root)}}}}
    tags = {"persrm/profile": "smoke", "persrm/launched_by": "make ui-check"}
    authors = sorted(p.name for p in (smoke_root / "data" / "raw").iterdir() if p.is_dir())
    log(f"ingesting {len(authors)} authors (partitions of raw_exemplars) into {smoke_root} ...")
    started = time.monotonic()
    ingest_id = server.ingest_authors(authors, run_config=config, tags=tags)
    server.wait_for_run(ingest_id, timeout=timeout, on_status=lambda s: log(f"run {ingest_id}: {s}"))
    log(f"materializing {FULL_RETRAIN_JOB} on the smoke profile into {smoke_root} ...")
    run_id = server.launch_job(FULL_RETRAIN_JOB, run_config=config, tags=tags)
    server.wait_for_run(run_id, timeout=timeout, on_status=lambda s: log(f"run {run_id}: {s}"))
    log(f"runs {ingest_id} and {run_id} succeeded in {time.monotonic() - started:.0f} s")
    return run_id


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", type=Path, default=REPO / "data" / "reports" / "ui")
    ap.add_argument("--materialize", action="store_true",
                    help="run the smoke profile even if eval_report already has a materialization")
    ap.add_argument("--budget-ms", type=int, default=15000, help="Chromium's --virtual-time-budget")
    ap.add_argument("--run-timeout", type=float, default=900.0)
    args = ap.parse_args(argv)

    browser = find_chromium()
    version = subprocess.run([browser, "--version"], capture_output=True, text=True).stdout.strip()
    log(f"browser: {browser} ({version})")
    home = write_dagster_home(Path(os.environ.get("DAGSTER_HOME") or REPO / ".dagster").resolve())
    out = args.out.resolve()
    out.mkdir(parents=True, exist_ok=True)
    server = DagsterDev(dagster_home=home, log_path=out / "dagster_dev.log")
    log(f"starting dagster dev on {server.url} (DAGSTER_HOME={home}, log {server.log_path})")
    started = time.monotonic()
    server.start()
    try:
        server.wait_ready(timeout=180)
        log(f"server ready after {time.monotonic() - started:.0f} s (process group {server.pgid})")
        latest = server.latest_materialization("eval_report")
        if latest is None or args.materialize:
            log("eval_report has no materialization yet" if latest is None else "--materialize given")
            materialize_smoke(server, out / "smoke_root", args.run_timeout)
        else:
            log(f"eval_report already materialized (run {latest['runId']}): not running anything")

        if server.dismiss_nux():
            log("dismissed Dagster's 'Join the Dagster community' prompt, as its Skip button does "
                f"(recorded in {home / '.nux'})")
        repo_name = server.repository_name()
        repo_path = LOCATION if repo_name == "__repository__" else f"{repo_name}@{LOCATION}"
        pages = [
            ("asset_graph", f"{server.url}/locations/{quote(repo_path)}/asset-groups/{GROUP}", CHAIN, WINDOW),
            ("raw_exemplars_partitions", f"{server.url}/assets/raw_exemplars?view=partitions&partition=terse_engineer",
             ["raw_exemplars", "terse_engineer"], WINDOW),
            ("eval_report", f"{server.url}/assets/eval_report", ["eval_report", "accuracy_rft"], TALL),
            # The metadata a user's trial asked for: pairs per author as a table, the column schema,
            # row counts, and training metrics shown by name (not masked by the secret redactor).
            ("synthetic_pairs", f"{server.url}/assets/synthetic_pairs", ["synthetic_pairs", "pairs_by_author"], TALL),
            ("sft_checkpoint", f"{server.url}/assets/sft_checkpoint",
             ["sft_checkpoint", "mean_token_accuracy_last"], TALL),
        ]
        # The HTML report itself, as a person opens it: the newest of the project's and this
        # script's smoke run's.
        reports = [p for p in (REPO / "data/reports/eval/report.html", out / "smoke_root/data/reports/eval/report.html")
                   if p.is_file()]
        if reports:
            report = max(reports, key=lambda p: p.stat().st_mtime)
            pages.append(("report", report.as_uri(), ["Does the trained judge beat every baseline",
                                                      "Dataset and settings"], TALL))
        else:
            log("no report.html found to screenshot")
        for name, url, expected, window in pages:
            png = out / f"{name}.png"
            png.unlink(missing_ok=True)
            t0 = time.monotonic()
            text = dom_text(chromium(browser, url, args.budget_ms, window=window))
            missing = [w for w in expected if w not in text]
            if "***" in text:
                raise DagsterUIError(f"{url} shows a redacted value (***): a metric masked as a secret?")
            if missing or "Join the Dagster community" in text:
                raise DagsterUIError(f"{url} rendered without {missing} or behind a prompt "
                                     "(a spinner, an error, the community pop-up?); "
                                     f"its text starts: {text[:600]!r}")
            chromium(browser, url, args.budget_ms, screenshot=png, window=window)
            stats = check_png(png, window)
            log(f"{png.relative_to(REPO) if png.is_relative_to(REPO) else png}: {url} -> {stats} "
                f"({time.monotonic() - t0:.0f} s)")
    except DagsterUIError as e:
        log(f"FAILED: {e}")
        rc = 1
    else:
        rc = 0
    finally:  # also on Ctrl-C: never leave the server behind
        report = server.stop(grace=30)
        log(f"dagster dev stopped (SIGKILL needed: {report['sigkill']}; "
            f"left in its group: {report['left'] or 'nothing'})")
    if report["left"]:
        rc = 1
    log(f"{'done' if rc == 0 else 'failed'} in {time.monotonic() - started:.0f} s")
    return rc


if __name__ == "__main__":
    sys.exit(main())
