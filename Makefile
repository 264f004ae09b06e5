# mlpvision: `make demo` trains and evaluates the default model on Fashion-MNIST, `make test` runs lint and tests.
SHELL := /bin/bash
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
FMNIST_DIR ?= /usr/share/datasets/fashion-mnist
FMNIST_FILES := train-images-idx3-ubyte.gz train-labels-idx1-ubyte.gz t10k-images-idx3-ubyte.gz t10k-labels-idx1-ubyte.gz
PYTEST_ARGS ?=

.PHONY: setup data demo test test-fast test-zoo lint bench readme clean

setup: $(STAMP) data

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev,deploy,cluster]'
	touch $(STAMP)

# Fashion-MNIST comes from Debian's dataset-fashion-mnist package; nothing is downloaded at run time.
data:
	@missing=0; for f in $(FMNIST_FILES); do [ -f "$(FMNIST_DIR)/$$f" ] || missing=1; done; \
	if [ $$missing = 0 ]; then exit 0; fi; \
	if command -v apt-get >/dev/null && [ "$$(id -u)" = 0 ]; then \
	  echo "installing Debian package dataset-fashion-mnist"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq dataset-fashion-mnist >/dev/null; \
	elif command -v apt-get >/dev/null && command -v sudo >/dev/null; then \
	  sudo apt-get update -qq && sudo DEBIAN_FRONTEND=noninteractive apt-get install -y -qq dataset-fashion-mnist >/dev/null; \
	else \
	  echo "Fashion-MNIST not found in $(FMNIST_DIR)."; \
	  echo "Install Debian's package 'dataset-fashion-mnist', or put the four idx files"; \
	  echo "($(FMNIST_FILES)) in a folder and pass FMNIST_DIR=that/folder (and --data-dir to mlpvision)."; \
	  exit 1; \
	fi

# The main job: train the default all-MLP model (repmlp_fast_28) on Fashion-MNIST for 5 epochs (six to eight
# minutes on 2 CPU cores), evaluate it on the test set, and convert it to its FC-only deploy form.
DEMO_OUT ?= runs/demo
demo: setup
	$(BIN)/mlpvision train --epochs 5 --out $(DEMO_OUT)
	$(BIN)/mlpvision eval --checkpoint $(DEMO_OUT)/model_deploy.safetensors --confusion $(DEMO_OUT)/confusion.png

lint: $(STAMP)
	$(BIN)/ruff check src tests tools benchmarks experiments
	$(BIN)/ruff format --check src tests tools benchmarks experiments

test: setup lint
	$(BIN)/python -m pytest -m "not zoo" $(PYTEST_ARGS)

# the tests without the slow ones (marked @pytest.mark.slow: torch.compile, several processes, kill and resume)
test-fast: setup lint
	$(BIN)/python -m pytest -m "not slow and not zoo" $(PYTEST_ARGS)

# the checks that need the registered models at their full size (224 px and up; marked @pytest.mark.zoo)
test-zoo: setup
	$(BIN)/python -m pytest -m zoo $(PYTEST_ARGS)

# Benchmarks write JSON and Markdown under docs/; run them on an otherwise idle machine.
bench: setup
	$(BIN)/python benchmarks/targets.py
	$(BIN)/python benchmarks/scaling.py
	$(BIN)/python benchmarks/train_throughput.py
	$(BIN)/python benchmarks/train_compile.py
	$(BIN)/python benchmarks/deploy_accuracy.py
	$(BIN)/python benchmarks/repmlp_deploy.py
	$(BIN)/python benchmarks/zoo.py
	$(BIN)/python benchmarks/cli_speed.py

# Regenerates the model table in README.md from the registry.
readme: $(STAMP)
	$(BIN)/python tools/update_readme.py

clean:
	rm -rf $(VENV) build dist src/*.egg-info .pytest_cache .ruff_cache
