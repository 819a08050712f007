"""The Dagster code location: the contract's asset keys, in their order of dependence."""

from __future__ import annotations

from dagster import AssetKey

from orchestration.definitions import defs

CHAIN = ["raw_exemplars", "synthetic_pairs", "filtered_corpus", "sft_checkpoint", "rft_checkpoint", "eval_report"]


def _graph():
    return defs.resolve_asset_graph()


EXTRA = {"style_encoder", "evidence_model", "base_model", "scalar_rm"}


def test_code_location_has_the_six_contract_assets_and_the_learned_evidence_base_model_and_scalar_rm():
    keys = {k.path[-1] for k in _graph().get_all_asset_keys()}
    assert set(CHAIN) | EXTRA == keys
    graph = _graph()
    assert AssetKey("style_encoder") in graph.get(AssetKey("evidence_model")).parent_keys
    for child in ("base_model", "sft_checkpoint", "eval_report"):
        assert AssetKey("evidence_model") in graph.get(AssetKey(child)).parent_keys


def test_each_contract_asset_depends_on_the_one_before_it():
    graph = _graph()
    for upstream, downstream in zip(CHAIN, CHAIN[1:]):
        ancestors = graph.get(AssetKey(downstream)).parent_keys
        assert AssetKey(upstream) in ancestors, f"{downstream} does not depend on {upstream}"


def test_corpus_checks_block_and_drift_checks_warn():
    from assets.checks import ALL_CHECKS

    blocking = {spec.name: spec.blocking for c in ALL_CHECKS for spec in c.check_specs}
    assert {k for k, v in blocking.items() if v} == {"corpus_schema", "corpus_not_empty", "corpus_has_no_leakage",
                                                       "corpus_labels_balanced"}
    assert {k for k, v in blocking.items() if not v} == {"corpus_distribution_stable", "rft_beats_baselines",
                                                          "every_author_has_pairs"}
    names = {c.name for c in defs.resolve_asset_graph().asset_check_keys}
    assert set(blocking) == names


def test_the_backend_is_a_swappable_resource():
    from assets.resources import GenerationBackend
    from persrm_core.config import load_settings

    s = load_settings("smoke")
    assert GenerationBackend().apply(s).generation == s.generation
    swapped = GenerationBackend(backend="openai", model="m", base_url="http://127.0.0.1:9/v1").apply(s)
    assert (swapped.generation.backend, swapped.generation.model) == ("openai", "m")


def test_compute_profile_and_artifact_store_are_separate_swappable_resources(tmp_path):
    from assets.resources import ArtifactStore, ComputeProfile, GenerationBackend

    assert isinstance(defs.resources["compute"], ComputeProfile)
    assert isinstance(defs.resources["store"], ArtifactStore)
    assert isinstance(defs.resources["generation"], GenerationBackend)
    store = ArtifactStore(root=str(tmp_path), incoming="landing")
    smoke, gpu = ComputeProfile(profile="smoke").settings(store), ComputeProfile(profile="gpu").settings(store)
    # The store alone moves every artifact; the profile alone changes what runs, not where it lands.
    assert smoke.paths == gpu.paths and smoke.paths.rft == tmp_path / "data" / "models" / "rft"
    assert (smoke.profile, gpu.profile) == ("smoke", "gpu") and smoke.sft != gpu.sft
    assert store.incoming_dir() == tmp_path / "landing"
    assert ArtifactStore(incoming=str(tmp_path / "abs")).incoming_dir() == tmp_path / "abs"


def test_raw_exemplars_is_partitioned_by_author_and_nothing_else_is():
    from dagster import DynamicPartitionsDefinition

    graph = _graph()
    parts = {k.path[-1]: graph.get(k).partitions_def for k in graph.get_all_asset_keys()}
    assert isinstance(parts.pop("raw_exemplars"), DynamicPartitionsDefinition)
    assert set(parts.values()) == {None}


def test_jobs_split_ingest_from_retraining():
    keys = lambda name: {k.path[-1] for k in defs.resolve_job_def(name).asset_layer.selected_asset_keys}  # noqa: E731
    assert keys("persrm_ingest_authors") == {"raw_exemplars"}
    assert keys("persrm_full_retrain") == set(CHAIN[1:]) | EXTRA
    assert keys("persrm_data_only") == {"synthetic_pairs", "filtered_corpus"}
    assert keys("persrm_eval_only") == {"eval_report"}


def test_every_asset_has_a_code_version_from_the_code_its_dvc_stage_lists():
    from dagster import AssetKey

    import assets.chain as chain

    graph = defs.resolve_asset_graph()
    keys = ["raw_exemplars", "synthetic_pairs", "filtered_corpus", "style_encoder", "evidence_model", "base_model",
            "sft_checkpoint", "rft_checkpoint", "scalar_rm", "eval_report"]
    versions = {k: graph.get(AssetKey(k)).code_version for k in keys}
    assert all(v and len(v) == 12 for v in versions.values()), versions
    assert len(set(versions.values())) == len(keys)  # each stage lists its own code
    assert chain.code_version("eval_report") == versions["eval_report"]  # stable for unchanged files
