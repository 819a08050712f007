"""dvc.yaml, rendered from the stage registry (`persrm_core.pipeline.stages`).

    python -m persrm_core.pipeline.dvc_yaml --write    # (make dvc-yaml) rewrite dvc.yaml
    python -m persrm_core.pipeline.dvc_yaml --check    # exit 1 when dvc.yaml is not what the code says

Each stage runs its Dagster asset (`persrm run --select`); its params are the sections it reads, in
`defaults` and in every profile of params.yaml; its deps are its input data and the source files
of the code it runs; its outs are its artifacts. The eval stage's scores and plot data are DVC
metrics and plots.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import yaml

from persrm_core.pipeline.stages import STAGES, code_deps, stage_sections

REPO = Path(__file__).resolve().parents[2]
HEADER = """\
# Written by `make dvc-yaml` (persrm_core/pipeline/dvc_yaml.py) from the stage registry: edit the
# stages' @stage declarations in persrm_core/pipeline/, not this file (tests/test_dvc.py checks it).
# `dvc repro` rebuilds the chain. Each stage materializes one Dagster asset through
# `persrm run --select`, so the logic lives once (persrm_core), wrapped once (assets/).
# The profile is `profile:` in params.yaml (`dvc exp run -S profile=smoke` switches it).
# `--no-incoming`: DVC reproduces from data/raw as versioned; texts waiting in data/incoming are
# landed by the Dagster ingest (the sensor, or `persrm run --authors`), never by a repro.
# A stage's params are exactly the sections it reads, in `defaults` and in every profile, so
# changing an eval-only setting reruns only eval_report; its deps include the code it runs.
vars:
- run: .venv/bin/persrm run --no-incoming --select

stages:
"""
# The eval stage's outputs: report files, then metrics.json uncached, the per-judge scores as DVC
# metrics and the plot data as DVC plots (committed to git: `dvc metrics diff` reads them).
REPORT_FILES = ("report.md", "report.html", "judgments.jsonl", "accuracy.png", "by_negative_type.png",
                "training_curves.png", "real_authors.png", "by_exemplar_count.png")
PLOTS = """
# `dvc plots show` renders these from the eval stage's plot data (persrm_core.evaluation.report.plot_data).
plots:
  - data/reports/eval/plots/accuracy.json:
      title: Accuracy per judge (eval split)
      x: judge
      y: accuracy
      template: bar_horizontal
  - data/reports/eval/plots/by_exemplar_count.json:
      title: Accuracy by number of exemplars
      x: exemplars
      y: accuracy
  - data/reports/eval/plots/sft_curve.json:
      title: SFT loss
      x: step
      y: loss
  - data/reports/eval/plots/rft_curve.json:
      title: RFT mean reward
      x: step
      y: reward
"""


def _path(paths: dict, ref: str) -> str:
    key, _, sub = ref.partition("/")
    return f"{paths[key].rstrip('/')}/{sub}" if sub else paths[key]


def render(params_path: Path = REPO / "params.yaml") -> str:
    params = yaml.safe_load(params_path.read_text(encoding="utf-8"))
    paths, profiles = params["paths"], list(params.get("profiles") or {})
    sections = stage_sections()
    out = [HEADER]
    for name, st in STAGES.items():
        lines = [f"  {name}:", f"    cmd: ${{run}} {name}", "    deps:"]
        lines += [f"    - {_path(paths, d)}" for d in st.deps]
        lines += [f"    - {f}" for f in code_deps(st)]
        lines += ["    params:", "    - profile", "    - paths"]
        lines += ["    - defaults.seed"] * ("seed" in st.reads)
        lines += [f"    - defaults.{s}" for s in sections[name]]
        lines += [f"    - profiles.{p}.{s}" for p in profiles for s in sections[name]]
        lines.append("    outs:")
        if name == "eval_report":
            report = paths["report"].rstrip("/")
            lines += [f"    - {report}/{f}" for f in REPORT_FILES]
            lines += [f"    - {report}/metrics.json:", "        cache: false",
                      "    # one small file a judge: `dvc metrics show` prints a row a judge, `dvc metrics diff` "
                      "compares them",
                      "    metrics:", f"    - {report}/scores:", "        cache: false",
                      "    plots:", f"    - {report}/plots:", "        cache: false"]
        else:
            lines += [f"    - {_path(paths, o)}" for o in st.outs]
        out.append("\n".join(lines) + "\n")
    return "\n".join(out) + PLOTS


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--write", action="store_true", help="rewrite dvc.yaml")
    ap.add_argument("--check", action="store_true", help="exit 1 if dvc.yaml differs from the registry")
    args = ap.parse_args(argv)
    text, target = render(), REPO / "dvc.yaml"
    if args.write:
        target.write_text(text, encoding="utf-8")
        return 0
    if args.check:
        if target.read_text(encoding="utf-8") != text:
            print("dvc.yaml is not what the stage registry says: run `make dvc-yaml`", file=sys.stderr)
            return 1
        return 0
    sys.stdout.write(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
