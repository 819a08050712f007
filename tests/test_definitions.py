"""The Dagster code location: the contract's asset keys, in their order of dependence."""

from __future__ import annotations

from dagster import AssetKey

from orchestration.definitions import defs

CHAIN = ["raw_exemplars", "synthetic_pairs", "filtered_corpus", "sft_checkpoint", "rft_checkpoint", "eval_report"]


def _graph():
    return defs.resolve_asset_graph()


def test_code_location_has_the_six_contract_assets_and_the_base_model():
    keys = {k.path[-1] for k in _graph().get_all_asset_keys()}
    assert set(CHAIN) | {"base_model"} == keys


def test_each_contract_asset_depends_on_the_one_before_it():
    graph = _graph()
    for upstream, downstream in zip(CHAIN, CHAIN[1:]):
        ancestors = graph.get(AssetKey(downstream)).parent_keys
        assert AssetKey(upstream) in ancestors, f"{downstream} does not depend on {upstream}"


def test_corpus_checks_are_blocking():
    checks = list(defs.resolve_asset_graph().asset_check_keys)
    names = {c.name for c in checks}
    assert {"corpus_has_no_leakage", "corpus_labels_balanced"} <= names


def test_full_retrain_job_selects_every_asset():
    job = defs.resolve_job_def("persrm_full_retrain")
    assert len(job.asset_layer.selected_asset_keys) == 7
