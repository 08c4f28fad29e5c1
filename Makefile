# Two commands: `make demo` runs the main job, `make test` runs the test suite.
# Both create or refresh .venv from the project's declared dependencies first.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.moalign-installed

.PHONY: demo test lint setup clean

setup: $(STAMP)

$(STAMP): pyproject.toml requirements/cpu.txt requirements/embedded.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -r requirements/cpu.txt
	$(BIN)/python -m pip install --quiet -c requirements/cpu.txt -e '.[test]'
	$(BIN)/python -m pip install --quiet --no-deps -r requirements/embedded.txt
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/moalign demo

test: $(STAMP)
	$(BIN)/ruff check src tests
	$(BIN)/lint-imports
	HF_HUB_OFFLINE=1 $(BIN)/python -m pytest -q -m "not slow"

clean:
	rm -rf $(VENV)
