# The two set-up commands of README.md: `make run` and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

NATIVE := sim/_native_manifest.json
NATIVE_SOURCES := $(shell grep -v '^\#' tools/native_modules.txt)

.PHONY: run test bench lint clean native pure

$(STAMP): pyproject.toml Makefile
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev,dask,notebooks]'
	touch $(STAMP)

# The compiled build (mypyc; docs/compiled.md): rebuilt whenever a compiled source changes;
# without a C compiler the model runs as pure Python, and one line says so.
$(NATIVE): $(STAMP) $(NATIVE_SOURCES) tools/native_modules.txt tools/build_native.py
	@if ! command -v cc >/dev/null 2>&1; then echo "vmsim: no C compiler found: the model runs as pure Python"; \
	elif ! nice $(BIN)/python tools/build_native.py >build-native.log 2>&1; then \
	  $(BIN)/python tools/build_native.py --clean; \
	  echo "vmsim: the compiled build failed (build-native.log): the model runs as pure Python"; \
	else tail -n 1 build-native.log; fi

native: $(NATIVE)

# back to pure Python: remove the compiled build (any python will do: it only deletes files)
pure:
	$(PYTHON) tools/build_native.py --clean

# `make run` writes results/answer-local/ (gitignored); `make run ANSWER_OUT=results/answer`
# updates the committed copy of the answer.
ANSWER_OUT ?= results/answer-local

run: $(STAMP) native
	$(BIN)/vmsim answer --out $(ANSWER_OUT)

test: $(STAMP) native
	$(BIN)/ruff check sim tests benchmarks tools
	$(BIN)/pytest
	@# the tests that replace a model method on an object run on pure Python (docs/compiled.md)
	if [ -f $(NATIVE) ]; then VMSIM_PURE=1 $(BIN)/pytest -m 'spies_on_methods and not long and not qemu'; fi

bench: $(STAMP) native
	$(BIN)/python benchmarks/bench_compiled.py
	$(BIN)/python benchmarks/bench_vmap.py
	$(BIN)/python benchmarks/bench_machine.py
	$(BIN)/python benchmarks/bench_engine.py
	$(BIN)/python benchmarks/bench_sweep.py

lint: $(STAMP)
	$(BIN)/ruff check sim tests benchmarks tools

clean:
	rm -rf $(VENV) build *.egg-info
	$(PYTHON) tools/build_native.py --clean
