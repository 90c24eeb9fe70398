# Two commands for a reader:  make book   and   make test.
# Each creates .venv (once) with everything in requirements.txt, then does its job.

PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: book test unit notebooks serve clean

$(STAMP): requirements.txt pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -r requirements.txt
	touch $(STAMP)

## make book: execute every notebook and build the HTML book (warnings are errors).
book: $(STAMP)
	$(VENV)/bin/jupyter-book build . -W -n --keep-going
	@echo "Built: _build/html/index.html   (read it with: make serve)"

## make test: unit tests for rlcore, then every chapter notebook under nbval.
test: unit notebooks

unit: $(STAMP)
	$(PY) -m pytest tests

# nbval runs every notebook; each one that passes is stored in the book's execution cache,
# so a following `make book` renders it without running it again (tests/nbval_cache.py).
notebooks: $(STAMP)
	$(PY) -m pytest --nbval-lax --nbval-cell-timeout=600 -p no:cacheprovider \
		-p tests.nbval_cache --nb-cache _build/.jupyter_cache chapters

## make serve: read the built book at http://localhost:8000
serve:
	$(PY) -m http.server --directory _build/html 8000

clean:
	rm -rf _build
