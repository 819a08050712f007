"""Asset checks. On the pairs: a warning for an ingested author who yields no pair. On the corpus:
blocking for schema, emptiness, leakage and label balance (a bad corpus must not reach training);
warning for drift in lengths or negative-type mix against the previous materialization. On the report: a warning when RFT does not beat the best baseline or
falls below its own previous accuracy."""


import polars as pl
from dagster import AssetCheckExecutionContext, AssetCheckResult, AssetCheckSeverity, AssetKey, asset_check

from assets.chain import eval_report, filtered_corpus, synthetic_pairs
from assets.resources import ArtifactStore, ComputeProfile
from persrm_core.data import gates
from persrm_core.data.corpus import corpus_stats, stats_shift

CORPUS_FILES = ("train.parquet", "eval.parquet")


def _corpus(compute: ComputeProfile, store: ArtifactStore) -> tuple[pl.DataFrame, pl.DataFrame]:
    s = compute.settings(store)
    return tuple(pl.read_parquet(s.paths.corpus / f) for f in CORPUS_FILES)


def _gate(passed: bool, metadata: dict) -> AssetCheckResult:
    return AssetCheckResult(passed=passed, severity=AssetCheckSeverity.ERROR, metadata=metadata)


@asset_check(asset=synthetic_pairs, blocking=False,
             description="Warns when an ingested author yields no pairs (texts too short to split, a single text...).")
def every_author_has_pairs(compute: ComputeProfile, store: ArtifactStore) -> AssetCheckResult:
    from persrm_core.pipeline import authors_without_pairs, synthesis_exemplars

    s = compute.settings(store)
    missing = authors_without_pairs(s.synthesis, synthesis_exemplars(s),
                                    pl.read_parquet(s.paths.pairs, columns=["author_id"]))
    return AssetCheckResult(passed=not missing, severity=AssetCheckSeverity.WARN,
                            metadata={"authors_without_pairs": missing or "none"})


# The corpus gates live in persrm_core.data.gates (tested there on frames of their own); the stage
# publishes the corpus and these blocking checks stop everything downstream of a bad one.
@asset_check(asset=filtered_corpus, blocking=True, description="Both corpus files have the pair schema, A/B labels, unique ids.")
def corpus_schema(compute: ComputeProfile, store: ArtifactStore) -> AssetCheckResult:
    return _gate(*gates.schema(*_corpus(compute, store)))


@asset_check(asset=filtered_corpus, blocking=True, description="Train, eval_seen and eval_unseen each hold pairs.")
def corpus_not_empty(compute: ComputeProfile, store: ArtifactStore) -> AssetCheckResult:
    return _gate(*gates.not_empty(*_corpus(compute, store)))


@asset_check(asset=filtered_corpus, blocking=True, description="No eval text or unseen author in train.")
def corpus_has_no_leakage(compute: ComputeProfile, store: ArtifactStore) -> AssetCheckResult:
    return _gate(*gates.no_leakage(*_corpus(compute, store)))


@asset_check(asset=filtered_corpus, blocking=True, description="Label A share within 50% +/- max_label_skew per split.")
def corpus_labels_balanced(compute: ComputeProfile, store: ArtifactStore) -> AssetCheckResult:
    return _gate(*gates.labels_balanced(*_corpus(compute, store), compute.settings(store).filter.max_label_skew))


def previous_metadata(context: AssetCheckExecutionContext, key: str) -> dict:
    """The metadata values of the asset's materialization before the current one ({} when there is
    none), read from the instance once."""
    records = context.instance.fetch_materializations(AssetKey(key), limit=2).records
    if len(records) < 2:
        return {}
    return {k: v.value for k, v in records[1].asset_materialization.metadata.items()}


@asset_check(asset=filtered_corpus, blocking=False,
             description="Warns when response lengths or the negative-type mix shift against the previous materialization.")
def corpus_distribution_stable(context: AssetCheckExecutionContext, compute: ComputeProfile, store: ArtifactStore) -> AssetCheckResult:
    current = corpus_stats(pl.concat(list(_corpus(compute, store))))
    previous = previous_metadata(context, "filtered_corpus").get("stats")
    shifts = stats_shift(previous, current) if previous else []
    return AssetCheckResult(passed=not shifts, severity=AssetCheckSeverity.WARN,
                            metadata={"current": current, "previous": previous or "none (first materialization)",
                                      "shifts": "; ".join(shifts) or "none"})


def comparable_previous_rft(previous: dict | None, profile: str, eval_data: str | None) -> float | None:
    """The previous report's RFT accuracy where it measured the same profile on the same eval pairs;
    None otherwise (a smoke run is never held against a default one, nor a report on other data)."""
    if not previous or previous.get("profile") != profile or previous.get("eval_data") != eval_data:
        return None
    return previous.get("accuracy_rft")


def rft_problems(judges: dict[str, dict], baselines: list[str], previous_rft: float | None,
                 where: str = "eval split") -> list[str]:
    """What the `rft_beats_baselines` check warns about: RFT below a baseline (a tie is fine: "at or
    above every baseline"), or below its previous accuracy."""
    problems = []
    rft = judges.get("rft", {}).get("accuracy")
    ran = {b: judges[b]["accuracy"] for b in baselines if b in judges}
    if rft is None:
        return [f"no rft accuracy on the {where} in metrics.json"]
    if ran:
        best = max(ran, key=ran.get)
        if rft < ran[best]:
            problems.append(f"on the {where}, rft {rft:.3f} is below the best baseline {best} {ran[best]:.3f}")
    if previous_rft is not None and rft < previous_rft:
        problems.append(f"rft {rft:.3f} fell below the previous materialization's {previous_rft:.3f}")
    return problems


@asset_check(asset=eval_report, blocking=False,
             description="Warns when RFT is below the best baseline (on the eval split and on real authors), or below "
                         "its accuracy in the previous materialization of the same profile on the same eval pairs.")
def rft_beats_baselines(context: AssetCheckExecutionContext, compute: ComputeProfile, store: ArtifactStore) -> AssetCheckResult:
    import json

    from persrm_core.evaluation.report import is_model_judge

    s = compute.settings(store)
    metrics = json.loads((s.paths.report / "metrics.json").read_text())
    baselines = [n for n in metrics["judges"] if not is_model_judge(n)]
    previous = comparable_previous_rft(previous_metadata(context, "eval_report"), s.profile,
                                       metrics.get("settings", {}).get("eval_data"))
    problems = rft_problems(metrics["judges"], baselines, previous)
    real = metrics.get("real_authors", {}).get("judges")
    if real:
        problems += rft_problems(real, [n for n in real if not is_model_judge(n)], None, "real authors")
    return AssetCheckResult(passed=not problems, severity=AssetCheckSeverity.WARN,
                            metadata={"rft_accuracy": metrics["judges"].get("rft", {}).get("accuracy"),
                                      "baselines": {b: metrics["judges"][b]["accuracy"] for b in baselines},
                                      "previous_rft_accuracy": previous if previous is not None else "none",
                                      "problems": "; ".join(problems) or "none"})


ALL_CHECKS = [every_author_has_pairs, corpus_schema, corpus_not_empty, corpus_has_no_leakage, corpus_labels_balanced,
              corpus_distribution_stable, rft_beats_baselines]
