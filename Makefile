# `make run` serves the platform; `make test` runs the whole suite. Both set up everything they need:
# .venv, dependencies (the web's, the tests' and the training workers'), and the configured PostgreSQL/Redis or embedded ones under .data/.
PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: run test venv format services-down demo demo-detection demo-detection-loop clean

$(STAMP): requirements.txt requirements-dev.txt requirements-training.txt
	@command -v $(PYTHON) >/dev/null || { echo "$(PYTHON) is required"; exit 1; }
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements-dev.txt -r requirements-training.txt
	touch $(STAMP)

venv: $(STAMP)

run: $(STAMP)
	MLOPS_ENV=development $(PY) -m devstack serve

test: $(STAMP)
	@start=$$(date +%s); \
	MLOPS_ENV=test $(PY) -m devstack run -- $(PY) -m pytest $(PYTEST_ARGS); status=$$?; \
	echo "make test: $$(( $$(date +%s) - start ))s"; exit $$status

# The whole loop over the REST API on scikit-learn's digits: import, query, slice, split, train, predict, pick by
# least confidence or at random, reveal labels, retrain; prints every model's held-out accuracy.
demo: $(STAMP)
	MLOPS_ENV=development $(PY) -m demo

# Detection over the REST API on generated shapes: import COCO, slice, split, train a detector on the CPU,
# predict, print the test split's COCO mAP beside an untrained model's.
demo-detection: $(STAMP)
	MLOPS_ENV=development $(PY) -m demo.detection

# Detection rounds over the REST API: train on a seed set, evaluate on a test set (stored matches), query the misses,
# pick from a pool by box uncertainty and at random with the same budget, reveal their boxes, retrain; mAP per round.
demo-detection-loop: $(STAMP)
	MLOPS_ENV=development $(PY) -m demo.detection_loop

# ruff's safe fixes and the formatter over the tree (pyproject.toml); lists what is left to fix by hand.
format: $(STAMP)
	bin/format-tree

services-down:
	$(PY) -m devstack down

clean: services-down
	rm -rf .data
