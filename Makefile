# Every target sets up .venv itself; torch is pinned so pip never pulls a multi-GB CUDA build.
PY      := .venv/bin/python
STAMP   := .venv/.installed
TORCH   := torch==2.13.0

.PHONY: demo test bench lint clean-venv docs docs-serve docs-check

$(STAMP): pyproject.toml
	test -x $(PY) || python3 -m venv .venv
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q $(TORCH)
	$(PY) -m pip install -q -e '.[dev]'
	touch $(STAMP)

demo: $(STAMP)
	$(PY) -m zeroforge demo

test: $(STAMP)
	$(PY) -m ruff check src tests bench examples
	$(PY) -m ruff format --check src tests bench examples
	$(PY) -m pytest -q -n 2 --dist loadfile

bench: $(STAMP)
	$(PY) bench/run_quick.py

lint: $(STAMP)
	$(PY) -m ruff check --fix src tests bench examples
	$(PY) -m ruff format src tests bench examples

# The guide (mkdocs.yml): English and Chinese pages, built strictly (any warning fails)
docs: $(STAMP)
	$(PY) -m mkdocs build --strict

docs-serve: $(STAMP)
	$(PY) -m mkdocs serve --dev-addr 127.0.0.1:8000

# the site, the examples' lint and every block of the guide, the slow training commands included
docs-check: $(STAMP)
	$(PY) -m ruff check examples
	$(PY) -m mkdocs build --strict
	$(PY) -m pytest -q -n 0 -m 'slow or not slow' tests/test_guide.py tests/examples

clean-venv:
	rm -rf .venv
