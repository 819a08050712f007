"""The stage registry: each stage sees only the settings sections it declares, and the
stage-to-params map is the declarations (tests/test_dvc.py checks dvc.yaml against them)."""

from __future__ import annotations

import pytest

from persrm_core.config import load_settings
from persrm_core.pipeline.stages import STAGES, StageSettings, settings_read, stage, stage_sections


def test_a_stage_reading_an_undeclared_section_fails_naming_it():
    s = load_settings("smoke")
    view = StageSettings(s, "filtered_corpus", ("filter",))
    assert view.filter is s.filter and view.paths is s.paths and view.profile == "smoke"
    with pytest.raises(AttributeError, match=r"filtered_corpus reads settings 'synthesis'.*add 'synthesis'"):
        view.synthesis  # noqa: B018
    with pytest.raises(AttributeError, match=r"add 'seed'"):
        view.seed  # noqa: B018
    with pytest.raises(AttributeError, match=r"reads settings 'max_texts_per_author'.*add 'synthesis'"):
        view.max_texts_per_author  # noqa: B018  (a synthesis setting kept at the top of Settings)
    with pytest.raises(AttributeError, match="read-only"):
        view.filter = None


def test_the_decorator_hands_the_function_its_view_and_registers_it():
    seen = {}

    @stage(reads=("seed", "eval"), deps=("corpus/eval.parquet",), outs=("report",))
    def probe_stage(s):
        seen["seed"], seen["eval"] = s.seed, s.eval
        return s.render

    try:
        s = load_settings("smoke")
        with pytest.raises(AttributeError, match="probe_stage reads settings 'render'"):
            probe_stage(s)
        assert seen == {"seed": s.seed, "eval": s.eval}
        assert STAGES["probe_stage"].reads == ("seed", "eval") and STAGES["probe_stage"].outs == ("report",)
    finally:
        STAGES.pop("probe_stage", None)
    with pytest.raises(ValueError, match="unknown settings section 'synthsis'"):
        stage(reads=("synthsis",))


def test_every_asset_is_a_registered_stage_with_its_sections():
    sections = stage_sections()
    assert list(sections) == ["raw_exemplars", "synthetic_pairs", "filtered_corpus", "style_encoder",
                              "evidence_model", "base_model", "sft_checkpoint", "rft_checkpoint", "scalar_rm",
                              "eval_report"]
    assert sections["raw_exemplars"] == ("ingest", "synthesis")  # it names the authors synthesis cannot pair
    assert "generation" in sections["sft_checkpoint"]  # teacher traces


def test_every_stage_declares_each_section_its_code_reads():
    """A static read of each stage and the pipeline helpers it calls: every `s.<section>` it touches is
    declared (synthetic_pairs once read `base_model.trust_remote_code` for the generation backend
    undeclared, which only a profile with LLM negatives reached)."""
    stage_sections()
    for name, st in STAGES.items():
        undeclared = settings_read(st) - set(st.reads)
        assert not undeclared, (name, sorted(undeclared))
    assert "generation" in settings_read(STAGES["synthetic_pairs"])  # the helpers are followed
    assert "seed" in settings_read(STAGES["synthetic_pairs"])
