"""DVC over a clean copy of the repository on the smoke profile: the stages' deps and outs are what
the chain reads and writes, `dvc repro` is then up to date, an eval-only change reruns only the eval
stage's command, and metrics and plots read back."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parent.parent
DVC = REPO / ".tools" / "bin" / "dvc"

pytestmark = pytest.mark.skipif(not DVC.exists() or not (REPO / ".venv").exists(),
                                reason="dvc is installed by `make` into .tools/ (run `make test`)")


def _copy_tracked(dst: Path) -> None:
    files = subprocess.run(["git", "ls-files", "-z"], cwd=REPO, capture_output=True, check=True).stdout
    for rel in filter(None, files.decode().split("\0")):
        target = dst / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(REPO / rel, target)


def test_dvc_records_the_chain_then_reruns_only_what_a_change_touches(tmp_path, smoke_root):
    """The workspace is seeded with the session's smoke chain (tests/conftest.py: the same code and
    params through Dagster), which `dvc commit` records as every stage's outputs: so each stage's
    declared deps and outs are what the chain reads and writes (a missing one fails the commit), and
    `dvc repro` then has nothing to do. The eval stage's command then runs for real below."""
    work = tmp_path / "clone"
    _copy_tracked(work)
    (work / ".venv").symlink_to(REPO / ".venv")
    params = work / "params.yaml"
    params.write_text(params.read_text().replace("profile: default", "profile: smoke", 1))
    for produced in (smoke_root / "data").iterdir():  # data/raw is the tracked sample, as in the smoke chain
        if produced.is_dir() and produced.name != "raw":  # (not the chain's lock files)
            shutil.copytree(produced, work / "data" / produced.name, dirs_exist_ok=True)
    subprocess.run(["git", "init", "-q"], cwd=work, check=True)
    env = {k: v for k, v in os.environ.items() if k != "PERSRM_PARAMS"}
    env |= {"DVC_NO_ANALYTICS": "1", "DVC_SITE_CACHE_DIR": str(tmp_path / "dvc-site"),
            "DAGSTER_HOME": str(tmp_path / "dagster")}
    (tmp_path / "dagster").mkdir()
    (tmp_path / "dagster" / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")

    dirty = subprocess.run([str(DVC), "status"], cwd=work, env=env, capture_output=True, text=True)
    assert all(f"{stage}:" in dirty.stdout for stage in STAGES), dirty.stdout[-3000:]  # nothing recorded yet
    commit = subprocess.run([str(DVC), "commit", "--force"], cwd=work, env=env, capture_output=True, text=True)
    assert commit.returncode == 0, commit.stdout[-3000:] + commit.stderr[-3000:]
    lock = yaml.safe_load((work / "dvc.lock").read_text())
    assert set(lock["stages"]) == set(STAGES)
    metrics = json.loads((work / "data/reports/eval/metrics.json").read_text())
    assert metrics["settings"]["profile"] == "smoke"
    assert {"base", "sft", "rft", "random", "length"} <= set(metrics["judges"])

    second = subprocess.run([str(DVC), "repro"], cwd=work, env=env, capture_output=True, text=True)
    assert second.returncode == 0
    assert "Data and pipelines are up to date" in second.stdout

    shown = subprocess.run([str(DVC), "metrics", "show", "--json"], cwd=work, env=env, capture_output=True,
                           text=True, check=True)
    [files] = [v["data"] for v in json.loads(shown.stdout).values()]
    rft = files["data/reports/eval/scores/rft.json"]["data"]  # one row a judge, a few columns
    assert rft["eval_accuracy"] == metrics["judges"]["rft"]["accuracy"] and len(rft) <= 5
    assert set(files) >= {f"data/reports/eval/scores/{name}.json" for name in metrics["judges"]}
    table = subprocess.run([str(DVC), "metrics", "show"], cwd=work, env=env, capture_output=True, text=True,
                           check=True).stdout
    assert max(len(line) for line in table.splitlines()) < 160, table  # it reads in a terminal
    plots = subprocess.run([str(DVC), "plots", "show", "--json"], cwd=work, env=env, capture_output=True, text=True)
    assert plots.returncode == 0, plots.stderr[-2000:]
    for name in ("accuracy.json", "by_exemplar_count.json", "sft_curve.json", "rft_curve.json"):
        assert name in plots.stdout
    page = subprocess.run([str(DVC), "plots", "show", "-o", str(tmp_path / "plots")], cwd=work, env=env,
                          capture_output=True, text=True)
    assert page.returncode == 0, page.stderr[-2000:]
    html = (tmp_path / "plots" / "index.html").read_text()
    assert "cdn.jsdelivr" not in html and "vegaEmbed(" in html  # offline: the libraries are inline
    assert all(name in html for name in ("accuracy.json", "sft_curve.json"))

    committed_rft = rft["eval_accuracy"]
    # An eval-only change reruns only the eval stage, through `dvc exp run -S` (an experiment).
    subprocess.run(["git", "add", "-A"], cwd=work, check=True)
    subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "chain"], cwd=work, check=True)
    exp = subprocess.run([str(DVC), "exp", "run", "-S", "profiles.smoke.eval.max_pairs=6"], cwd=work, env=env,
                         capture_output=True, text=True)
    assert exp.returncode == 0, exp.stdout[-3000:] + exp.stderr[-3000:]
    ran = [s for s in STAGES if f"Running stage '{s}'" in exp.stdout]
    assert ran == ["eval_report"], exp.stdout[-3000:]
    metrics = json.loads((work / "data/reports/eval/metrics.json").read_text())
    assert metrics["settings"]["eval_pairs"] == 6
    # The scores are versioned (git-tracked, not ignored), so `dvc metrics diff` compares the
    # experiment with the committed figures.
    assert subprocess.run(["git", "check-ignore", "-q", "data/reports/eval/scores/rft.json"], cwd=work).returncode == 1
    diff = subprocess.run([str(DVC), "metrics", "diff", "--all", "--json"], cwd=work, env=env, capture_output=True,
                          text=True, check=True)
    rft_diff = json.loads(diff.stdout)["data/reports/eval/scores/rft.json"]["eval_accuracy"]
    assert rft_diff["old"] == committed_rft and rft_diff["new"] == metrics["judges"]["rft"]["accuracy"]


STAGES = ("raw_exemplars", "synthetic_pairs", "filtered_corpus", "style_encoder", "evidence_model", "base_model",
          "sft_checkpoint", "rft_checkpoint", "scalar_rm", "eval_report")


def test_dvc_yaml_is_what_the_stage_registry_renders():
    """dvc.yaml is written from the stages' own declarations (`make dvc-yaml`), not kept by hand."""
    from persrm_core.pipeline.dvc_yaml import render

    assert (REPO / "dvc.yaml").read_text(encoding="utf-8") == render(), "dvc.yaml is stale: run `make dvc-yaml`"


def test_each_stage_tracks_exactly_the_params_sections_it_reads_and_its_code():
    """Each DVC stage's params are the sections its @stage declares (which its StageSettings view
    enforces), for every profile; its deps include the source of every module it runs."""
    import yaml

    from persrm_core.config import SECTIONS
    from persrm_core.pipeline.stages import STAGES as REGISTRY
    from persrm_core.pipeline.stages import stage_sections

    sections_of = stage_sections()
    dvc = yaml.safe_load((REPO / "dvc.yaml").read_text())
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    profiles = list(params["profiles"])
    assert set(dvc["stages"]) == set(sections_of) == set(REGISTRY) == set(STAGES)
    for name, prof in params["profiles"].items():
        assert set(prof) == set(SECTIONS), f"profile {name} must name every section ({{}} for none)"
    for stage, sections in sections_of.items():
        tracked = set(dvc["stages"][stage]["params"])
        expected = {"profile", "paths"} | {f"defaults.{s}" for s in sections} | {
            f"profiles.{p}.{s}" for p in profiles for s in sections}
        assert expected <= tracked, (stage, sorted(expected - tracked))
        extra = {t for t in tracked - expected if t != "defaults.seed"}
        assert not extra, (stage, sorted(extra))
        assert ("defaults.seed" in tracked) == ("seed" in REGISTRY[stage].reads)
        assert dvc["stages"][stage]["cmd"] == "${run} " + stage  # one asset, through Dagster
    deps = {k: set(v["deps"]) for k, v in dvc["stages"].items()}
    # the code each stage runs, spot-checked by hand: the module of its stage function, and what it calls
    assert {"persrm_core/pipeline/data.py", "persrm_core/synthesis/pairs.py", "persrm_core/synthesis/swap.py",
            "persrm_core/resources/synonyms.tsv", "persrm_core/llm/generation.py"} <= deps["synthetic_pairs"]
    assert {"persrm_core/data/corpus.py", "persrm_core/data/neardup.py", "persrm_core/data/minhash.py"} <= deps[
        "filtered_corpus"]
    assert {"persrm_core/training/trainers.py", "persrm_core/training/teacher.py",
            "persrm_core/judging/rationale.py"} <= deps["sft_checkpoint"]
    assert {"persrm_core/judging/judge.py", "persrm_core/judging/closing.py",  # closing: a lazy import in judge.py
            "persrm_core/evaluation/report.py", "persrm_core/evaluation/plots.py"} <= deps["eval_report"]
    assert "persrm_core/evaluation/report.py" not in deps["sft_checkpoint"]  # not everything is everyone's
    assert not any(d.endswith("__init__.py") or d == "persrm_core/config.py" for ds in deps.values() for d in ds)
    assert dvc["vars"][0]["run"].endswith("persrm run --no-incoming --select")  # repro reads data/raw only


DVC_PYTHON = REPO / ".tools" / "uv" / "dvc" / "bin" / "python"


def test_params_yaml_is_in_the_form_dvc_writes_back(tmp_path):
    """`dvc exp run -S key=value` rewrites params.yaml with DVC's own YAML writer: the file is kept in
    that form, so a set value changes its own line and nothing else (comments and layout stay)."""
    import difflib

    copy = tmp_path / "params.yaml"
    shutil.copy(REPO / "params.yaml", copy)
    script = ("import sys\nfrom dvc.utils.serialize import modify_yaml\n"
              "with modify_yaml(sys.argv[1]) as d:\n"
              "    d['profiles']['smoke']['eval']['max_pairs'] = 6\n"
              "    d['defaults']['sft']['learning_rate'] = 0.003\n")
    subprocess.run([str(DVC_PYTHON), "-c", script, str(copy)], check=True)
    before, after = (REPO / "params.yaml").read_text().splitlines(), copy.read_text().splitlines()
    changed = [line for line in difflib.unified_diff(before, after, lineterm="", n=0)
               if line[:1] in "+-" and not line.startswith(("+++", "---"))]
    assert sorted(changed) == ["+      max_pairs: 6", "+    learning_rate: 0.003",
                               "-      max_pairs: 12", "-    learning_rate: 0.002"], changed


def test_dvc_plots_show_works_offline(tmp_path):
    """The project's HTML template carries vega, vega-lite and vega-embed inline: the page DVC writes
    loads nothing from a CDN."""
    import configparser

    config = configparser.ConfigParser()
    config.read(REPO / ".dvc" / "config")
    template = (REPO / ".dvc" / config["plots"]["html_template"].strip()).resolve()
    page = template.read_text()
    assert "{plot_divs}" in page and "{scripts}" not in page  # DVC's CDN script tags have no place to go
    assert "http://" not in page.split("<html>", 1)[1].split("<script", 1)[0]
    for lib in ("vega 5.20.2", "vega-lite 5.2.0", "vega-embed 6.18.2"):
        assert f"/* {lib} */" in page
    assert "cdn.jsdelivr" not in page and "src=\"http" not in page
