# Two entry points (see README): `make serve` and `make test`. Both create .venv when missing.
PYTHON ?= python3
VENV ?= .venv
BIN = $(VENV)/bin
STAMP = $(VENV)/.installed-stamp

.PHONY: install serve test lint bench-quick viewer-bundle render-notebooks

$(STAMP): pyproject.toml
	@command -v chromium >/dev/null || { echo "installing Debian chromium for the browser tests"; \
		apt-get update -q >/dev/null 2>&1 || sudo apt-get update -q >/dev/null 2>&1; \
		DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium >/dev/null || \
		sudo DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium >/dev/null; }
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[test]'
	touch $(STAMP)

install: $(STAMP)

serve: install
	BOKEH_RESOURCES=server $(BIN)/panel serve app.py --address localhost --port 5006 \
		--allow-websocket-origin localhost:5006

lint: install
	$(BIN)/ruff check workbench tests scripts app.py

# two workers: most test time is single-threaded XLA compilation, which one worker alone leaves idle
test: lint
	$(BIN)/pytest -q -n 2 --durations=25

bench-quick: install
	for b in md; do $(BIN)/workbench bench $$b --quick; done

# rebuild workbench/ui/viewer.bundle.js (3Dmol.js, from the npm registry) after editing viewer.js
viewer-bundle:
	scripts/build_viewer_bundle.sh

# HTML pages of the teaching notebooks in docs/notebooks/ (quick mode; FULL=1 for the full settings)
render-notebooks: install
	$(BIN)/python scripts/render_notebooks.py $(if $(FULL),--full,)
