# Two entry points do all set-up on a fresh machine: `make demo` (the main job) and `make test` (the suite).
# Both create .venv on first use and reinstall only when pyproject.toml changes.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test verify clean-venv

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --upgrade pip
	$(BIN)/python -m pip install -e ".[test]"
	touch $(STAMP)

# Train spleen-fast-train on its synthetic phantoms until validation Dice 0.85 (or the epoch cap), evaluate, export
# TorchScript, print the measured figures. Everything goes to runs/demo; the bundle folder's models/ is never touched.
demo: $(STAMP)
	$(BIN)/python tools/run_demo.py

# The MONAI Label tests need .venv-label (MONAI Label's numpy/jsonschema pins kept out of .venv).
test: $(STAMP)
	bash tools/monailabel_env.sh
	$(BIN)/python -m pytest -q --durations=15 tests

verify: $(STAMP)
	$(BIN)/python -m tools.verify --all --schema ../shared/schemas/meta_schema_20240725.json

clean-venv:
	rm -rf $(VENV)
