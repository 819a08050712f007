"""The six assets of the contract, plus `base_model` beside them. Each publishes files at its
contract path and returns metadata; nothing large travels through IO managers."""

import warnings
from pathlib import Path

from dagster import (
    AssetExecutionContext,
    AutomationCondition,
    BackfillPolicy,
    BetaWarning,
    DynamicPartitionsDefinition,
    MaterializeResult,
    MetadataValue,
    PathMetadataValue,
    PipesSubprocessClient,
    TableColumn,
    TableRecord,
    TableSchema,
    asset,
)

from assets.configs import (
    BaseModelConfig,
    EvalReportConfig,
    EvidenceModelConfig,
    FilteredCorpusConfig,
    RawExemplarsConfig,
    RftConfig,
    ScalarRMConfig,
    SftConfig,
    StyleEncoderConfig,
    SyntheticPairsConfig,
)
from assets.resources import ArtifactStore, ComputeProfile, GenerationBackend
from persrm_core import pipeline
from persrm_core.config import default_params_path
from persrm_core.locking import artifact_lock
from persrm_core.redact import redact
from persrm_core.training.launch import PipesRunner

GROUP = "persrm"
# Every asset below the ingested exemplars rebuilds when its inputs change, once none of them is
# still being written (`eager` waits for deps in progress and for missing ones). Evaluated only
# while the `retrain_on_new_exemplars` automation sensor is on (orchestration/sensors.py).
REBUILD = AutomationCondition.eager()

# One partition per author: exemplars arrive per author over time, and ingesting a newcomer (or an
# author's new texts) materializes that author's partition only. `persrm run` and the new-exemplars
# sensor register the partitions; the UI shows which authors are ingested and when.
AUTHORS = DynamicPartitionsDefinition(name="authors")
# BackfillPolicy.single_run (all partitions of a run in one step) is marked beta; we rely on it knowingly.
warnings.filterwarnings("ignore", message="Parameter `backfill_policy`", category=BetaWarning)


def code_version(stage: str) -> str | None:
    """A digest of the project code a stage runs: the Python files its `dvc.yaml` stage lists as
    deps (so DVC and the Dagster UI's "code changed" agree on what the stage's code is), with the
    asset's own module. None where dvc.yaml is not beside the package (an installed wheel)."""
    import hashlib

    import yaml

    repo = Path(__file__).resolve().parent.parent
    if not (repo / "dvc.yaml").is_file():
        return None
    deps = yaml.safe_load((repo / "dvc.yaml").read_text()).get("stages", {}).get(stage, {}).get("deps", [])
    h = hashlib.sha1()
    for rel in sorted({d for d in deps if d.endswith(".py")} | {"assets/chain.py"}):
        if (repo / rel).is_file():
            h.update(rel.encode() + b"\0" + (repo / rel).read_bytes())
    return h.hexdigest()[:12]


def _settings(config, compute: ComputeProfile, store: ArtifactStore, generation: GenerationBackend | None = None):
    s = compute.settings(store)
    return config.apply(generation.apply(s) if generation is not None else s)


def _cell(v):
    return v if v is None or isinstance(v, (str, int, float, bool)) else str(v)


def _kind(v) -> str:
    return "bool" if isinstance(v, bool) else "int" if isinstance(v, int) else \
        "float" if isinstance(v, float) else "string"


def _table(rows: list[dict]) -> MetadataValue:
    """Rows as a Dagster table (shown as a table in the UI, not Markdown behind a click), each
    column typed from its first non-empty value."""
    cols = list(dict.fromkeys(c for r in rows for c in r))
    schema = TableSchema(columns=[
        TableColumn(c, next((_kind(r[c]) for r in rows if r.get(c) is not None), "string")) for c in cols])
    return MetadataValue.table([TableRecord({c: _cell(r.get(c)) for c in cols}) for r in rows], schema=schema)


COLUMN_DOCS = {
    "pair_id": "stable id of the pair", "author_id": "the person the pair is judged for",
    "prompt": "the opening the two responses continue", "negative_type": "how the rejected response was made",
    "perturbed_factors": "style factors a rule perturbation changed", "split": "train, eval_seen or eval_unseen",
    "chosen_source": "text the chosen response comes from", "negative_source": "text or strategy of the rejected one",
    "exemplar_sources": "texts the exemplars come from", "exemplars": "the author's own texts shown to the judge",
    "label": "A or B: which response the author wrote", "response_a": "first response shown",
    "response_b": "second response shown",
}


# The Dagster UI shows a Markdown entry inline only while it is shorter than this; a longer one (an
# image as a data URL) sits behind "[Show Markdown]".
INLINE_MARKDOWN_CHARS = 1000


def text_bars(values: dict[str, float | None], width: int = 24) -> str:
    """Accuracies as a bar chart in text (a Markdown code block), short enough for the Dagster UI to
    draw inline on the asset page; a judge without a figure shows "n/a"."""
    name_w = max((len(n) for n in values), default=0)
    lines = []
    for name, v in sorted(values.items(), key=lambda kv: 1.0 if kv[1] is None else -kv[1]):
        if v is None:
            lines.append(f"{name:<{name_w}} {'':<{width}}  n/a")
            continue
        eighths = round(max(0.0, min(1.0, v)) * width * 8)
        bar = "█" * (eighths // 8) + ("", "▏", "▎", "▍", "▌", "▋", "▊", "▉")[eighths % 8]
        lines.append(f"{name:<{name_w}} {bar:<{width}}  {v:.3f}")
    return "```\n" + "\n".join(lines) + "\n```"


def _pairs(d: dict, key: str, value: str) -> MetadataValue:
    """A flat mapping (name -> count or note) as a two-column Dagster table; a nested one as JSON."""
    if all(v is None or isinstance(v, (str, int, float, bool)) for v in d.values()):
        return _table([{key: k, value: v} for k, v in d.items()]) if d else MetadataValue.json({})
    return MetadataValue.json(d)


SPARKS = "▁▂▃▄▅▆▇█"


def sparkline(curve: list[tuple[int, float]], width: int = 48) -> str:
    """A training curve as one line of block characters (first and last value, steps), which the
    Dagster UI draws inline on the asset page; the full curve is the table beside it."""
    points = [(a, b) for a, b in curve if b is not None]
    if not points:
        return "no logged points"
    ys = [b for _, b in points]
    if len(ys) > width:  # mean of equal slices
        ys = [sum(ys[i * len(ys) // width:(i + 1) * len(ys) // width]) /
              max(1, (i + 1) * len(ys) // width - i * len(ys) // width) for i in range(width)]
    lo, hi = min(ys), max(ys)
    line = "".join(SPARKS[0 if hi == lo else round((y - lo) / (hi - lo) * (len(SPARKS) - 1))] for y in ys)
    return (f"```\n{points[0][1]:.4g} {line} {points[-1][1]:.4g}\nsteps {points[0][0]}-{points[-1][0]}, "
            f"min {min(b for _, b in points):.4g}, max {max(b for _, b in points):.4g}\n```")


def _column_schema(parquet: Path) -> TableSchema:
    """The columns of a published parquet file as Dagster's column schema (read from the file)."""
    import polars as pl

    return TableSchema(columns=[TableColumn(name, str(dtype), description=COLUMN_DOCS.get(name, ""))
                                for name, dtype in pl.scan_parquet(parquet).collect_schema().items()])


def project_dir(compute: ComputeProfile) -> Path:
    """The project a run belongs to: the directory of its params.yaml."""
    return Path(compute.params_path or default_params_path()).resolve().parent


def _relative(value, project: Path):
    """A path (plain string or path metadata) inside the project, written relative to it, so the UI
    shows `data/models/sft` rather than one machine's absolute checkout; paths outside the project
    (a test's or a user's own store root) stay absolute, as they must to be found."""
    text = value.path if isinstance(value, PathMetadataValue) else value
    if not isinstance(text, str) or not text.startswith("/"):
        return value
    path = Path(text)
    if not path.is_relative_to(project):
        return value
    rel = str(path.relative_to(project)) or "."
    return MetadataValue.path(rel) if isinstance(value, PathMetadataValue) else rel


def _result(compute: ComputeProfile, metadata: dict) -> MaterializeResult:
    """An asset's materialization, with the paths in its metadata relative to the project."""
    project = project_dir(compute)
    return MaterializeResult(metadata={k: _relative(v, project) for k, v in metadata.items()})


def _with_child_report(out: dict, runner: PipesRunner) -> dict:
    """The stage's summary plus what the training process reported through Pipes and the summary
    lacks (its step count, run time, final averages; nothing when training ran in-process),
    redacted once, as every asset's summary is."""
    for report in runner.reports:
        for key, value in report.items():
            out.setdefault(key, value)
    return redact(out)


def _checkpoint_result(compute: ComputeProfile, out: dict, curve_key: str) -> MaterializeResult:
    """A training stage's summary as metadata, its curve as a table, its checkpoint as a path."""
    curve = out.pop("curve")
    return _result(compute, {
        f"{curve_key}_trend": MetadataValue.md(sparkline(curve)), **out,
        f"{curve_key}_curve": _table([{"step": a, curve_key: None if b is None else round(b, 5)} for a, b in curve]),
        "path": MetadataValue.path(out["checkpoint"])})


@asset(group_name=GROUP, code_version=code_version("raw_exemplars"),
       partitions_def=AUTHORS, backfill_policy=BackfillPolicy.single_run(), kinds={"python"},
       description="One author's validated exemplars (a partition per author): new texts waiting in the incoming "
                   "folder are landed in data/raw/<author>/, the author's texts are validated and written to "
                   "the author's shard, and data/exemplars/exemplars.jsonl is rebuilt from all shards.")
def raw_exemplars(context: AssetExecutionContext, config: RawExemplarsConfig, compute: ComputeProfile,
                  store: ArtifactStore) -> MaterializeResult:
    s = _settings(config, compute, store)
    authors = sorted(context.partition_keys)
    with artifact_lock(s.paths.exemplars):
        incoming = store.incoming_dir(compute.params_path or None) if store.land_incoming else None
        out = redact(pipeline.raw_exemplars(s, authors, incoming=incoming))
    context.log.info(f"ingested {out['ingested_texts']} texts of {len(authors)} author(s) from {s.paths.raw}; "
                     f"the union now holds {out['texts']} texts by {out['authors']} authors")
    for author, why in out["no_own_pairs"].items():
        context.log.warning(f"author {author} was ingested but synthesis will build no pair of theirs: {why}")
    for author, names in out["landed"].items():
        context.log.info(f"landed {len(names)} new file(s) of {author} from the incoming folder: {', '.join(names)}")
    if out["not_ingested"]:
        context.log.warning(f"authors in {s.paths.raw} not ingested yet (left out of the union): "
                            f"{', '.join(out['not_ingested'])}; materialize their partitions")
    return _result(compute, {
        "ingested_texts": out["ingested_texts"], "landed_files": sum(len(v) for v in out["landed"].values()),
        "union_texts": out["texts"], "dagster/row_count": out["texts"], "union_authors": out["authors"],
        "not_ingested": MetadataValue.json(out["not_ingested"]),
        "no_own_pairs": _pairs(out["no_own_pairs"], "author", "why"),
        "per_author": _table(out["per_author"]),
        "path": MetadataValue.path(str(s.paths.exemplars)), "profile": s.profile})


@asset(group_name=GROUP, code_version=code_version("synthetic_pairs"), automation_condition=REBUILD,
       deps=[raw_exemplars], kinds={"python", "parquet"},
       description="Synthetic preference pairs: the author's continuation vs cross-author, rule-perturbed, "
                   "lexicon-swapped (and LLM) negatives. Each author's own-text pairs are kept in a shard and "
                   "reused while the author's texts and the settings are unchanged; cross-author pairs and A/B "
                   "positions are recomputed over everyone, so the file equals a build from scratch.")
def synthetic_pairs(context: AssetExecutionContext, config: SyntheticPairsConfig, compute: ComputeProfile,
                    store: ArtifactStore, generation: GenerationBackend) -> MaterializeResult:
    s = _settings(config, compute, store, generation)
    with artifact_lock(s.paths.pairs):
        out = redact(pipeline.synthetic_pairs(s, progress=compute.progress))
    rebuilt, reused = out["authors_rebuilt"], out["authors_reused"]
    context.log.info(f"author-local pairs rebuilt for {len(rebuilt)} author(s) ({', '.join(rebuilt) or 'none'}), "
                     f"reused from their shards for {len(reused)}; {out['cross_author_rebuilt']} cross-author "
                     "pairs recomputed over the whole pool")
    for author, why in out["authors_without_pairs"].items():
        context.log.warning(f"author {author} was ingested but yields no pairs: {why}")
    return _result(compute, {
        "pairs": out["pairs"], "dagster/row_count": out["pairs"], "label_A_share": out["label_A_share"],
        "backend": out["backend"],
        "pairs_by_author": _table([{"author": a, "pairs": n} for a, n in out["pairs_by_author"].items()]
                                     + [{"author": a, "pairs": 0} for a in out["authors_without_pairs"]]),
        "authors_without_pairs": _pairs(out["authors_without_pairs"], "author", "why"),
        "authors_rebuilt": MetadataValue.json(rebuilt), "authors_reused": len(reused),
        "cross_author_rebuilt": out["cross_author_rebuilt"],
        "llm_outputs_refused": _pairs(out["llm_outputs_refused"], "reason", "outputs"),
        "by_negative_type": _pairs(out["by_negative_type"], "negative_type", "pairs"),
        "by_split": _pairs(out["by_split"], "split", "pairs"), "path": MetadataValue.path(str(s.paths.pairs)),
        "dagster/column_schema": _column_schema(s.paths.pairs)})


@asset(group_name=GROUP, code_version=code_version("filtered_corpus"), automation_condition=REBUILD,
       deps=[synthetic_pairs], kinds={"duckdb", "polars", "parquet"},
       description="Quality-gated pairs split into train and eval (unseen texts, unseen authors) with no shared text.")
def filtered_corpus(context: AssetExecutionContext, config: FilteredCorpusConfig, compute: ComputeProfile,
                    store: ArtifactStore) -> MaterializeResult:
    s = _settings(config, compute, store)
    with artifact_lock(s.paths.corpus):
        out = redact(pipeline.filtered_corpus(s))
    splits = [{"split": k, **v} for k, v in out["splits"].items()]
    return _result(compute, {
        "rules": _table(out["rules"]), "splits": _table(splits), "stats": MetadataValue.json(out["stats"]),
        "train_pairs": out["splits"]["train"]["pairs"],
        "eval_pairs": out["splits"]["eval_seen"]["pairs"] + out["splits"]["eval_unseen"]["pairs"],
        "dagster/row_count": sum(v["pairs"] for v in out["splits"].values()),
        "dagster/column_schema": _column_schema(s.paths.corpus / "train.parquet"),
        "path": MetadataValue.path(str(s.paths.corpus))})


@asset(group_name=GROUP, code_version=code_version("style_encoder"), automation_condition=REBUILD,
       deps=[filtered_corpus], kinds={"pytorch", "sentence-transformers"},
       description="The style encoder: the bundled MiniLM fine-tuned contrastively on the training split's authors "
                   "(less any calibration authors), published as a sentence-transformers folder.")
def style_encoder(context: AssetExecutionContext, config: StyleEncoderConfig, compute: ComputeProfile,
                  store: ArtifactStore) -> MaterializeResult:
    s = _settings(config, compute, store)
    with artifact_lock(s.paths.style_encoder):
        out = redact(pipeline.style_encoder(s, progress=compute.progress))
    curve = out.pop("curve")
    context.log.info(f"style encoder: held-out same-author accuracy {out['heldout_same_author_accuracy_before']} "
                     f"-> {out['heldout_same_author_accuracy']} after {out['steps']} steps on {out['authors']} authors")
    return _result(compute, {
        **{k: v for k, v in out.items() if k not in ("path", "calibration_authors")},
        "calibration_authors": MetadataValue.json(out["calibration_authors"]),
        "loss_trend": MetadataValue.md(sparkline(curve)),
        "loss_curve": _table([{"step": a, "loss": round(b, 5)} for a, b in curve[:: max(1, len(curve) // 30)]]),
        "path": MetadataValue.path(out["path"])})


@asset(group_name=GROUP, code_version=code_version("evidence_model"), automation_condition=REBUILD,
       deps=[filtered_corpus, style_encoder], kinds={"python", "numpy"},
       description="The evidence the judge reads: IDF tables fitted on the training corpus, the style encoder, "
                   "and the `combined` weights of the style signals fitted on the train pairs of `evidence.fit_negative_types` "
                   "(of the calibration authors when `style_encoder.calibration_fraction` > 0).")
def evidence_model(context: AssetExecutionContext, config: EvidenceModelConfig, compute: ComputeProfile,
                   store: ArtifactStore) -> MaterializeResult:
    s = _settings(config, compute, store)
    with artifact_lock(s.paths.evidence):
        out = redact(pipeline.evidence_model(s, progress=compute.progress))
    context.log.info(f"combined weights {out['weights']}; fit accuracy {out['fit_accuracy']} on {out['fit_pairs']} pairs")
    return _result(compute, {
        "weights": _table([{"signal": k, "weight": v} for k, v in out["weights"].items()]),
        "fit_accuracy": out["fit_accuracy"], "fit_pairs": out["fit_pairs"], "idf_texts": out["idf_texts"],
        "fit_authors": MetadataValue.json(out["fit_authors"]),
        "fit_accuracy_by_negative_type": _pairs(out["fit_accuracy_by_negative_type"], "negative_type", "fit_accuracy"),
        "path": MetadataValue.path(out["path"])})


@asset(group_name=GROUP, code_version=code_version("base_model"), automation_condition=REBUILD,
       deps=[filtered_corpus, evidence_model], kinds={"pytorch"},
       description="The base LM: `tiny` (tokenizer trained on train text + random Qwen2) or a hub id/path.")
def base_model(context: AssetExecutionContext, config: BaseModelConfig, compute: ComputeProfile,
                    store: ArtifactStore) -> MaterializeResult:
    s = _settings(config, compute, store)
    with artifact_lock(s.paths.base_model):
        out = redact(pipeline.base_model(s))
    return _result(compute, dict(out))


@asset(group_name=GROUP, code_version=code_version("sft_checkpoint"), automation_condition=REBUILD,
       deps=[filtered_corpus, evidence_model, base_model], kinds={"pytorch"},
       description="TRL SFT of the judge on offline-written reasoning traces (loss on the completion only).")
def sft_checkpoint(context: AssetExecutionContext, config: SftConfig, compute: ComputeProfile,
                    store: ArtifactStore) -> MaterializeResult:
    s = _settings(config, compute, store)
    runner = PipesRunner(context, PipesSubprocessClient())
    with artifact_lock(s.paths.sft):
        out = pipeline.sft_checkpoint(s, runner=runner)
    return _checkpoint_result(compute, _with_child_report(out, runner), "loss")


@asset(group_name=GROUP, code_version=code_version("rft_checkpoint"), automation_condition=REBUILD,
       deps=[sft_checkpoint], kinds={"pytorch"},
       description="TRL GRPO from the SFT checkpoint with the verifiable verdict reward.")
def rft_checkpoint(context: AssetExecutionContext, config: RftConfig, compute: ComputeProfile,
                    store: ArtifactStore) -> MaterializeResult:
    s = _settings(config, compute, store)
    runner = PipesRunner(context, PipesSubprocessClient())
    with artifact_lock(s.paths.rft):
        out = pipeline.rft_checkpoint(s, runner=runner)
    return _checkpoint_result(compute, _with_child_report(out, runner), "reward")


@asset(group_name=GROUP, code_version=code_version("scalar_rm"), automation_condition=REBUILD,
       deps=[filtered_corpus, base_model], kinds={"pytorch"},
       description="Baseline: a scalar Bradley-Terry reward model (TRL RewardTrainer) on the same train split.")
def scalar_rm(context: AssetExecutionContext, config: ScalarRMConfig, compute: ComputeProfile,
                    store: ArtifactStore) -> MaterializeResult:
    s = _settings(config, compute, store)
    with artifact_lock(s.paths.scalar_rm):
        out = redact(pipeline.scalar_rm(s))
    return _checkpoint_result(compute, out, "loss")


@asset(group_name=GROUP, code_version=code_version("eval_report"), automation_condition=REBUILD,
       deps=[rft_checkpoint, sft_checkpoint, base_model, filtered_corpus, scalar_rm, evidence_model],
       kinds={"python"},
       description="Base, SFT, RFT and baselines judged on the eval split: metrics.json, report.md, report.html.")
def eval_report(context: AssetExecutionContext, config: EvalReportConfig, compute: ComputeProfile,
                    store: ArtifactStore) -> MaterializeResult:
    import base64
    from pathlib import Path

    s = _settings(config, compute, store)
    with artifact_lock(s.paths.report):
        out = redact(pipeline.eval_report(s))
    judges = out["metrics"]["judges"]
    plot = Path(out["files"]["accuracy"])
    image = f"![accuracy](data:image/png;base64,{base64.b64encode(plot.read_bytes()).decode()})"
    accuracies = {name: m["accuracy"] for name, m in judges.items()}
    bars = text_bars(accuracies)
    return _result(compute, {
        # The numbers at a glance on the asset page (inline), the full figure one click away.
        "accuracy": MetadataValue.md(bars) if len(bars) < INLINE_MARKDOWN_CHARS else _table(
            [{"judge": k, "accuracy": v} for k, v in accuracies.items()]),
        "headline": _table(out["headline"]),
        "accuracy_plot": MetadataValue.md(image),
        "by_exemplar_count": _table([{"judge": j, **{f"{n} exemplars": acc for n, acc in by_n.items()}}
                                     for j, by_n in out["metrics"].get("by_exemplar_count", {}).items()]),
        **{f"accuracy_{name}": m["accuracy"] for name, m in judges.items()},
        **{f"real_authors_accuracy_{name}": m["accuracy"]
           for name, m in out["metrics"].get("real_authors", {}).get("judges", {}).items()},
        "profile": s.profile, "eval_data": out["metrics"]["settings"]["eval_data"],
        "report": MetadataValue.path(out["files"]["report_md"]),
        "report_html": MetadataValue.path(out["files"]["report_html"])})


ALL_ASSETS = [raw_exemplars, synthetic_pairs, filtered_corpus, style_encoder, evidence_model, base_model,
              sft_checkpoint, rft_checkpoint, scalar_rm, eval_report]
