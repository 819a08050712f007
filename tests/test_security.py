"""Security rules that hold across the code base: nothing untrusted is unpickled, no shell strings,
remote code off by default, config paths confined to the data root, secrets kept out of outputs."""

from __future__ import annotations

import ast
import logging
import shutil
from pathlib import Path

import pytest
import yaml

from persrm_core.config import load_settings
from persrm_core.errors import InputError
from persrm_core.redact import MASK, RedactingFilter, redact, secret_name

REPO = Path(__file__).resolve().parent.parent
CODE_DIRS = ("persrm_core", "assets", "orchestration", "examples", "benchmarks", "scripts")


def _project_sources() -> list[Path]:
    return sorted(p for d in CODE_DIRS if (REPO / d).is_dir() for p in (REPO / d).rglob("*.py"))


def _calls(path: Path):
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            yield node


def _name(func: ast.expr) -> str:
    parts = []
    while isinstance(func, ast.Attribute):
        parts.append(func.attr)
        func = func.value
    if isinstance(func, ast.Name):
        parts.append(func.id)
    return ".".join(reversed(parts))


def _kw(call: ast.Call, name: str):
    return next((k.value for k in call.keywords if k.arg == name), None)


def test_the_scan_sees_the_project():
    names = {p.name for p in _project_sources()}
    assert {"model.py", "trainers.py", "judge.py", "cli.py", "stages.py"} <= names


def test_no_shell_true_anywhere():
    offenders = [f"{p.relative_to(REPO)}:{c.lineno}" for p in _project_sources() for c in _calls(p)
                 if isinstance(_kw(c, "shell"), ast.Constant) and _kw(c, "shell").value is True]
    assert not offenders, f"shell=True in {offenders}"
    offenders = [f"{p.relative_to(REPO)}:{c.lineno}" for p in _project_sources() for c in _calls(p)
                 if _name(c.func) in ("os.system", "os.popen", "subprocess.getoutput", "subprocess.getstatusoutput")]
    assert not offenders, f"shell-string process calls in {offenders}"


def test_torch_load_only_with_weights_only_and_no_pickle():
    for p in _project_sources():
        text = p.read_text(encoding="utf-8")
        assert "import pickle" not in text and "from pickle" not in text, p
        assert "dill" not in text.split(), p
        for c in _calls(p):
            if _name(c.func).endswith("torch.load"):
                wo = _kw(c, "weights_only")
                assert isinstance(wo, ast.Constant) and wo.value is True, f"{p}:{c.lineno} torch.load without weights_only=True"


def test_trust_remote_code_is_never_hardwired_on():
    for p in _project_sources():
        for c in _calls(p):
            v = _kw(c, "trust_remote_code")
            assert not (isinstance(v, ast.Constant) and v.value is True), f"{p}:{c.lineno}"
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    assert params["defaults"]["base_model"]["trust_remote_code"] is False
    for name, prof in params["profiles"].items():
        assert not ((prof or {}).get("base_model") or {}).get("trust_remote_code"), name


def test_model_loading_refuses_pickled_weights(tmp_path):
    """`load_model` asks for safetensors only: a checkpoint with only a pickled .bin is refused."""
    import torch
    from transformers import Qwen2Config, Qwen2ForCausalLM

    from persrm_core.llm.model import load_model

    cfg = Qwen2Config(vocab_size=64, hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                      num_attention_heads=2, num_key_value_heads=1, max_position_embeddings=32)
    model = Qwen2ForCausalLM(cfg)
    cfg.save_pretrained(tmp_path)
    torch.save(model.state_dict(), tmp_path / "pytorch_model.bin")
    with pytest.raises(Exception) as err:
        load_model(tmp_path)
    assert "safetensors" in str(err.value).lower() or "no file named" in str(err.value).lower()


def _params_with(tmp_path: Path, **paths) -> Path:
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    params["paths"].update(paths)
    out = tmp_path / "params.yaml"
    out.write_text(yaml.safe_dump(params))
    return out


@pytest.mark.parametrize("bad", ["../elsewhere", "data/../../escape", "data/reports/../../../x"])
def test_relative_paths_may_not_leave_the_data_root(tmp_path, bad):
    params = _params_with(tmp_path, report=bad)
    with pytest.raises(InputError) as err:
        load_settings("smoke", params)
    assert "paths.report" in str(err.value) and "outside the data root" in str(err.value)
    assert str(params) in str(err.value)


def test_symlinked_escape_is_refused(tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    root = tmp_path / "root"
    root.mkdir()
    (root / "link").symlink_to(outside, target_is_directory=True)
    params = _params_with(root, report="link/reports")
    with pytest.raises(InputError, match="outside the data root"):
        load_settings("smoke", params)


def test_absolute_and_inside_paths_are_accepted(tmp_path):
    chosen = tmp_path / "somewhere" / "reports"
    params = _params_with(tmp_path, report=str(chosen), sft="data/models/./sft")
    s = load_settings("smoke", params)
    assert s.paths.report == chosen
    assert s.paths.sft.resolve() == (tmp_path / "data" / "models" / "sft").resolve()


def test_secret_names():
    for name in ("OPENAI_API_KEY", "api_key", "HF_TOKEN", "hf_token", "db_password", "Authorization", "client_secret",
                 "GITHUB_TOKEN", "access_token", "token", "x-auth-token"):
        assert secret_name(name), name
    for name in ("max_new_tokens", "max_tokens", "pad_token_id", "tokenizer", "num_tokens", "model",
                 "mean_token_accuracy_first", "mean_token_accuracy_last", "train_tokens_per_second", "pad_token",
                 "eos_token", "token_budget"):
        assert not secret_name(name), name


def test_training_metrics_that_mention_tokens_are_not_masked():
    metrics = {"mean_token_accuracy_first": 0.41, "mean_token_accuracy_last": 0.93, "train_tokens_per_second": 812.5,
               "hf_token": "hf_abcdefghijklmnop"}
    out = redact(metrics, secrets=[])
    assert out == {**metrics, "hf_token": MASK}


def test_redact_masks_secret_keys_env_values_and_bearer_headers(monkeypatch):
    key = "sk-test-0123456789abcdef"
    monkeypatch.setenv("OPENAI_API_KEY", key)
    monkeypatch.setenv("SHORT_TOKEN", "1")  # too short to be a secret worth masking in prose
    data = {"backend": {"kind": "openai", "api_key": "sk-other-secret-value", "api_key_env": "OPENAI_API_KEY"},
            "error": f"HTTP 401 from server: Authorization: Bearer {key}",
            "notes": ["url=https://x/v1?key=" + key, "Bearer abcdefghijkl"],
            "max_new_tokens": 64}
    out = redact(data)
    flat = repr(out)
    assert key not in flat and "sk-other-secret-value" not in flat and "abcdefghijkl" not in flat
    assert out["backend"]["api_key"] == MASK
    assert out["max_new_tokens"] == 64 and out["backend"]["kind"] == "openai"
    assert data["backend"]["api_key"] == "sk-other-secret-value"  # a copy, not in place


def test_log_filter_masks_secrets(monkeypatch, caplog):
    key = "hf_abcdefghijklmnop1234"
    monkeypatch.setenv("HF_TOKEN", key)
    logger = logging.getLogger("persrm_core.test_security")
    logger.addFilter(RedactingFilter())
    with caplog.at_level(logging.INFO):
        logger.info("calling %s with token %s", "server", key)
    assert key not in caplog.text and MASK in caplog.text


def test_secrets_never_reach_the_report_files(tmp_path, monkeypatch):
    from persrm_core.evaluation.report import write_report

    key = "sk-live-abcdef0123456789"
    monkeypatch.setenv("OPENAI_API_KEY", key)
    from persrm_core.evaluation.metrics import judge_metrics
    from persrm_core.judging.judge import baseline_judge
    from persrm_core.records import Pair

    pairs = [Pair(pair_id=f"p{i}", author_id="a", exemplars=["An exemplar text."], prompt="Say it.",
                  response_a="short one", response_b="a somewhat longer answer", label="AB"[i % 2],
                  negative_type="x") for i in range(4)]
    metrics = {"judges": {"length": judge_metrics(pairs, baseline_judge("length", pairs))},
               "settings": {"backend_error": f"401 Unauthorized for key {key}", "api_key": key}}
    examples = [{"pair_id": "p0", "judge": "length", "label": "A", "choice": "B", "rationale": f"echo {key}"}]
    write_report(tmp_path, metrics, {}, examples)
    for f in tmp_path.iterdir():
        if f.suffix in (".json", ".md", ".html"):
            assert key not in f.read_text(encoding="utf-8"), f.name


def test_cli_error_line_never_echoes_a_secret(tmp_path, monkeypatch, capsys):
    from orchestration.cli import main

    key = "sk-cli-abcdef0123456789"
    monkeypatch.setenv("OPENAI_API_KEY", key)
    bad = tmp_path / key  # a secret that ended up in a path the error names
    bad.mkdir()
    pairs = bad / "pairs.jsonl"
    pairs.write_text("{not json\n")
    code = main(["judge", "--baseline", "random", "--pairs", str(pairs), "--out", str(tmp_path / "o.jsonl")])
    err = capsys.readouterr().err
    assert code != 0 and key not in err and MASK in err
    shutil.rmtree(bad)
