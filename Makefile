# pixsort developer tasks.  `make demo` and `make test` are the two set-up commands.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
# every pip call (build environments included) honours the torch pin
export PIP_CONSTRAINT := $(CURDIR)/constraints.txt
export PIP_DISABLE_PIP_VERSION_CHECK := 1

.PHONY: install demo lint test test-slow bench clean

$(STAMP): pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q -c constraints.txt torch==2.13.0
	$(BIN)/pip install -q -c constraints.txt -e ".[cluster,serve,export,audit,ray,test,lint]"
	touch $(STAMP)

install: $(STAMP)

demo: install
	$(BIN)/pixsort demo --out demo-out

# the floor plan (import-linter contracts in pyproject.toml) and the style (ruff)
lint: install
	$(BIN)/lint-imports
	$(BIN)/ruff check src tests bench
	$(BIN)/ruff format --check src tests bench

test: install
	$(BIN)/python -m pytest -q

test-slow: install
	$(BIN)/python -m pytest -q -m slow

bench: install
	$(BIN)/python bench/decode.py

clean:
	rm -rf $(VENV) demo-out .pytest_cache
