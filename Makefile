# Two commands on a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
# A second, small venv whose ipykernel is 6.x: the notebook tests run under both 6 and 7.
KERNEL6_VENV ?= .venv-ipykernel6
KERNEL6_NAME := mlw-ipykernel6
# Its kernelspec alone, under the venv (not in $(VENV), nor beside the python3 kernelspec that
# ipykernel 6 ships into its own venv): `make test` and the tests add it to JUPYTER_PATH.
KERNEL6_PREFIX := $(abspath $(KERNEL6_VENV))/kernelspec
KERNEL6_JUPYTER := $(KERNEL6_PREFIX)/share/jupyter

.PHONY: demo test soak lint wheel-check docs bench browser-deps clean

$(VENV)/.created:
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	touch $@

# `make demo` needs only the package and JupyterLab (the demo extra); `make test` the dev extra.
$(VENV)/.demo-installed: pyproject.toml | $(VENV)/.created
	$(PY) -m pip install -q -e ".[demo]"
	touch $@

$(VENV)/.installed: pyproject.toml | $(VENV)/.created
	$(PY) -m pip install -q -e ".[dev]"
	touch $@

# JUPYTER_PATH during the install too, so ipykernel does not warn "The kernelspec may not be
# found"; and the kernelspec earlier Makefiles put into $(VENV) is removed.
$(KERNEL6_VENV)/.installed: pyproject.toml $(VENV)/.installed
	$(PYTHON) -m venv $(KERNEL6_VENV)
	$(KERNEL6_VENV)/bin/python -m pip install -q --upgrade pip
	$(KERNEL6_VENV)/bin/python -m pip install -q -e . "ipykernel>=6.29,<7"
	JUPYTER_PATH=$(KERNEL6_JUPYTER) $(KERNEL6_VENV)/bin/python -m ipykernel install \
		--prefix $(KERNEL6_PREFIX) \
		--name $(KERNEL6_NAME) --display-name "Python 3 (ipykernel 6)"
	rm -rf $(VENV)/share/jupyter/kernels/$(KERNEL6_NAME)
	touch $@

# Debian's Chromium for the browser tests (never a downloaded browser). Needs root and apt;
# elsewhere the browser tests skip loudly (and fail when CI is set).
browser-deps:
	@command -v chromium >/dev/null 2>&1 || { \
		if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
			apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium; \
		else echo "chromium not installed: browser tests will be skipped"; fi; }

# Opens the quickstart notebook; without MODELSLAB_API_KEY it runs against the simulator.
demo: $(VENV)/.demo-installed
	$(VENV)/bin/jupyter lab $$([ "$$(id -u)" = 0 ] && echo --allow-root) notebooks/quickstart.ipynb

test: $(VENV)/.installed $(KERNEL6_VENV)/.installed browser-deps lint wheel-check docs
	JUPYTER_PATH=$(KERNEL6_JUPYTER)$${JUPYTER_PATH:+:$$JUPYTER_PATH} \
		$(PY) -m pytest -ra -n 3 --dist loadfile

# The long soak (1,000 runs in a row, 200 at once): a few minutes, so not in `make test`.
soak: $(VENV)/.installed
	MLW_SOAK_SLOW=1 $(PY) -m pytest -ra -s -m slow tests/test_soak.py

lint: $(VENV)/.installed
	$(VENV)/bin/ruff check modelslab_widget tests bench tools
	$(VENV)/bin/mypy modelslab_widget

# The package as installed: builds the sdist and the wheel, twine check, the wheel's files,
# then a fresh venv with the wheel runs the CLI and a simulator run (about 12 s).
wheel-check: $(VENV)/.installed
	$(PY) tools/check_wheel.py

# The documentation site, offline and strict (any warning fails): the quickstart notebook is
# executed against the simulator into docs/tutorial.md (generated, not committed), then
# mkdocs builds site/. The browser test in tests/test_docs.py opens two of its pages.
docs: $(VENV)/.installed
	$(PY) tools/docs_tutorial.py
	NO_MKDOCS_2_WARNING=1 $(VENV)/bin/mkdocs build --strict

# Each benchmark's output goes to the terminal and into docs/figures/<bench>.txt, which the
# Performance page includes (a bench that fails leaves the last file in place).
FIGURES := docs/figures
bench_into = bash -o pipefail -c '$(PY) bench/$(1).py | tee $(FIGURES)/$(1).txt.part' \
	&& mv $(FIGURES)/$(1).txt.part $(FIGURES)/$(1).txt

bench: $(VENV)/.installed
	@mkdir -p $(FIGURES)
	@echo "$$(nproc) cores, load average $$(cut -d' ' -f1-3 /proc/loadavg) at the start," \
		"Python $$($(PY) -c 'import platform; print(platform.python_version())')" \
		| tee $(FIGURES)/machine.txt
	$(call bench_into,run)
	grep '^|' $(FIGURES)/run.txt > $(FIGURES)/run-table.md
	$(call bench_into,rate)
	$(call bench_into,pollcost)
	$(call bench_into,sweep)
	$(call bench_into,media)
	$(call bench_into,hostile)

clean:
	rm -rf $(VENV) $(KERNEL6_VENV) test-artifacts .pytest_cache site docs/tutorial.md \
		docs/tutorial_files
