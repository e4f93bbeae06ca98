# The two commands of the README: `make run` and `make test`.
# Both make a virtual environment in .venv with the project installed in it: `run`
# installs what the service needs and nothing else (a first start in well under a
# minute); `test` adds the test extras (Playwright, a 253 MB Vosk model, linters).
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin

.PHONY: run test lint
run: $(VENV)/.installed-run
	$(BIN)/hotline serve

test: $(VENV)/.installed-test
	bash scripts/test-services
	. scripts/test-env && $(BIN)/pytest $(PYTEST_ARGS)

lint: $(VENV)/.installed-test
	$(BIN)/ruff check hotline ivr web voice_models tests benchmarks
	$(BIN)/mypy

# One stamp per set of packages: `make run` after `make test` installs nothing more,
# and either is redone when pyproject.toml changes.
$(VENV)/.installed-run: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --disable-pip-version-check -e .
	touch $@

$(VENV)/.installed-test: $(VENV)/.installed-run
	$(BIN)/pip install --quiet --disable-pip-version-check -e '.[test]'
	touch $@
