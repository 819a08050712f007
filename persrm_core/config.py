"""The pipeline's one config: `params.yaml`, profiles deep-merged over defaults, into typed settings."""

from __future__ import annotations

import copy
import dataclasses
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from persrm_core.data.corpus import FilterConfig
from persrm_core.errors import InputError
from persrm_core.evidence.style_encoder import StyleEncoderConfig
from persrm_core.judging.judge_format import RenderLimits
from persrm_core.llm.model import TinyModelConfig
from persrm_core.synthesis.pairs import SynthesisConfig
from persrm_core.training.scalar_rm import ScalarRMConfig
from persrm_core.training.settings import GRPOSettings, TrainConfig

REPO_ROOT = Path(__file__).resolve().parent.parent


def default_params_path() -> Path:
    """$PERSRM_PARAMS, else ./params.yaml (a project checkout run from its root), else the repo's."""
    if env := os.environ.get("PERSRM_PARAMS"):
        return Path(env)
    cwd = Path.cwd() / "params.yaml"
    return cwd if cwd.is_file() else REPO_ROOT / "params.yaml"


@dataclass
class BaseModelSettings:
    name: str = "tiny"
    dtype: str = "float32"
    trust_remote_code: bool = False
    tiny: TinyModelConfig = field(default_factory=TinyModelConfig)


@dataclass
class BackendSettings:
    """`generation`: the LLM behind the LLM negative strategies and teacher traces
    (`persrm_core.llm.generation`); how a model judge decodes is `judging.judge.DecodingSettings`,
    from `eval:`. The API key is never a setting: `api_key_env` names the environment variable that
    holds it."""

    backend: str = "rules"
    model: str = ""
    base_url: str = "http://127.0.0.1:8000/v1"
    api_key_env: str = "OPENAI_API_KEY"
    concurrency: int = 8
    timeout_s: float = 60.0
    max_retries: int = 5
    batch_size: int = 8
    dtype: str = "bfloat16"
    temperature: float = 0.8
    top_p: float = 0.95
    max_tokens: int = 256
    trust_remote_code: bool = False  # transformers, vllm: run the generation model's own code from the hub
    cache: Path | None = None  # resolved against the data root


@dataclass
class EvidenceSettings:
    """`evidence`: how the fitted evidence (`persrm_core.evidence.signals`) and the `combined` weights are
    fitted on the training split (`pipeline.evidence_model`)."""

    fit_pairs: int = 1500  # train pairs the combined weights are fitted on (sampled by seed; 0 = all)
    cross_author_weight: float = 2.0  # a cross-author pair counts this many times in the fit
    fit_negative_types: list[str] = field(default_factory=list)  # fit on these negative types only ([] = all)
    l2: float = 0.01
    fit_signals: list[str] = field(default_factory=list)  # the signals the weights may use ([] = all); the others weigh 0


@dataclass
class RealAuthorsSettings:
    """Every judge on real authors' writing (`persrm_core.data.real_authors`), in its own report section."""

    dir: Path | None = None  # directory-per-author corpus; relative = to params.yaml's folder; None = off
    max_pairs: int = 200  # pairs sampled (deterministically, by seed) from the held-out texts; 0 = all
    num_exemplars: int = 2  # the author's other texts shown with each pair
    only_unseen: bool = False  # only the authors the synthesis held out as unseen (a profile trained on the corpus)


@dataclass
class EvalSettings:
    max_pairs: int = 0
    both_orders: bool = True
    baselines: list[str] = field(default_factory=lambda: ["random", "length"])
    batch_size: int = 16
    max_new_tokens: int = 96
    engine: str = "transformers"  # transformers | vllm (where installed; the gpu profile)
    closing: str = "constrained"  # constrained: unreadable closings decoded under the format (transformers) | free
    examples: int = 4
    exemplar_count_judges: list[str] = field(default_factory=lambda: ["rft", "stylometric", "ngram"])
    without_evidence: list[str] = field(default_factory=list)  # model judges judged again with no evidence block
    real_authors: RealAuthorsSettings = field(default_factory=RealAuthorsSettings)


@dataclass
class Paths:
    raw: Path
    exemplars: Path
    pairs: Path
    corpus: Path
    base_model: Path
    sft: Path
    rft: Path
    scalar_rm: Path
    report: Path
    style_encoder: Path
    evidence: Path


@dataclass
class Settings:
    profile: str
    seed: int
    paths: Paths
    min_texts_per_author: int
    synthesis: SynthesisConfig
    generation: BackendSettings
    max_texts_per_author: int
    filter: FilterConfig
    render: RenderLimits
    style_encoder: StyleEncoderConfig
    evidence: EvidenceSettings
    base_model: BaseModelSettings
    sft: TrainConfig
    rft: GRPOSettings
    scalar_rm: ScalarRMConfig
    eval: EvalSettings
    raw: dict[str, Any]


def confined_path(root: Path, value: str | Path, params_path: Path, key: str) -> Path:
    """`value` resolved against the data root. A relative path must stay inside the root (no `..`
    escape, no symlinked way out), so a params file or a per-run override cannot make an asset
    write or delete outside the project's data; an absolute path is taken as a deliberate choice."""
    raw = Path(value)
    if raw.is_absolute():
        return raw
    root_resolved = Path(root).resolve()
    target = (root_resolved / raw).resolve()
    if target != root_resolved and root_resolved not in target.parents:
        raise InputError(params_path, f"{key}: {str(value)!r} leads outside the data root {root_resolved}; "
                         "give an absolute path to place it there on purpose", key)
    return Path(root) / raw


# The sections of `defaults` a profile may override. Which of them each stage reads is declared on
# the stage itself (persrm_core.pipeline.stages), and dvc.yaml is rendered from those declarations.
SECTIONS = ("ingest", "synthesis", "generation", "filter", "render", "style_encoder", "evidence", "base_model", "sft",
            "rft", "scalar_rm", "eval")


def _merge(base: dict, over: dict) -> dict:
    out = copy.deepcopy(base)
    for k, v in (over or {}).items():
        out[k] = _merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) and k != "negatives" else v
    return out


TOP_LEVEL = ("profile", "paths", "defaults", "profiles")


def _type_name(hint) -> str:
    return getattr(hint, "__name__", None) or str(hint).replace("typing.", "")


def _fits(value, hint) -> bool:
    """Whether a YAML value fits a settings field's type (bool is not an int, an int is a float,
    YAML's `2e-3` (a string in YAML 1.1) is not a float)."""
    import types
    import typing

    origin = typing.get_origin(hint)
    if hint is Any:
        return True
    if origin in (typing.Union, types.UnionType):
        return any(_fits(value, h) for h in typing.get_args(hint))
    if hint is type(None):
        return value is None
    if hint is bool:
        return isinstance(value, bool)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if hint is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if hint is str:
        return isinstance(value, str)
    if hint is Path:
        return isinstance(value, (str, Path))
    if origin is list:
        (item,) = typing.get_args(hint) or (Any,)
        return isinstance(value, list) and all(_fits(v, item) for v in value)
    if origin is dict:
        key, val = typing.get_args(hint) or (Any, Any)
        return isinstance(value, dict) and all(_fits(k, key) and _fits(v, val) for k, v in value.items())
    if dataclasses.is_dataclass(hint):
        return isinstance(value, hint)
    return True  # a type this check does not know: the dataclass takes it as it is


def _build(cls, data: dict, where: str, params_path: Path):
    """`cls(**data)` after checking every key is a field of `cls` and every value fits the field's
    type: a typo or a wrong type is one InputError naming the key and the file, before anything runs."""
    import typing

    names = {f.name for f in dataclasses.fields(cls)}
    unknown = set(data) - names
    if unknown:
        raise InputError(params_path, f"unknown key(s) {sorted(unknown)} (known: {sorted(names)})", where)
    hints = typing.get_type_hints(cls)
    for key, value in data.items():
        hint = hints.get(key, Any)
        if not _fits(value, hint):
            hint_text = _type_name(hint)
            extra = ""
            if isinstance(value, str) and _fits(1.0, hint):
                exponent = re.fullmatch(r"[+-]?\d+(\.\d*)?[eE][+-]?\d+", value.strip())
                extra = " (YAML reads 2e-3 as a string: write 0.002 or 2.0e-3)" if exponent else ""
            raise InputError(params_path, f"{value!r} is a {type(value).__name__}, expected {hint_text}{extra}",
                             f"{where}.{key}")
    return cls(**data)


def _real_authors(data: dict, params_path: Path) -> RealAuthorsSettings:
    """`eval.real_authors`; its `dir` resolves against the params file's folder (not the data root:
    the corpus is shared research data beside the checkout), and an empty `dir` turns it off."""
    ra = _build(RealAuthorsSettings, dict(data), "eval.real_authors", params_path)
    if ra.dir is not None and str(ra.dir).strip():
        d = Path(str(ra.dir).strip())
        ra.dir = (d if d.is_absolute() else params_path.parent / d).resolve()
    else:
        ra.dir = None
    return ra


def _generation(data: dict, root: Path, params_path: Path) -> BackendSettings:
    if "api_key" in data:  # an unknown key anyway, but say why
        raise InputError(params_path, "generation.api_key: keys do not belong in params.yaml; "
                         "set the variable named by generation.api_key_env", "generation")
    g = _build(BackendSettings, dict(data), "generation", params_path)
    g.cache = confined_path(root, g.cache or "data/pairs/generation_cache.jsonl", params_path, "generation.cache")
    return g


CHOICES = {("sft", "traces"): ("offline", "teacher"), ("sft", "teacher_fallback"): ("none", "offline"),
           ("eval", "closing"): ("constrained", "free"), ("eval", "engine"): ("transformers", "vllm")}


def _check_choices(merged: dict, params_path: Path) -> None:
    """Values from a fixed set, checked when params load rather than when their stage runs."""
    for (section, key), allowed in CHOICES.items():
        value = (merged.get(section) or {}).get(key)
        if value is not None and value not in allowed:
            raise InputError(params_path, f"{value!r} is not one of {', '.join(allowed)}", f"{section}.{key}")
    from persrm_core.evidence.signals import SIGNALS

    if unknown := [x for x in (merged.get("evidence") or {}).get("fit_signals") or [] if x not in SIGNALS]:
        raise InputError(params_path, f"{unknown} is not among {', '.join(SIGNALS)}", "evidence.fit_signals")
    ev = merged.get("eval") or {}
    if ev.get("engine") == "vllm" and ev.get("closing", "constrained") == "constrained":
        raise InputError(params_path, "a constrained closing needs the transformers engine; with engine vllm "
                                      "set closing: free", "eval.closing")
    from persrm_core.training.settings import REPORTERS

    for section in ("sft", "rft"):
        value = (merged.get(section) or {}).get("report_to") or "none"
        names = [value] if isinstance(value, str) else value
        if unknown := [n for n in names if n != "none" and n not in REPORTERS]:
            raise InputError(params_path, f"{unknown} is not among none, {', '.join(REPORTERS)}",
                             f"{section}.report_to")
    judges = (merged.get("eval") or {}).get("without_evidence") or []
    if unknown := [j for j in judges if j not in ("base", "sft", "rft")]:
        raise InputError(params_path, f"{unknown} read no evidence; only base, sft and rft can be judged without it",
                         "eval.without_evidence")


def load_settings(profile: str | None = None, params_path: str | Path | None = None,
                  root: str | Path | None = None, overrides: dict | None = None) -> Settings:
    """Settings of `profile` from `params_path`; relative paths resolve against `root`
    (by default the directory holding the params file)."""
    params_path = Path(params_path or default_params_path()).resolve()
    try:
        params = yaml.safe_load(params_path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise InputError(params_path, "no such file") from None
    except yaml.YAMLError as exc:
        raise InputError(params_path, f"invalid YAML ({exc.__class__.__name__})") from None
    if not isinstance(params, dict):
        raise InputError(params_path, "not a mapping of settings")
    if unknown := set(params) - set(TOP_LEVEL):
        raise InputError(params_path, f"unknown top-level key(s) {sorted(unknown)} (known: {', '.join(TOP_LEVEL)})")
    if unknown := set(params.get("defaults") or {}) - set(SECTIONS) - {"seed"}:
        raise InputError(params_path, f"unknown section(s) {sorted(unknown)} (known: seed, {', '.join(SECTIONS)})",
                         "defaults")
    profile = profile or params.get("profile", "default")
    profiles = params.get("profiles", {})
    if profile not in profiles:
        raise InputError(params_path, f"unknown profile {profile!r} (known: {', '.join(profiles)})", "profiles")
    for name, prof in profiles.items():
        if unknown := set(prof or {}) - set(SECTIONS):
            raise InputError(params_path, f"profile {name!r} overrides unknown section(s) {sorted(unknown)} "
                             f"(a profile may override: {', '.join(SECTIONS)}; `seed` lives in defaults)",
                             f"profiles.{name}")
    merged = _merge(_merge(params.get("defaults", {}), profiles[profile] or {}), overrides or {})
    root = Path(root) if root else params_path.parent
    given = {"style_encoder": "data/models/style_encoder", "evidence": "data/models/evidence", **params["paths"]}
    paths = Paths(**{k: confined_path(root, v, params_path, f"paths.{k}") for k, v in given.items()})
    ingest = dict(merged.get("ingest") or {})
    if unknown := set(ingest) - {"min_texts_per_author", "source"}:
        raise InputError(params_path, f"unknown key(s) {sorted(unknown)} (known: min_texts_per_author, source)",
                         "ingest")
    if source := str(ingest.get("source") or "").strip():
        # A directory-per-author corpus read in place of paths.raw (e.g. the `real` profile's
        # journalists); relative to the params file's folder, like eval.real_authors.dir.
        src = Path(source)
        paths.raw = src if src.is_absolute() else (params_path.parent / src).resolve()
    seed = int(merged.get("seed", 0))
    syn = dict(merged["synthesis"])
    max_texts = int(syn.pop("max_texts_per_author", 0))
    bm = dict(merged["base_model"])
    bm["tiny"] = _build(TinyModelConfig, bm.get("tiny", {}), "base_model.tiny", params_path)
    ev = dict(merged["eval"])
    ev["real_authors"] = _real_authors(ev.get("real_authors") or {}, params_path)
    _check_choices(merged, params_path)
    return Settings(
        profile=profile, seed=seed, paths=paths,
        min_texts_per_author=int(merged.get("ingest", {}).get("min_texts_per_author", 1)),
        synthesis=_build(SynthesisConfig, {**syn, "seed": seed}, "synthesis", params_path),
        generation=_generation(merged.get("generation") or {}, root, params_path),
        max_texts_per_author=max_texts,
        filter=_build(FilterConfig, merged["filter"], "filter", params_path),
        render=_build(RenderLimits, merged["render"], "render", params_path),
        style_encoder=_build(StyleEncoderConfig, {**merged.get("style_encoder", {}), "seed": seed}, "style_encoder",
                             params_path),
        evidence=_build(EvidenceSettings, merged.get("evidence", {}), "evidence", params_path),
        base_model=_build(BaseModelSettings, bm, "base_model", params_path),
        sft=_build(TrainConfig, {**merged["sft"], "seed": seed}, "sft", params_path),
        rft=_build(GRPOSettings, {**merged["rft"], "seed": seed}, "rft", params_path),
        scalar_rm=_build(ScalarRMConfig, {**merged.get("scalar_rm", {}), "seed": seed}, "scalar_rm", params_path),
        eval=_build(EvalSettings, ev, "eval", params_path),
        raw=merged,
    )
