"""Asset checks on passing and failing data: the rules themselves, and through Dagster (blocking
checks stop training; the drift check compares with the previous materialization)."""

from __future__ import annotations

import json
import shutil

import polars as pl
import pytest
from dagster import DagsterInstance, materialize
from test_gates import corpus_frame

from assets import ALL_ASSETS, ALL_CHECKS
from assets.checks import rft_problems
from assets.resources import default_resources
from persrm_core import pipeline
from persrm_core.data.corpus import corpus_stats, stats_shift


def test_corpus_stats_and_shift():
    a = corpus_stats(corpus_frame(10))
    assert a["pairs"] == 10 and a["mean_words"] == 3.5 and a["negative_type_share"] == {
        "cross_author": 0.5, "rule_perturbation": 0.5}
    assert stats_shift(a, a) == []
    longer = corpus_stats(corpus_frame(10, response_a="one two three four five six seven eight nine ten"))
    assert any("mean response length" in p for p in stats_shift(a, longer))
    mix = corpus_stats(corpus_frame(10, negative_type="cross_author"))
    shifts = stats_shift(a, mix)
    assert "negative type 'cross_author' share moved 50% -> 100%" in shifts
    assert "negative type 'rule_perturbation' share moved 50% -> 0%" in shifts


def test_rft_problems():
    judges = {"rft": {"accuracy": 0.8}, "ngram": {"accuracy": 0.7}, "random": {"accuracy": 0.5}}
    assert rft_problems(judges, ["ngram", "random"], None) == []
    assert rft_problems(judges, ["ngram", "random"], 0.79) == []
    assert rft_problems(judges, ["ngram"], 0.85) == ["rft 0.800 fell below the previous materialization's 0.850"]
    judges["stylometric"] = {"accuracy": 0.9}
    assert rft_problems(judges, ["ngram", "stylometric"], None) == [
        "on the eval split, rft 0.800 is below the best baseline stylometric 0.900"]
    judges["combined"] = {"accuracy": 0.8}  # a tie is "at or above every baseline"
    assert rft_problems(judges, ["ngram", "combined"], None, "real authors") == []
    assert rft_problems({}, ["ngram"], None) == ["no rft accuracy on the eval split in metrics.json"]


def _checks(result) -> dict[str, bool]:
    return {e.asset_check_evaluation_data.check_name: e.asset_check_evaluation_data.passed
            for e in result.all_events if e.event_type_value == "ASSET_CHECK_EVALUATION"}


def _materialized(result) -> set[str]:
    return {e.asset_key.path[-1] for e in result.all_events if e.event_type_value == "ASSET_MATERIALIZATION"}


@pytest.fixture()
def root(smoke_root, tmp_path):
    """A private copy of the smoke run's data (these tests rewrite it)."""
    shutil.copytree(smoke_root / "data", tmp_path / "data")
    return tmp_path


def _run(root, select):
    return materialize([*ALL_ASSETS, *ALL_CHECKS], selection=select, instance=_run.instance,
                       resources=default_resources(profile="smoke", root=str(root), progress=False),
                       raise_on_error=False)


def test_corpus_checks_pass_then_drift_warns_against_the_previous_materialization(root):
    _run.instance = DagsterInstance.ephemeral()
    first = _run(root, ["filtered_corpus"])
    assert first.success
    assert _checks(first) == {"corpus_schema": True, "corpus_not_empty": True, "corpus_has_no_leakage": True,
                              "corpus_labels_balanced": True, "corpus_distribution_stable": True}
    pairs = pl.read_parquet(root / "data/pairs/pairs.parquet")
    pairs.filter(pl.col("negative_type") != "cross_author").write_parquet(root / "data/pairs/pairs.parquet")
    second = _run(root, ["filtered_corpus"])
    checks = _checks(second)
    assert checks["corpus_distribution_stable"] is False  # a warning: the run itself still succeeds
    assert second.success and all(v for k, v in checks.items() if k != "corpus_distribution_stable")


def test_a_failing_blocking_check_stops_training(root, monkeypatch):
    def leaky(s):
        train = pl.read_parquet(root / "data/corpus/train.parquet")
        evals = pl.read_parquet(root / "data/corpus/eval.parquet")
        train = pl.concat([train, evals.head(1).with_columns(split=pl.lit("train"))])  # an eval text in train
        train.write_parquet(s.paths.corpus / "train.parquet")
        return {"rules": [], "splits": {k: {"pairs": 1, "authors": 1, "label_A_share": 0.5}
                                        for k in ("train", "eval_seen", "eval_unseen")},
                "stats": corpus_stats(train)}

    monkeypatch.setattr(pipeline, "filtered_corpus", leaky)
    _run.instance = DagsterInstance.ephemeral()
    result = _run(root, ["filtered_corpus", "base_model"])
    checks = _checks(result)
    assert checks["corpus_has_no_leakage"] is False
    assert "base_model" not in _materialized(result)
    assert not result.success


def test_a_run_config_overrides_params_for_one_run(root):
    """Typed per-asset config (assets/configs.py): the launchpad's override reaches the stage."""
    _run.instance = DagsterInstance.ephemeral()
    result = materialize([*ALL_ASSETS, *ALL_CHECKS], selection=["filtered_corpus"], instance=_run.instance,
                         resources=default_resources(profile="smoke", root=str(root), progress=False),
                         run_config={"ops": {"filtered_corpus": {"config": {"max_length_ratio": 1.0001}}}})
    assert result.success
    train = pl.read_parquet(root / "data/corpus/train.parquet")
    words = lambda c: pl.col(c).str.split(" ").list.len()  # noqa: E731
    ratio = train.select(pl.max_horizontal(words("response_a"), words("response_b"))
                         / pl.min_horizontal(words("response_a"), words("response_b")))
    assert ratio.max().item() <= 1.0001


def test_every_asset_takes_a_typed_config_that_defaults_to_params():
    from assets import configs
    from persrm_core.config import load_settings

    s = load_settings("smoke")
    for cls in (configs.SyntheticPairsConfig, configs.FilteredCorpusConfig, configs.SftConfig, configs.RftConfig,
                configs.ScalarRMConfig, configs.EvalReportConfig, configs.RawExemplarsConfig):
        assert cls().apply(s) == s
    assert configs.EvalReportConfig(max_pairs=3).apply(s).eval.max_pairs == 3
    assert configs.SyntheticPairsConfig(workers=2).apply(s).synthesis.workers == 2
    for a in ALL_ASSETS:
        assert a.op.config_schema is not None, a.key



def _write_corpus(root, train: pl.DataFrame, evals: pl.DataFrame) -> dict:
    train.write_parquet(root / "data/corpus/train.parquet")
    evals.write_parquet(root / "data/corpus/eval.parquet")
    return {"rules": [], "splits": {k: {"pairs": 1, "authors": 1, "label_A_share": 0.5}
                                    for k in ("train", "eval_seen", "eval_unseen")},
            "stats": corpus_stats(train)}


@pytest.mark.parametrize("breakage,failed", [
    ("all_train_labels_A", "corpus_labels_balanced"),
    ("no_unseen_eval", "corpus_not_empty"),
    ("label_column_dropped", "corpus_schema"),
])
def test_each_blocking_check_fails_on_its_bad_corpus(root, monkeypatch, breakage, failed):
    train0 = pl.read_parquet(root / "data/corpus/train.parquet")
    eval0 = pl.read_parquet(root / "data/corpus/eval.parquet")

    def broken(s):
        train, evals = train0, eval0
        if breakage == "all_train_labels_A":
            train = train.with_columns(label=pl.lit("A"))
        elif breakage == "no_unseen_eval":
            evals = evals.filter(pl.col("split") != "eval_unseen")
        else:
            train, evals = train.drop("label"), evals.drop("label")
        return _write_corpus(root, train, evals)

    monkeypatch.setattr(pipeline, "filtered_corpus", broken)
    _run.instance = DagsterInstance.ephemeral()
    result = _run(root, ["filtered_corpus", "base_model"])
    assert _checks(result)[failed] is False
    assert "base_model" not in _materialized(result)


@pytest.mark.parametrize("previous, compared", [
    ({"profile": "smoke", "eval_data": "e1", "accuracy_rft": 0.9}, True),
    ({"profile": "default", "eval_data": "e1", "accuracy_rft": 0.9}, False),  # another profile's run
    ({"profile": "smoke", "eval_data": "e2", "accuracy_rft": 0.9}, False),  # other eval pairs
])
def test_rft_is_held_only_against_the_same_profile_on_the_same_pairs(tmp_path, previous, compared):
    """The check's comparison through a real instance: the materialization before the current one
    counts only where it measured the same profile on the same eval pairs."""
    from dagster import AssetMaterialization, DagsterInstance, build_asset_check_context

    from assets.checks import comparable_previous_rft, rft_beats_baselines

    report = tmp_path / "data" / "reports" / "eval"
    report.mkdir(parents=True)
    (report / "metrics.json").write_text(json.dumps({
        "judges": {"rft": {"accuracy": 0.7}, "random": {"accuracy": 0.5}},
        "settings": {"profile": "smoke", "eval_data": "e1"}}))
    instance = DagsterInstance.ephemeral()
    for meta in (previous, {"profile": "smoke", "eval_data": "e1", "accuracy_rft": 0.7}):  # earlier, then current
        instance.report_runless_asset_event(AssetMaterialization("eval_report", metadata=meta))
    res = default_resources(profile="smoke", root=str(tmp_path), progress=False)
    result = rft_beats_baselines(build_asset_check_context(
        resources={"compute": res["compute"], "store": res["store"]}, instance=instance))
    assert result.passed is not compared
    assert result.metadata["previous_rft_accuracy"].value == (0.9 if compared else "none")
    assert comparable_previous_rft(None, "smoke", "e1") is None
