# One entry point for a new user. Every target that runs code first makes sure .venv is
# built (idempotent: it reinstalls only when pyproject.toml changes).
#
#   make install   .venv with everything (serving, sidecar, training, dev)
#   make test      the whole test suite except the Docker end-to-end test
#   make serve     the API on 127.0.0.1:8000 and the Grad-CAM sidecar on :8001, shipped model
#   make train     retrain the shipped recipe on DATA (3 members), site-calibrate on SITE_SPLIT, write models/
#   make lint      ruff (style) and mypy (types) over app/ and training/
#   make e2e       build both images, bring the compose stack up, predict, degrade, tear down
#   make bench     the benchmark suite (shipped model): rewrites benchmarks/RESULTS.md, < 10 min

PYTHON ?= python3.11
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
DATA   ?= ../shared/data/chest_xray_224
TRAIN_ARGS ?=
MEMBERS ?= 3
SITE_SPLIT ?= test_dev
PYTEST_ARGS ?=
BENCH_ARGS ?=

# Nothing the tools run writes to $HOME.
export ORT_DISABLE_TELEMETRY := 1
export KERAS_HOME := $(CURDIR)/.keras-home
export TF_CPP_MIN_LOG_LEVEL := 2
# BuildKit for docker-compose v1.29 (faster, parallel stages); Compose v2 uses it anyway.
export DOCKER_BUILDKIT := 1
export COMPOSE_DOCKER_CLI_BUILD := 1

.PHONY: install test serve train lint e2e bench clean

install: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ".[sidecar,training,batch,dev]"
	touch $@

# Debian's chromium + chromedriver for the web page test (idempotent; skipped without root).
browser:
	bash scripts/install-browser.sh

test: install browser
	$(BIN)/python -m pytest -m "not e2e" $(PYTEST_ARGS)

serve: install
	@test -f "$${CXR_MODEL_DIR:-models}/model_card.json" || { echo "no model in $${CXR_MODEL_DIR:-models}/: run 'make train' first" >&2; exit 1; }
	$(BIN)/python scripts/serve.py

# Members train one after another (resumable: rerun after a stop); the ensemble is calibrated on
# validation, exported to runs/latest/export, then site-calibrated on SITE_SPLIT into models/.
train: install
	$(BIN)/python -m training train --data $(DATA) --members $(MEMBERS) --out runs/latest --export-to runs/latest/export $(TRAIN_ARGS)
	$(BIN)/python -m training calibrate --data $(DATA) --split $(SITE_SPLIT) --model runs/latest/export --out models --min-sensitivity 0.975

lint: install
	$(BIN)/ruff check .
	$(BIN)/mypy

e2e: install
	../shared/tools/docker-up.sh
	REQUIRE_DOCKER=1 $(BIN)/python -m pytest -m e2e tests/e2e $(PYTEST_ARGS)

bench: install
	$(BIN)/python -m benchmarks $(BENCH_ARGS)

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache .hypothesis
