# The commands of the README: `make run`, `make test` and `make lint` (CI runs lint, then test).
# Each makes a virtual environment in .venv with the project installed in it: `run`
# installs what the service needs and nothing else; `test` and `lint` add the test
# extras (Playwright, a 253 MB Vosk model, linters).
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin

.PHONY: run test lint
run: $(VENV)/.installed-run
	$(BIN)/hotline serve

# Two test processes (pytest-xdist): the suite in about half the time on CI's two cores.
# `make test PYTEST_ARGS=tests/web` runs a part in one process.
PYTEST_ARGS ?= -n 2

test: $(VENV)/.installed-test
	bash scripts/test-services
	. scripts/test-env && $(BIN)/pytest $(PYTEST_ARGS)

lint: $(VENV)/.installed-test
	$(BIN)/ruff check hotline ivr web voice_models tests benchmarks
	$(BIN)/mypy
	@echo "lint: ruff and mypy found nothing"

# One stamp per set of packages: `make run` after `make test` installs nothing more,
# and either is redone when pyproject.toml changes.
$(VENV)/.installed-run: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --disable-pip-version-check -e .
	touch $@

$(VENV)/.installed-test: $(VENV)/.installed-run
	$(BIN)/pip install --quiet --disable-pip-version-check -e '.[test]'
	touch $@
