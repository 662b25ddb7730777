# Two commands a newcomer needs: `make demo` and `make test`.  Each creates .venv if absent.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test test-slow bench bench-real bench-batch bench-trace bench-extract bench-profiles bench-ceers lint docs install clean

$(STAMP): pyproject.toml
	test -d $(VENV) || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ".[test,plots,survey]"
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/python -m nodcombine.demo --output-dir demo_output

test: $(STAMP)
	$(BIN)/python -m pytest

test-slow: $(STAMP)
	$(BIN)/python -m pytest -m slow

bench: $(STAMP)
	$(BIN)/python benchmarks/bench_nod_diff.py
	$(BIN)/python benchmarks/bench_trace_fit.py
	$(BIN)/python benchmarks/bench_extract.py
	$(BIN)/python benchmarks/bench_profiles.py
	$(BIN)/python benchmarks/bench_ceers_errors.py
	$(BIN)/python benchmarks/bench_model_screen.py
	$(BIN)/python benchmarks/bench_visit_memory.py
	$(BIN)/python benchmarks/bench_real_geometry.py
	$(BIN)/python benchmarks/bench_batch.py

bench-real: $(STAMP)
	$(BIN)/python benchmarks/bench_real_geometry.py

bench-batch: $(STAMP)
	$(BIN)/python benchmarks/bench_batch.py

bench-profiles: $(STAMP)
	$(BIN)/python benchmarks/bench_profiles.py

bench-ceers: $(STAMP)
	$(BIN)/python benchmarks/bench_ceers_errors.py

bench-extract: $(STAMP)
	$(BIN)/python benchmarks/bench_extract.py

bench-trace: $(STAMP)
	$(BIN)/python benchmarks/bench_trace_fit.py

docs: $(STAMP)
	$(BIN)/python -m pip install --quiet -e ".[docs]"
	$(BIN)/python -m sphinx -b html -W --keep-going docs docs/_build/html

lint: $(STAMP)
	$(BIN)/ruff check src tests benchmarks scripts
	$(BIN)/ruff format --check src tests benchmarks scripts

clean:
	rm -rf demo_output benchmarks/output .pytest_cache
