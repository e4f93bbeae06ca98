# The commands of the README: `make run`, `make test` and `make lint` (CI runs lint, then test).
# Both make a virtual environment in .venv with the project installed in it.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin

.PHONY: run test lint
run: $(VENV)/.installed
	$(BIN)/hotline serve

test: $(VENV)/.installed
	bash scripts/test-services
	. scripts/test-env && $(BIN)/pytest $(PYTEST_ARGS)

lint: $(VENV)/.installed
	$(BIN)/ruff check hotline ivr web voice_models tests benchmarks
	$(BIN)/mypy
	@echo "lint: ruff and mypy found nothing"

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test]'
	touch $@
