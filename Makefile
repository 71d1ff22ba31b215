# Two commands on a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
# A second, small venv whose ipykernel is 6.x: the notebook tests run under both 6 and 7.
KERNEL6_VENV ?= .venv-ipykernel6
KERNEL6_NAME := mlw-ipykernel6

.PHONY: demo test soak lint bench browser-deps clean

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e ".[dev]"
	touch $@

$(KERNEL6_VENV)/.installed: pyproject.toml $(VENV)/.installed
	$(PYTHON) -m venv $(KERNEL6_VENV)
	$(KERNEL6_VENV)/bin/python -m pip install -q --upgrade pip
	$(KERNEL6_VENV)/bin/python -m pip install -q -e . "ipykernel>=6.29,<7"
	$(KERNEL6_VENV)/bin/python -m ipykernel install --prefix $(abspath $(VENV)) \
		--name $(KERNEL6_NAME) --display-name "Python 3 (ipykernel 6)"
	touch $@

# Debian's Chromium for the browser tests (never a downloaded browser). Needs root and apt;
# elsewhere the browser tests skip loudly (and fail when CI is set).
browser-deps:
	@command -v chromium >/dev/null 2>&1 || { \
		if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
			apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium; \
		else echo "chromium not installed: browser tests will be skipped"; fi; }

# Opens the quickstart notebook; without MODELSLAB_API_KEY it runs against the simulator.
demo: $(VENV)/.installed
	$(VENV)/bin/jupyter lab $$([ "$$(id -u)" = 0 ] && echo --allow-root) notebooks/quickstart.ipynb

test: $(VENV)/.installed $(KERNEL6_VENV)/.installed browser-deps lint
	$(PY) -m pytest -ra

# The long soak (1,000 runs in a row, 200 at once): a few minutes, so not in `make test`.
soak: $(VENV)/.installed
	MLW_SOAK_SLOW=1 $(PY) -m pytest -ra -s -m slow tests/test_soak.py

lint: $(VENV)/.installed
	$(VENV)/bin/ruff check modelslab_widget tests bench tools
	$(VENV)/bin/mypy modelslab_widget

bench: $(VENV)/.installed
	$(PY) bench/run.py
	$(PY) bench/rate.py
	$(PY) bench/pollcost.py
	$(PY) bench/sweep.py

clean:
	rm -rf $(VENV) $(KERNEL6_VENV) test-artifacts .pytest_cache
