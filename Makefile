# Set-up and everyday commands. `make demo` and `make test` work on a fresh machine with only Python 3.11.
PYTHON ?= python3.11
VENV ?= .venv
BIN := $(VENV)/bin
OUT ?= out

.PHONY: install demo test test-all bench clean

$(BIN)/mertk: pyproject.toml setup.py
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	# torch first, pinned: the CPU wheel on local disk. An open range would pull a multi-GB CUDA build.
	$(BIN)/pip install --quiet torch==2.13.0
	$(BIN)/pip install --quiet -e '.[test]'
	touch $(BIN)/mertk

install: $(BIN)/mertk

demo: install
	# LLP feature arrays are not committed (about 200 MB); this regenerates them, byte-identical, from the seed
	$(BIN)/mertk sample-data llp --out sample_data/llp
	$(BIN)/mertk build-unimer --casme2 sample_data/casme2 --out $(OUT)
	$(BIN)/mertk migrate-labels --llp sample_data/llp --out $(OUT)
	$(BIN)/mertk validate $(OUT)

test: install
	$(BIN)/python -m pytest

test-all: install
	$(BIN)/python -m pytest -m ''

bench: install
	for script in benchmarks/*.py; do $(BIN)/python $$script || exit 1; done

clean:
	rm -rf $(VENV) $(OUT) build *.egg-info
