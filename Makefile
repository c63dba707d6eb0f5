# bnrepro: `make reproduce` runs the claims suite, `make test` the tests. Both build .venv on first use.
PY      ?= python3
VENV    ?= .venv
BIN     := $(VENV)/bin
STAMP   := $(VENV)/.installed
SCALE   ?= cpu
LAUNCHER ?= joblib
RUNS    ?= runs/$(SCALE)
OUT     ?= results/$(SCALE)
export WANDB_MODE ?= offline

.PHONY: help env reproduce pilot report scorecard test test-all bench profile-suite gpu-check clean

help:  ## list the targets
	@grep -E '^[a-z-]+:.*##' $(MAKEFILE_LIST) | sed 's/:.*## /\t/'

$(STAMP): pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[test]'
	touch $@

env: $(STAMP)  ## create .venv with the pinned dependencies

reproduce: $(STAMP)  ## run every claim at SCALE (cpu|cifar|imagenet), then write results/SCALE
	SCALE=$(SCALE) LAUNCHER=$(LAUNCHER) RUNS=$(RUNS) OUT=$(OUT) PATH=$(abspath $(BIN)):$$PATH scripts/reproduce.sh

pilot: $(STAMP)  ## run the suite on the pilot seeds into runs/pilot/SCALE and write its power table (designs are chosen there)
	SCALE=$(SCALE) LAUNCHER=$(LAUNCHER) PILOT=1 PATH=$(abspath $(BIN)):$$PATH scripts/reproduce.sh

report: $(STAMP)  ## rebuild results/SCALE from the finished runs in RUNS (FORCE=1: even from fewer runs)
	$(BIN)/python -m bnrepro.report $(RUNS) --out $(OUT) $(if $(FORCE),--force)

# NORM: a registered name or your class's dotted path (NORM=builtin: every built-in norm, with its options);
# OPTIONS: its model.* options (OPTIONS="model.norm_groups=4"); runs in RUNS are reused, the norm's go to
# runs/scorecard/SCALE; RESUME=1 with NORM=builtin: skip the norms already scored
NORM    ?=
OPTIONS ?=
scorecard: $(STAMP)  ## score NORM on BN's properties (reusing RUNS) -> results/scorecard/SCALE
	$(BIN)/python -m bnrepro.scorecard $(if $(filter builtin,$(NORM)),--builtin,norm=$(NORM)) scale=$(SCALE) \
	  $(OPTIONS) --runs $(RUNS) $(if $(RESUME),--resume)

test: $(STAMP)  ## the fast CPU tests (slow ones excluded)
	$(BIN)/python -m pytest -m "not slow" -q

test-all: $(STAMP)  ## every test, slow ones included
	$(BIN)/python -m pytest -q

bench: $(STAMP)  ## speed benchmarks, written to results/bench
	PATH=$(abspath $(BIN)):$$PATH scripts/bench.sh

profile-suite: $(STAMP)  ## where the suite's CPU time goes: training steps or fixed cost (c2_lr, c5_dropout, seeds 0,1; ~5 min)
	WANDB_MODE=offline $(BIN)/python scripts/profile_suite.py sweep --main-runs $(RUNS)

# gpu-check runs with GPU_CHECK_PYTHON, or PY when given on the command line or in the environment (a machine's
# own python with its CUDA torch, our pure-Python dependencies on PYTHONPATH): then no .venv is built.
GPU_CHECK_PYTHON ?= $(if $(filter command line environment,$(origin PY)),$(PY))
GPU_CHECK_ARGS ?=
gpu-check: $(if $(GPU_CHECK_PYTHON),,$(STAMP))  ## CUDA tests + GPU benchmarks in <= 6 min -> results/bench/gpu.md (CPU: skips)
	PYTHONPATH=$(CURDIR)$(if $(PYTHONPATH),:$(PYTHONPATH)) $(or $(GPU_CHECK_PYTHON),$(BIN)/python) scripts/gpu_check.py $(GPU_CHECK_ARGS)

clean:  ## remove the environment and all run outputs (not results/)
	rm -rf $(VENV) outputs multirun runs wandb .pytest_cache
