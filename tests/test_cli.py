"""The `persrm` command line as a user runs it: exit codes, one-line errors, nothing half-written."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from orchestration.cli import main

REPO = Path(__file__).resolve().parent.parent


def _pairs_jsonl(smoke_root: Path, out: Path, n: int = 6) -> Path:
    import polars as pl

    cols = ["pair_id", "author_id", "exemplars", "prompt", "response_a", "response_b", "label", "negative_type"]
    rows = pl.read_parquet(smoke_root / "data/corpus/eval.parquet").select(cols).head(n).to_dicts()
    out.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return out


def test_ingest_directory_per_author_writes_exemplar_jsonl(tmp_path, capsys):
    out = tmp_path / "ex.jsonl"
    assert main(["ingest", str(REPO / "data/raw"), "--out", str(out)]) == 0
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(rows) == 260
    assert {r["author_id"] for r in rows} >= {"terse_engineer", "emoji_enthusiast"}
    assert all(r["text"].strip() and r["source"].endswith(".txt") for r in rows)
    assert "wrote 260 exemplars by 10 authors" in capsys.readouterr().out


def test_ingest_bad_record_exits_nonzero_with_one_line_and_writes_nothing(tmp_path, capsys):
    src = tmp_path / "bad.jsonl"
    src.write_text('{"author_id": "a", "text": "one"}\n{"author_id": "a", "text": 7}\n')
    out = tmp_path / "out.jsonl"
    assert main(["ingest", str(src), "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1
    assert f"{src}:line 2" in err[0] and "'text' must be a string" in err[0]
    assert not out.exists()
    assert list(tmp_path.iterdir()) == [src]  # no temporary file left behind either


def test_ingest_as_a_subprocess_reports_the_file(tmp_path):
    src = tmp_path / "authors.json"
    src.write_text('{"ann": [{"prompt": "Hi", "output": "there"}]')  # truncated JSON
    proc = subprocess.run([sys.executable, "-m", "orchestration.cli", "ingest", str(src), "--out",
                           str(tmp_path / "o.jsonl")], capture_output=True, text=True, cwd=REPO)
    assert proc.returncode == 2
    assert str(src) in proc.stderr and "invalid JSON" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_judge_with_checkpoint_writes_one_judgment_per_pair(smoke_root, tmp_path):
    pairs = _pairs_jsonl(smoke_root, tmp_path / "pairs.jsonl")
    out = tmp_path / "judged.jsonl"
    rc = main(["judge", "--model", str(smoke_root / "data/models/sft"), "--pairs", str(pairs), "--out", str(out),
               "--profile", "smoke"])
    assert rc == 0
    got = [json.loads(line) for line in out.read_text().splitlines()]
    want = [json.loads(line)["pair_id"] for line in pairs.read_text().splitlines()]
    assert [g["pair_id"] for g in got] == want
    for g in got:
        assert g["choice"] in ("A", "B", None)
        assert (g["scores"] is None) == (g["choice"] is None)
        assert isinstance(g["rationale"], str)


@pytest.mark.parametrize("baseline", ["random", "length", "stylometric"])
def test_judge_with_baseline(smoke_root, tmp_path, baseline):
    pairs = _pairs_jsonl(smoke_root, tmp_path / "pairs.jsonl")
    out = tmp_path / "judged.jsonl"
    assert main(["judge", "--baseline", baseline, "--pairs", str(pairs), "--out", str(out)]) == 0
    got = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(got) == 6 and all(g["choice"] in ("A", "B") for g in got)


def test_judge_with_the_combined_baseline_reads_the_fitted_evidence(smoke_root, tmp_path, capsys):
    pairs = _pairs_jsonl(smoke_root, tmp_path / "pairs.jsonl")
    out = tmp_path / "judged.jsonl"
    assert main(["judge", "--baseline", "combined", "--pairs", str(pairs), "--out", str(out),
                 "--evidence", str(smoke_root / "data/models/evidence")]) == 0
    got = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(got) == 6 and all(g["choice"] in ("A", "B") and abs(sum(g["scores"]) - 1) < 1e-9 for g in got)
    missing = tmp_path / "no-evidence"
    assert main(["judge", "--baseline", "combined", "--pairs", str(pairs), "--out", str(tmp_path / "x.jsonl"),
                 "--evidence", str(missing)]) == 2
    assert f"{missing}: no fitted evidence here" in capsys.readouterr().err
    assert not (tmp_path / "x.jsonl").exists()


def test_judge_takes_unlabelled_pairs_and_evaluate_refuses_them(smoke_root, tmp_path, capsys):
    labelled = _pairs_jsonl(smoke_root, tmp_path / "labelled.jsonl")
    rows = [json.loads(line) for line in labelled.read_text().splitlines()]
    for i, r in enumerate(rows):
        if i % 2:
            del r["label"]
        else:
            r["label"] = None
    pairs = tmp_path / "unlabelled.jsonl"
    pairs.write_text("".join(json.dumps(r) + "\n" for r in rows))
    out = tmp_path / "judged.jsonl"
    assert main(["judge", "--baseline", "ngram", "--pairs", str(pairs), "--out", str(out), "--both-orders"]) == 0
    got = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(got) == 6 and all(g["choice"] in ("A", "B") for g in got)
    assert main(["evaluate", "--baseline", "ngram", "--pairs", str(pairs), "--out", str(tmp_path / "rep")]) == 2
    assert f"{pairs}:line 1" in capsys.readouterr().err and not (tmp_path / "rep").exists()


def test_judge_refuses_bad_pair_file_before_any_work(smoke_root, tmp_path, capsys):
    pairs = tmp_path / "pairs.jsonl"
    good = _pairs_jsonl(smoke_root, tmp_path / "good.jsonl", n=1).read_text()
    pairs.write_text(good + good.replace('"label": "A"', '"label": "C"').replace('"label": "B"', '"label": "C"'))
    out = tmp_path / "judged.jsonl"
    rc = main(["judge", "--model", str(smoke_root / "data/models/sft"), "--pairs", str(pairs), "--out", str(out)])
    assert rc == 2
    err = capsys.readouterr().err
    assert f"{pairs}:line 2" in err
    assert not out.exists()


def test_evaluate_writes_metrics_and_report(smoke_root, tmp_path):
    pairs = _pairs_jsonl(smoke_root, tmp_path / "pairs.jsonl")
    out = tmp_path / "report"
    rc = main(["evaluate", "--model", str(smoke_root / "data/models/rft"), "--pairs", str(pairs),
               "--out", str(out), "--profile", "smoke", "--both-orders"])
    assert rc == 0
    metrics = json.loads((out / "metrics.json").read_text())
    # the pipeline's evaluation: every baseline of the profile but the chain-trained scalar_rm, with
    # `combined` reading the evidence the checkpoint carries
    assert set(metrics["judges"]) == {"rft", "random", "length", "stylometric", "ngram", "combined"}
    assert metrics["settings"]["evidence"] == str(smoke_root / "data/models/rft/evidence")
    md = (out / "report.md").read_text()
    assert "## Judges on pairs.jsonl (6 pairs)" in md and "eval split" not in md
    summary = md.split("## Summary", 1)[1].split("\n## ", 1)[0]
    assert "RFT did not beat the best baseline" in summary or "RFT beat the best baseline" in summary \
        or "RFT tied the best baseline" in summary
    assert "Dataset and settings:" in (out / "report.html").read_text()
    assert metrics["judges"]["rft"]["n"] == 6  # named after the checkpoint folder, not "model"
    assert metrics["judges"]["rft"]["position_consistency"] is not None
    assert (out / "report.md").is_file() and (out / "report.html").is_file()


def test_judge_with_vllm_engine_names_the_gpu_extra_when_vllm_is_missing(tmp_path):
    import importlib.util

    import pytest

    if importlib.util.find_spec("vllm") is not None:
        pytest.skip("vllm is installed here")
    from persrm_core.judging.judge import DecodingSettings, ModelJudge
    from persrm_core.llm.model import TinyModelConfig, build_tiny

    build_tiny(["a few words to train a tokenizer on"] * 20, tmp_path / "m",
               TinyModelConfig(vocab_size=300, hidden_size=16, num_layers=1, num_heads=2, num_kv_heads=1,
                               intermediate_size=32, max_positions=256))
    with pytest.raises(RuntimeError, match=r"\.\[gpu\]"):
        ModelJudge(str(tmp_path / "m"), gen=DecodingSettings(engine="vllm", closing="free"))


def test_run_answers_a_bad_profile_in_one_line_before_dagster_starts(capsys, tmp_path):
    assert main(["run", "--profile", "smokey"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "unknown profile 'smokey'" in err[0] and err[0].startswith("persrm run: error:")
    bad = tmp_path / "params.yaml"
    bad.write_text("profile: default\ndefaults: [not, a, mapping\n")
    assert main(["run", "--params", str(bad)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and str(bad) in err[0]


@pytest.mark.parametrize("edit, named", [
    (("\nprofiles:", "\nprofle: smoke\nprofiles:"), "unknown top-level key(s) ['profle']"),
    (("\n  synthesis:\n", "\n  synthsis: {}\n  synthesis:\n"), "defaults: unknown section(s) ['synthsis']"),
    (("    learning_rate: 0.002\n", "    learning_rate: 2e-3\n"), "sft.learning_rate: '2e-3' is a str, expected float (YAML reads 2e-3 as a string"),
    (("    max_steps: 12\n", "    max_steps: six\n"), "rft.max_steps: 'six' is a str, expected int"),
    (("    both_orders: true\n    baselines:", "    both_orders: 'yes'\n    baselines:"), "eval.both_orders"),
    (("    num_exemplars: 3\n", "    num_exemplars: 3.5\n"), "synthesis.num_exemplars"),
    (("    teacher_fallback: none", "    teacher_fallback: offlne"), "sft.teacher_fallback: 'offlne' is not one of"),
    (("    without_evidence: []", "    without_evidence: [ngram]"), "eval.without_evidence: ['ngram']"),
    (("    report_to: none  # training logs", "    report_to: tensorbord  # training logs"), "sft.report_to: ['tensorbord']"),
    (("    fit_signals: []", "    fit_signals: [factor]"), "evidence.fit_signals: ['factor']"),
    (("    closing: constrained", "    closing: strict"), "eval.closing: 'strict' is not one of constrained, free"),
    (("    engine: transformers  #", "    engine: vllm  #"), "eval.closing: a constrained closing needs the transformers engine"),
])
def test_a_config_typo_or_wrong_type_is_one_line_before_anything_runs(tmp_path, capsys, edit, named):
    text = (REPO / "params.yaml").read_text()
    old, new = edit
    assert text.count(old) >= 1, old
    bad = tmp_path / "params.yaml"
    bad.write_text(text.replace(old, new, 1))
    assert main(["run", "--params", str(bad)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and str(bad) in err[0] and named in err[0], err


def test_evaluate_names_the_judge_after_its_checkpoint_or_as_told():
    import argparse

    from orchestration.cli import BASELINE_NAMES, judge_name
    from persrm_core.judging.judge import BASELINES

    assert BASELINE_NAMES == BASELINES
    ns = lambda **kw: argparse.Namespace(**{"name": None, "baseline": None, "model": None, **kw})  # noqa: E731
    assert judge_name(ns(model="data/models/rft/")) == "rft"
    assert judge_name(ns(model="/x/combined")) == "combined (model)"  # never mistaken for the baseline
    assert judge_name(ns(baseline="ngram")) == "ngram"
    assert judge_name(ns(model="data/models/rft", name="judge-v2")) == "judge-v2"

    from persrm_core.evaluation.report import BASELINE_JUDGES, is_model_judge, verdict_sentences

    assert BASELINE_JUDGES == (*BASELINES, "scalar_rm")
    assert is_model_judge("judge-v2") and is_model_judge("rft_no_evidence") and not is_model_judge("combined")
    assert not is_model_judge("ngram_no_evidence")
    said = verdict_sentences({"judges": {"judge-v2": {"accuracy": 0.9}, "ngram": {"accuracy": 0.8},
                                         "random": {"accuracy": 0.5}}})
    assert said == ["The judge (judge-v2) beat the best baseline, ngram (0.900 vs 0.800)."]
