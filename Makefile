# Quick start: `make demo` sets everything up, builds the digits app and tests it in Chromium;
# `make test` runs the test suite. Both install what is missing first.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
PYTEST_ARGS ?=

.PHONY: setup demo test bench clean browser

setup: $(VENV)/.installed web/node_modules/.installed browser

# Python packages come from the pinned lock; webml itself is installed editable, because the
# builder reads templates/ and web/ from this checkout.
$(VENV)/.installed: requirements.lock pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -r requirements.lock
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --no-deps -e .
	touch $@

web/node_modules/.installed: web/package.json web/package-lock.json
	cd web && npm ci --no-audit --no-fund
	touch $@

browser:
	@scripts/ensure-browser.sh

demo: setup
	$(BIN)/webml build models/digits.toml
	$(BIN)/webml test dist/digits --json test-results/digits.json
	@echo
	@echo "The app is in dist/digits. Serve it with:"
	@echo "  $(BIN)/webml serve dist/digits"
	@echo "and open http://127.0.0.1:8000/ (it keeps working offline after the first visit)."

test: setup
	$(BIN)/python -m pytest $(PYTEST_ARGS)

bench: setup
	$(BIN)/python bench/run.py

clean:
	rm -rf dist test-results .webml-cache .pytest_cache
