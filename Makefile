# Two commands for a reader:  make book   and   make test.
# Each creates .venv (once) with everything in requirements.txt, then does its job.

PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: book test unit notebooks browser chromium serve clean robustness robustness-seed1 \
	robustness-seed2 robustness-default floors

$(STAMP): requirements.txt pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -r requirements.txt
	touch $(STAMP)

## make book: execute every notebook and build the HTML book (warnings are errors).
book: $(STAMP)
	$(VENV)/bin/jupyter-book build . -W -n --keep-going
	@echo "Built: _build/html/index.html   (read it with: make serve)"

## make test: unit tests for rlcore, every chapter notebook under nbval, then the built book
## opened page by page in headless Chromium (tests/test_browser.py).
test: unit notebooks
	@$(MAKE) --no-print-directory browser

unit: $(STAMP)
	$(PY) -m pytest tests --ignore=tests/test_browser.py

# nbval runs every notebook; each one that passes is stored in the book's execution cache,
# so a following `make book` renders it without running it again (tests/nbval_cache.py).
notebooks: $(STAMP)
	$(PY) -m pytest --nbval-lax --nbval-cell-timeout=600 -p no:cacheprovider \
		-p tests.nbval_cache --nb-cache _build/.jupyter_cache chapters

## make robustness: every chapter under nbval three more times, at RLCORE_SEED=1, at RLCORE_SEED=2,
## and with PyTorch's portable CPU kernels (ATEN_CPU_CAPABILITY=default), which round differently
## from a modern processor's own. The claims the chapters assert must hold on all of them, as on a
## reader's machine. Not part of `make test`; `make -j2 robustness` runs two at a time. These runs
## do not touch the book's execution cache. (The spread behind each threshold: python -m rlcore.robustness)
NBVAL_PLAIN = $(PY) -m pytest --nbval-lax --nbval-cell-timeout=900 -p no:cacheprovider -q chapters
robustness: robustness-seed1 robustness-seed2 robustness-default

robustness-seed1: $(STAMP)
	RLCORE_SEED=1 $(NBVAL_PLAIN)

robustness-seed2: $(STAMP)
	RLCORE_SEED=2 $(NBVAL_PLAIN)

robustness-default: $(STAMP)
	ATEN_CPU_CAPABILITY=default $(NBVAL_PLAIN)

## make floors: the lowest versions requirements.txt admits (.ci/floors.txt; torch held at 2.13.0)
## in their own .venv-floors: the unit tests and chapter 1, the first language-model chapter.
FLOORS := .venv-floors
floors:
	[ -x $(FLOORS)/bin/python ] || $(PYTHON) -m venv $(FLOORS)
	$(FLOORS)/bin/python -m pip install -q -r requirements.txt -c .ci/floors.txt
	$(FLOORS)/bin/python -m pytest -q -p no:cacheprovider tests --ignore=tests/test_browser.py
	$(FLOORS)/bin/python -m pytest -q -p no:cacheprovider --nbval-lax chapters/01_a_story.ipynb

# Build the book (the notebooks come from the execution cache nbval just filled, so nothing runs
# twice), then open every page in headless Chromium: math typeset, figures shown, no tracebacks.
# Full-page screenshots land in _build/screenshots/. Skipped, saying why, without Chromium.
browser: $(STAMP) chromium
	$(VENV)/bin/jupyter-book build . -W -n --keep-going
	$(PY) -m pytest -p no:cacheprovider tests/test_browser.py

# Install Chromium where we can (root or password-less sudo, with apt); otherwise say so and go on.
CHROMIUM_BINS := chromium chromium-browser google-chrome google-chrome-stable
chromium:
	@found="$$CHROMIUM"; for b in $(CHROMIUM_BINS); do [ -n "$$found" ] || found=$$(command -v $$b || true); done; \
	if [ -n "$$found" ]; then \
		:; \
	elif ! command -v apt-get >/dev/null; then \
		echo "Chromium not found and apt-get is not available: the browser test will be skipped."; \
	elif [ "$$(id -u)" != 0 ] && ! sudo -n true 2>/dev/null; then \
		echo "Chromium not found (sudo apt-get install chromium): the browser test will be skipped."; \
	else \
		SUDO=; [ "$$(id -u)" = 0 ] || SUDO="sudo -n"; export DEBIAN_FRONTEND=noninteractive; \
		echo "Installing Chromium for the browser test: apt-get install chromium"; \
		$$SUDO apt-get install -y -qq --no-install-recommends chromium >/dev/null 2>&1 \
		|| { $$SUDO apt-get update -qq >/dev/null 2>&1 \
		     && $$SUDO apt-get install -y -qq --no-install-recommends chromium >/dev/null 2>&1; } \
		|| echo "Could not install Chromium: the browser test will be skipped."; \
	fi

## make serve: read the built book at http://localhost:8000
serve:
	$(PY) -m http.server --directory _build/html 8000

clean:
	rm -rf _build
